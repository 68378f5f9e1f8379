"""NegGrad+: descend the retain loss while ascending the forget loss, in one weighted objective."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataViews
from ..errors import ConfigError, DataError
from ..optim import OptimizerSpec
from ._loop import epochs, make_optimizer, make_scheduler, paired_batches, set_train_mode
from ._registry import register_method
from .base import AccessSpec, RunContext, choice, int_range, loguniform, uniform
from .config import BaseConfig

__all__ = ["NegGradPlusConfig", "l2_to_anchor", "neggrad_plus"]


@dataclass(frozen=True)
class NegGradPlusConfig(BaseConfig):
    """NegGrad+: the DeepUnlearn defaults (beta 0.95, SGD lr 0.01, momentum 0.9, wd 0)."""

    epochs: int = 10
    batch_size: int = 256
    optimizer: OptimizerSpec = OptimizerSpec(lr=0.01, momentum=0.9, weight_decay=0.0)
    beta: float = field(
        default=0.95,
        metadata={
            "help": "retain weight: beta * retain loss - (1 - beta) * forget CE "
            "(the reference's alpha)"
        },
    )
    l2: float = field(
        default=0.0,
        metadata={
            "help": "lambda_2 of the penalty (lambda_2 / 2) ||theta - theta_o||^2 "
            "inside the retain term (the reference's weight_decay argument)"
        },
    )
    eval_mode: bool = field(
        default=True,
        metadata={
            "help": "run the updates with model.eval() (BN frozen, dropout off), as the "
            "reference does; False: train mode (freeze_bn_stats applies)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.beta) and 0 <= self.beta <= 1):
            raise ConfigError(f"beta must lie in [0, 1] (the retain weight), got {self.beta}")
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            raise ConfigError(f"l2 must be a finite number >= 0, got {self.l2}")


def l2_to_anchor(params: Sequence[torch.Tensor], anchor: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum ||p - p_0||^2`` over matching tensors (0 with a zero gradient at ``p == p_0``)."""
    total = None
    for p, p0 in zip(params, anchor):
        term = (p - p0).pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


@register_method(
    "neggrad_plus",
    aliases=("ngplus", "ng+"),
    config=NegGradPlusConfig,
    access=AccessSpec(level="forget_and_retain"),
    presets={
        "deepunlearn": {},
        "scrub_notebook": {
            "lr": 0.01,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "epochs": 10,
            "beta": 0.95,
        },
        "digits": {
            "beta": 0.95,
            "lr": 0.01,
            "weight_decay": 0.0,
            "epochs": 10,
            "batch_size": 64,
            "eval_mode": True,
            "max_grad_norm": 5.0,
        },
    },
    search_space={
        "beta": uniform(0.5, 0.999),
        "lr": loguniform(1e-5, 1e-1),
        "weight_decay": loguniform(1e-5, 1e-1),
        "epochs": int_range(1, 20),
        "batch_size": choice([64, 128, 256]),
    },
)
def neggrad_plus(model: nn.Module, data: DataViews, config: NegGradPlusConfig, *, ctx: RunContext):
    """Minimise the retain loss and maximise the forget loss, weighted by ``beta``.

    Reference: Cadet et al., "Deep Unlearn: Benchmarking Machine Unlearning" (2024), following
    Kurmanji et al. (2023); xcadet/deepunlearn ``munl/unlearning/neggradplus.py`` and
    ``scrub_utils.py``; meghdadk/SCRUB ``small_scale_unlearning.ipynb`` (``run_neggrad_epoch``).

    Objective per step, with one retain batch (driver, one pass per epoch) and one forget batch
    (cycled and re-shuffled on every pass, restarted every epoch)::

        L = beta * [CE(f(x_r), y_r) + (l2 / 2) * ||theta - theta_o||^2]
            - (1 - beta) * CE(f(x_f), y_f)

    The updates run in ``model.eval()`` mode by default (``eval_mode=True``), as in the
    reference. Notes [lib]: the retain batches get the recipe's augmentation when
    ``augment_retain`` (forget batches never); the L2 term is skipped when ``l2 == 0``; the
    epochs search range is ``int(1, 20)`` (``ceil(0.2 * original epochs)`` for a 100-epoch
    recipe), the digits preset clips gradients at norm 5 like the other ascent
    methods.
    """
    forget, retain = data.forget, data.retain
    if forget is None or len(forget) == 0:
        raise DataError("neggrad_plus needs a non-empty forget set")
    if retain is None or len(retain) == 0:
        raise DataError("neggrad_plus needs a non-empty retain set (the driver loader)")
    retain_loader = retain.loader(
        config.batch_size,
        shuffle=True,
        augment=config.augment_retain,
        generator=ctx.generator,
        device=ctx.device,
    )
    forget_loader = forget.loader(
        config.batch_size, shuffle=True, generator=ctx.generator, device=ctx.device
    )
    params = [p for p in model.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params] if config.l2 > 0 else []
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config, len(retain_loader))
    if config.eval_mode:
        model.eval()
    else:
        set_train_mode(model, freeze_bn_stats=config.freeze_bn_stats)
    beta = config.beta
    for _ in epochs(ctx, config.epochs):
        for (xr, yr), (xf, yf) in paired_batches(retain_loader, forget_loader, ctx):
            retain_term = F.cross_entropy(model(xr), yr)
            if config.l2 > 0:
                retain_term = retain_term + (config.l2 / 2) * l2_to_anchor(params, anchor)
            loss = beta * retain_term - (1 - beta) * F.cross_entropy(model(xf), yf)
            if not ctx.step(opt, loss):
                break
            sched.after_step()
        sched.after_epoch()
    ctx.info["steps_per_epoch"] = len(retain_loader)
    return model

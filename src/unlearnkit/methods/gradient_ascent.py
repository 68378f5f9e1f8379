"""Gradient ascent on the forget set (NegGrad)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from ..data import DataViews
from ..optim import OptimizerSpec
from ._loop import epochs, make_optimizer, make_scheduler, set_train_mode, steps
from ._registry import register_method
from .base import AccessSpec, RunContext, int_range, loguniform
from .config import BaseConfig


@dataclass(frozen=True)
class GradientAscentConfig(BaseConfig):
    """Gradient ascent: reference SGD lr 1e-4, momentum 0.9, wd 5e-4, batch 256, 5 epochs."""

    epochs: int = 5
    batch_size: int = 256
    optimizer: OptimizerSpec = OptimizerSpec(lr=1e-4)


@register_method(
    "gradient_ascent",
    aliases=("ga",),
    config=GradientAscentConfig,
    access=AccessSpec(level="forget_only"),
    presets={
        "reference": {},
        "digits": {"lr": 1e-3, "epochs": 5, "batch_size": 64, "max_grad_norm": 5.0},
    },
    search_space={"lr": loguniform(1e-6, 1e-2), "epochs": int_range(1, 10)},
)
def gradient_ascent(
    model: nn.Module, data: DataViews, config: GradientAscentConfig, *, ctx: RunContext
):
    """Ascend the cross-entropy of the forget set; the retain set is never read.

    Reference: OPTML-Group/Unlearn-Saliency ``unlearn/GA.py``. Objective:
    ``min_theta -mean_{B_f} CE(f_theta(x_f), y_f)`` for E epochs over ``D_f``, train mode.
    The loss is unbounded below; ``max_grad_norm`` and the front door's divergence guard keep
    runs finite.
    """
    loader = data.forget.loader(
        config.batch_size, shuffle=True, generator=ctx.generator, device=ctx.device
    )
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config, len(loader))
    set_train_mode(model, freeze_bn_stats=config.freeze_bn_stats)
    for _ in epochs(ctx, config.epochs):
        for xb, yb in steps(loader, ctx):
            if not ctx.step(opt, -F.cross_entropy(model(xb), yb)):
                break
            sched.after_step()
        sched.after_epoch()
    return model

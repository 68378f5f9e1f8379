"""Boundary Expanding: push the forget set into an extra "shadow" class, then prune it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataViews
from ..errors import ConfigError
from ..optim import OptimizerSpec
from ._loop import epochs, make_optimizer, make_scheduler, set_train_mode, steps
from ._registry import register_method
from .base import AccessSpec, RunContext, int_range, loguniform
from .config import BaseConfig

__all__ = ["BoundaryExpandingConfig", "boundary_expanding", "find_head", "widen_head"]

_SHADOW_INITS = ("xavier", "default")


@dataclass(frozen=True)
class BoundaryExpandingConfig(BaseConfig):
    """Boundary Expanding: reference SGD lr 1e-5, momentum 0.9, 10 epochs."""

    epochs: int = 10
    batch_size: int = 256
    optimizer: OptimizerSpec = OptimizerSpec(lr=1e-5)
    shadow_init: str = field(
        default="xavier",
        metadata={
            "help": "init of the widened head before the K trained rows are copied in: xavier "
            "(Xavier-normal weights, zero bias; the original code) or default (nn.Linear's "
            "init; the SalUn port)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shadow_init not in _SHADOW_INITS:
            raise ConfigError(
                f"shadow_init must be one of {list(_SHADOW_INITS)}, got {self.shadow_init!r}"
            )


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The qualified name and module of the last ``nn.Linear`` (registration order).

    Raises:
        ConfigError: the model has no ``nn.Linear``.
    """
    found: tuple[str, nn.Linear] | None = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            found = (name, mod)
    if found is None or not found[0]:
        raise ConfigError(
            "boundary_expanding widens the model's last nn.Linear classifier head, but the model "
            "has none (or is a bare nn.Linear); use a model whose output layer is an nn.Linear "
            "submodule, or another method"
        )
    return found


def widen_head(head: nn.Linear, generator: torch.Generator, init: str = "xavier") -> nn.Linear:
    """A new ``nn.Linear`` with one more output: fresh init, then the trained rows copied in.

    The initialisation draws from ``generator`` (on CPU) and is then moved to the head's device
    and dtype; ``requires_grad`` flags follow the head's.
    """
    k, d = head.out_features, head.in_features
    has_bias = head.bias is not None
    weight = torch.empty(k + 1, d)
    bias = torch.zeros(k + 1) if has_bias else None
    if init == "xavier":
        nn.init.xavier_normal_(weight, generator=generator)
    else:  # nn.Linear.reset_parameters, drawn from the generator
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        if bias is not None:
            bound = 1.0 / math.sqrt(d) if d > 0 else 0.0
            nn.init.uniform_(bias, -bound, bound, generator=generator)
    wide = nn.utils.skip_init(
        nn.Linear, d, k + 1, bias=has_bias, device=head.weight.device, dtype=head.weight.dtype
    )
    with torch.no_grad():
        wide.weight.copy_(weight.to(head.weight))
        wide.weight[:k].copy_(head.weight)
        if has_bias:
            wide.bias.copy_(bias.to(head.bias))
            wide.bias[:k].copy_(head.bias)
    wide.weight.requires_grad_(head.weight.requires_grad)
    if has_bias:
        wide.bias.requires_grad_(head.bias.requires_grad)
    return wide


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


@register_method(
    "boundary_expanding",
    aliases=("be",),
    config=BoundaryExpandingConfig,
    access=AccessSpec(level="forget_only", forget_labels=False),
    presets={
        "reference": {},
        "salun_port": {"shadow_init": "default"},
        "digits": {"lr": 1e-3, "epochs": 10, "batch_size": 64},
    },
    search_space={"lr": loguniform(1e-6, 1e-2), "epochs": int_range(1, 15)},
)
def boundary_expanding(
    model: nn.Module, data: DataViews, config: BoundaryExpandingConfig, *, ctx: RunContext
):
    """Train the forget set into an extra shadow class of a widened head, then prune it.

    Reference: Chen et al., "Boundary Unlearning" (CVPR 2023); OPTML-Group/Unlearn-Saliency
    ``unlearn/boundary_ex.py`` and the authors' original code. With the last ``nn.Linear`` head
    widened from K to K + 1 outputs (the K trained rows copied, the shadow row freshly
    initialised):

        min_theta CE(f_theta(x_f), K)          (every forget sample -> the shadow class)

    for E epochs over ``D_f`` in train mode, updating the feature extractor and the head; then
    the shadow row is pruned and the updated first K rows are written back into the original
    head module. Labels are never read, nor is the retain set.

    Notes [lib]:
        - The library always prunes back to K outputs (the SalUn port leaves K + 1), because
          the method contract keeps the output dimension.
        - ``shadow_init="xavier"`` (default, the original code) Xavier-normal initialises the
          whole widened layer with zero bias before copying the K rows; ``"default"`` (the
          SalUn port) uses ``nn.Linear``'s initialisation. Both draw from ``ctx.generator``.
        - The head is found as the last ``nn.Linear`` by registration order and swapped on its
          parent by name; the widened head is a plain ``nn.Linear``. The original head module
          (with its identity and hooks) is put back at the end, even after an error.

    Raises:
        ConfigError: no ``nn.Linear`` head, or its output size differs from K.
    """
    name, head = find_head(model)
    if head.out_features != ctx.num_classes:
        raise ConfigError(
            f"boundary_expanding widens the last nn.Linear '{name}', which has "
            f"{head.out_features} outputs but the task has K={ctx.num_classes} classes; the "
            "classifier head must be the model's last nn.Linear"
        )
    k = head.out_features
    wide = widen_head(head, ctx.generator, config.shadow_init)
    loader = data.forget.loader(
        config.batch_size, shuffle=True, generator=ctx.generator, device=ctx.device
    )
    finished = False
    _set_submodule(model, name, wide)
    try:
        ctx.take_snapshot()  # the last finite state now has the widened shapes
        opt = make_optimizer(model, config)
        sched = make_scheduler(opt, config, len(loader))
        set_train_mode(model, freeze_bn_stats=config.freeze_bn_stats)
        for _ in epochs(ctx, config.epochs):
            for xb, _ in steps(loader, ctx):
                target = torch.full((xb.shape[0],), k, dtype=torch.long, device=xb.device)
                if not ctx.step(opt, F.cross_entropy(model(xb), target)):
                    break
                sched.after_step()
            sched.after_epoch()
        finished = True
    finally:
        _set_submodule(model, name, head)
        if finished:
            with torch.no_grad():  # prune: keep the updated first K rows
                head.weight.copy_(wide.weight[:k])
                if head.bias is not None:
                    head.bias.copy_(wide.bias[:k])
        ctx.take_snapshot()
    ctx.info["shadow_class"] = k
    return model

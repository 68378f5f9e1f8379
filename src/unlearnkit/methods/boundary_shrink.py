"""Boundary Shrink: relabel each forget sample with its nearest wrong class, found by FGSM."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import require_continuous_inputs
from ..data import DataViews
from ..errors import ConfigError, DataError
from ..optim import OptimizerSpec
from ._loop import epochs, make_optimizer, make_scheduler, set_train_mode, steps
from ._registry import register_method
from .base import AccessSpec, RunContext, choice, int_range, loguniform
from .config import BaseConfig

__all__ = ["BoundaryShrinkConfig", "boundary_shrink", "fgsm_neighbours"]

_GRIDS = ("auto", "1/255", "none")


@dataclass(frozen=True)
class BoundaryShrinkConfig(BaseConfig):
    """Boundary Shrink: reference SGD lr 1e-5, momentum 0.9, 10 epochs, FGSM bound 0.1."""

    epochs: int = 10
    batch_size: int = 256
    optimizer: OptimizerSpec = OptimizerSpec(lr=1e-5)
    bound: float = field(
        default=0.1,
        metadata={"help": "FGSM step epsilon on the [0, 1] pixel scale (the reference's 'bound')"},
    )
    pixel_grid: str = field(
        default="auto",
        metadata={
            "help": "rounding of adversarial pixels: auto (the raw integer grid for quantized "
            "data, else the 1/255 grid), 1/255 (always, as the reference), none"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.bound >= 0 and self.bound != float("inf")):
            raise ConfigError(f"bound must be a finite number >= 0, got {self.bound}")
        if self.pixel_grid not in _GRIDS:
            raise ConfigError(f"pixel_grid must be one of {list(_GRIDS)}, got {self.pixel_grid!r}")


def _pixel_affine(normalization, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0, scale)`` with ``model_input = x0 + unit * scale`` for pixels ``unit`` in [0, 1].

    Computed on CPU from the normalisation metadata and moved to ``like``'s device and dtype,
    so the attack runs on any device.
    """
    lo, hi = normalization.raw_range
    probe = torch.zeros((1, *like.shape[1:]), dtype=torch.float32)
    x0 = normalization.to_model(probe + lo)
    x1 = normalization.to_model(probe + hi)
    return x0.to(like), (x1 - x0).to(like)


def _to_grid(unit: torch.Tensor, normalization, grid: str) -> torch.Tensor:
    """Round [0, 1]-scaled pixels to the raw integer grid or the 1/255 grid (or not at all)."""
    if grid == "none":
        return unit
    lo, hi = normalization.raw_range
    if grid == "auto" and normalization.quantized:
        raw = torch.round(lo + unit * (hi - lo))  # one raw integer level
        return (raw - lo) / (hi - lo)
    return torch.round(unit * 255.0) / 255.0


def fgsm_neighbours(
    teacher: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    bound: float,
    normalization=None,
    grid: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One FGSM step against ``teacher`` in pixel space and the teacher's label of the result.

    With ``normalization`` (a :class:`~unlearnkit.datasets.Normalization`), the model inputs
    ``x`` are mapped to raw pixels scaled to [0, 1] by the raw range (snapped to the raw integer
    grid when the data are quantized), moved by ``bound * sign(grad CE(teacher(x), y))``,
    clipped to [0, 1], rounded to the grid and mapped back to model space. Without it the step
    is taken in model-input units and neither clipped nor rounded (the pixel range is unknown).

    Returns:
        ``(x_adv, y_nbr)``: adversarial inputs in model space and ``argmax teacher(x_adv)``.
    """
    x_in = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(teacher(x_in), y)
        (grad,) = torch.autograd.grad(loss, x_in)
    with torch.no_grad():
        if normalization is None:
            x_adv = x + bound * grad.sign()
        else:
            x0, scale = _pixel_affine(normalization, x)
            unit = (x - x0) / scale
            if normalization.quantized:
                unit = _to_grid(unit, normalization, "auto")
            # d loss / d unit = grad * scale (chain rule through the affine map).
            step = bound * (grad * scale).sign()
            unit_adv = _to_grid((unit + step).clamp(0.0, 1.0), normalization, grid)
            x_adv = x0 + unit_adv * scale
        y_nbr = teacher(x_adv).argmax(dim=1)
    return x_adv, y_nbr


@register_method(
    "boundary_shrink",
    aliases=("bs",),
    config=BoundaryShrinkConfig,
    access=AccessSpec(level="forget_only"),
    presets={
        "reference": {},
        "digits": {"bound": 0.1, "lr": 1e-3, "epochs": 10, "batch_size": 64},
    },
    search_space={
        "lr": loguniform(1e-6, 1e-2),
        "epochs": int_range(1, 15),
        "bound": choice([0.03, 0.1, 0.2]),
    },
)
def boundary_shrink(
    model: nn.Module, data: DataViews, config: BoundaryShrinkConfig, *, ctx: RunContext
):
    """Train each forget sample toward its nearest other class, found by an FGSM attack.

    Reference: Chen et al., "Boundary Unlearning" (CVPR 2023); OPTML-Group/Unlearn-Saliency
    ``unlearn/boundary_sh.py``. For every forget batch, with ``f_o`` the frozen original model:

        x_adv = Q(clip(x_raw + eps * sign(grad_x CE(f_o(x), y)), 0, 1))
        y_nbr = argmax f_o(x_adv)
        min_theta CE(f_theta(x), y_nbr)        (clean input, train mode)

    for E epochs over ``D_f``; the retain set is never read. ``y_nbr`` equals ``y`` when the
    attack fails; the fraction of successful attacks is logged as
    ``info["attack_success_rate"]``.

    Notes [lib]:
        - The attack runs in raw pixel space taken from ``ctx.normalization`` (the reference
          assumes [0, 1] inputs with normalisation inside the model): model inputs are mapped to
          raw values, scaled to [0, 1] by ``raw_range``, attacked, clipped, rounded and mapped
          back. ``bound`` is on that [0, 1] scale.
        - ``pixel_grid="auto"`` rounds to the raw integer grid when the raw data are quantized
          (for 0-255 images this is the reference's 1/255 grid; for 0-16 digits it is 1/16),
          else to the 1/255 grid; ``"1/255"`` always uses the reference grid; ``"none"`` skips
          rounding.
        - Without ``ctx.normalization`` the model inputs are treated as the pixel space: the
          step is taken in model-input units with no clipping and no rounding.
    """
    forget = data.forget
    require_continuous_inputs(forget.x, "boundary_shrink")  # it steps along input gradients
    if forget.y is None:
        raise DataError("boundary_shrink needs forget labels for its attack; pass a labelled D_f")
    teacher = ctx.teacher(model)
    norm = ctx.normalization
    loader = forget.loader(
        config.batch_size, shuffle=True, generator=ctx.generator, device=ctx.device
    )
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config, len(loader))
    set_train_mode(model, freeze_bn_stats=config.freeze_bn_stats)
    hits = seen = 0
    for _ in epochs(ctx, config.epochs):
        for xb, yb in steps(loader, ctx):
            _, y_nbr = fgsm_neighbours(teacher, xb, yb, config.bound, norm, config.pixel_grid)
            hits += int((y_nbr != yb).sum())
            seen += int(yb.shape[0])
            if not ctx.step(opt, F.cross_entropy(model(xb), y_nbr)):
                break
            sched.after_step()
        sched.after_epoch()
    ctx.info["attack_success_rate"] = hits / seen if seen else None
    ctx.info["attack_space"] = "pixel" if norm is not None else "model"
    return model

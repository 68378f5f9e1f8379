"""UGradSL and UGradSL+: gradient unlearning with (negative) generalised label smoothing.

Paper: Di et al., "Label Smoothing Improves Machine Unlearning" (arXiv 2406.07698; ICLR 2026).
The GLS loss follows UCSC-REAL/negative-label-smoothing ``loss.py``. Both variants share one
implementation and differ only in which loader drives an epoch: ``ugradsl`` drives with ``D_f``
and cycles ``D_r`` (GA backbone); ``ugradsl_plus`` drives with ``D_r`` and cycles ``D_f`` (FT
backbone).

Presets: ``reference`` is the paper's update (no gradient clipping, batch-mean losses as in the
reference GLS loss); the default config equals it. ``guarded`` adds the library's divergence
guard, a gradient-norm clip at 5. ``digits`` is the guarded starting point of the built-in
benchmark; ``adaptive`` switches on the self-adaptive smoothing rate.

>>> import torch
>>> gls_targets(torch.tensor([1]), -0.5, 4)
tensor([[-0.1250,  1.3750, -0.1250, -0.1250]])
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataView, DataViews
from ..errors import AccessError, ConfigError, DataError
from ..optim import OptimizerSpec
from ._loop import (
    epochs,
    last_linear,
    make_optimizer,
    make_scheduler,
    paired_batches,
    penultimate_features,
    set_train_mode,
)
from ._registry import register_method
from ._ugradsl_loss import (
    ADAPTIVE_DIRECTIONS,
    REDUCTIONS,
    AdaptiveDirection,
    adaptive_alpha,
    gls_loss,
    gls_targets,
)
from .base import AccessSpec, Dist, RunContext, choice, int_range, loguniform, uniform
from .config import BaseConfig

__all__ = [
    "ADAPTIVE_DIRECTIONS",
    "ADAPTIVE_SEARCH_SPACE",
    "PRESET_HELP",
    "REDUCTIONS",
    "UGradSLConfig",
    "UGradSLPlusConfig",
    "adaptive_alpha",
    "gls_loss",
    "gls_targets",
    "ugradsl",
    "ugradsl_plus",
]

# ---------------------------------------------------------------------------------------------
# Configs

# SalUn-family conventions: SGD, momentum 0.9, weight decay 5e-4 (frozen, so safe to share).
_UGRADSL_OPTIMIZER = OptimizerSpec(lr=1e-4)
_UGRADSL_PLUS_OPTIMIZER = OptimizerSpec(lr=0.01)


@dataclass(frozen=True)
class UGradSLConfig(BaseConfig):
    """UGradSL: the paper's update with library starting points for its hyperparameters.

    The update follows the paper: no gradient clipping, batch-mean losses. The numbers (SGD lr
    1e-4, momentum 0.9, wd 5e-4, 5 epochs over D_f, alpha -0.5, p 0.5) are library choices: the
    paper publishes no per-dataset alpha, p or epochs.
    """

    alpha: float | Literal["adaptive"] = field(
        default=-0.5,
        metadata={
            "help": "smoothing rate of the forget targets (< 0: negative smoothing), or "
            "'adaptive' for per-sample rates from retain-neighbour density"
        },
    )
    p: float = field(
        default=0.5,
        metadata={"help": "retain weight in [0, 1]: L = p*CE_r - (1 - p)*GLS_f"},
    )
    adaptive_scale: float = field(
        default=1.0, metadata={"help": "s: adaptive rates lie in [-s, 0]"}
    )
    adaptive_threshold: float = field(
        default=0.1,
        metadata={
            "help": "beta: cosine distance (1 - cos)/2 in [0, 1] below which a retain "
            "sample counts as a neighbour of a forget sample"
        },
    )
    adaptive_direction: AdaptiveDirection = field(
        default="dense_more_negative",
        metadata={
            "help": "dense_more_negative: alpha_j = -s*c_j/|B_r|; dense_less_negative: "
            "alpha_j = -s*(1 - c_j/|B_r|)"
        },
    )
    concat_forward: bool = field(
        default=False,
        metadata={
            "help": "forward retain and forget batches as one concatenated batch "
            "(changes BatchNorm batch statistics); default: two forward passes"
        },
    )
    epochs: int = field(default=5, metadata={"help": "passes over the driver loader"})
    batch_size: int = field(default=256, metadata={"help": "used for both loaders"})
    optimizer: OptimizerSpec = _UGRADSL_OPTIMIZER
    reduction: Literal["mean", "sum"] = field(
        default="mean",
        metadata={
            "help": "mean: batch means of CE_r and GLS_f (the reference GLS loss); sum: batch "
            "sums, Eq. 8 read literally (about batch_size times the step at equal batch sizes)"
        },
    )
    max_grad_norm: float | None = field(
        default=None,
        metadata={
            "help": "gradient-norm clip; none in the paper (default); preset 'guarded' sets 5"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.alpha, str):
            if self.alpha != "adaptive":
                raise ConfigError(
                    f"alpha must be a number (e.g. -0.5) or 'adaptive', got {self.alpha!r}"
                )
        elif isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)):
            raise ConfigError(f"alpha must be a number or 'adaptive', got {self.alpha!r}")
        elif not math.isfinite(self.alpha):
            raise ConfigError(f"alpha must be finite, got {self.alpha}; try -0.5")
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(
                f"p (the retain weight) must lie in [0, 1], got {self.p}; 1 = fine-tuning only"
            )
        if not (math.isfinite(self.adaptive_scale) and self.adaptive_scale >= 0):
            raise ConfigError(
                f"adaptive_scale must be a finite number >= 0, got {self.adaptive_scale}"
            )
        if not 0.0 <= self.adaptive_threshold <= 1.0:
            raise ConfigError(
                "adaptive_threshold is a cosine distance (1 - cos)/2 and must lie in [0, 1], "
                f"got {self.adaptive_threshold}; try 0.1"
            )
        if self.reduction not in REDUCTIONS:
            raise ConfigError(
                f"reduction must be one of {list(REDUCTIONS)}, got {self.reduction!r}; "
                "'mean' is the reference"
            )
        if self.adaptive_direction not in ADAPTIVE_DIRECTIONS:
            raise ConfigError(
                f"adaptive_direction must be one of {list(ADAPTIVE_DIRECTIONS)}, "
                f"got {self.adaptive_direction!r}"
            )


@dataclass(frozen=True)
class UGradSLPlusConfig(UGradSLConfig):
    """UGradSL+: the paper's update; library starting points (SGD lr 0.01, p 0.7, 10 epochs
    over D_r)."""

    p: float = field(
        default=0.7,
        metadata={"help": "retain weight in [0, 1]: L = p*CE_r - (1 - p)*GLS_f"},
    )
    epochs: int = field(default=10, metadata={"help": "passes over the driver loader"})
    optimizer: OptimizerSpec = _UGRADSL_PLUS_OPTIMIZER


# ---------------------------------------------------------------------------------------------
# Shared implementation

_ACCESS = AccessSpec(level="forget_and_retain")

#: The adaptive-mode search space; merge it into a tuner's space to tune the adaptive rule
#: instead of a fixed alpha.
ADAPTIVE_SEARCH_SPACE: dict[str, Dist] = {
    "alpha": choice(["adaptive"]),
    "adaptive_threshold": uniform(0.02, 0.3),
    "adaptive_scale": uniform(0.2, 2.0),
    "adaptive_direction": choice(list(ADAPTIVE_DIRECTIONS)),
}

_ALPHA_CHOICES = [-0.1, -0.2, -0.4, -0.6, -0.8, -1.0]


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Temporarily put every module in eval mode, restoring each module's own flag on exit."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _require(view: DataView | None, role: str, method: str) -> DataView:
    if view is None:
        raise AccessError(f"{method} needs the {role} set; build the task with its {role} data")
    if view.y is None:
        raise DataError(f"{method} needs {role} labels, but they were withheld from the view")
    if len(view) == 0:
        raise DataError(f"{method} needs a non-empty {role} set")
    return view


def _run(
    model: nn.Module,
    data: DataViews,
    config: UGradSLConfig,
    ctx: RunContext,
    *,
    driver: Literal["forget", "retain"],
    method: str,
) -> nn.Module:
    forget = _require(data.forget, "forget", method)
    retain = _require(data.retain, "retain", method)
    adaptive = config.alpha == "adaptive"
    feature_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = ctx.feature_fn
    if adaptive and feature_fn is None:
        try:
            last_linear(model)
        except ValueError as exc:
            raise ConfigError(
                f"{method} with alpha='adaptive' needs penultimate features, but the model has "
                "no nn.Linear head: pass feature_fn= to unlearn(), or use a fixed alpha"
            ) from exc

    f_loader = forget.loader(
        config.batch_size,
        shuffle=True,
        augment=False,
        generator=ctx.generator,
        device=ctx.device,
    )
    r_loader = retain.loader(
        config.batch_size,
        shuffle=True,
        augment=config.augment_retain,
        generator=ctx.generator,
        device=ctx.device,
    )
    drv, oth = (f_loader, r_loader) if driver == "forget" else (r_loader, f_loader)
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config, len(drv))
    set_train_mode(model, freeze_bn_stats=config.freeze_bn_stats)
    p = float(config.p)
    n_updates, alpha_sum, alpha_count = 0, 0.0, 0

    with contextlib.ExitStack() as stack:
        captured: list[torch.Tensor] | None = None
        if adaptive and feature_fn is None:
            captured = stack.enter_context(penultimate_features(model))

        def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            if captured is not None:
                captured.clear()
            z = model(x)
            if not adaptive:
                return z, None
            if captured is not None:
                if not captured:
                    raise ConfigError(
                        f"{method}: the last nn.Linear was not called in the forward pass, so "
                        "no penultimate features were captured; pass feature_fn= to unlearn()"
                    )
                return z, captured[-1]
            with torch.no_grad(), _eval_mode(model):
                return z, feature_fn(model, x).detach()

        for _ in epochs(ctx, config.epochs):
            for b_drv, b_oth in paired_batches(drv, oth, ctx):
                (x_f, y_f), (x_r, y_r) = (b_drv, b_oth) if driver == "forget" else (b_oth, b_drv)
                if config.concat_forward:
                    z, phi = forward(torch.cat([x_r, x_f]))
                    n_r = x_r.shape[0]
                    z_r, z_f = z[:n_r], z[n_r:]
                    phi_r, phi_f = (None, None) if phi is None else (phi[:n_r], phi[n_r:])
                else:
                    z_r, phi_r = forward(x_r)
                    z_f, phi_f = forward(x_f)
                if adaptive:
                    alpha: float | torch.Tensor = adaptive_alpha(
                        phi_r,
                        phi_f,
                        config.adaptive_threshold,
                        config.adaptive_scale,
                        config.adaptive_direction,
                    ).to(z_f.device)
                    batch_alpha = float(alpha.sum())
                else:
                    alpha = float(config.alpha)
                    batch_alpha = alpha * x_f.shape[0]
                # Zero-weight terms are left out so that p = 1 is exactly fine-tuning.
                terms = []
                if p > 0.0:
                    terms.append(p * F.cross_entropy(z_r, y_r, reduction=config.reduction))
                if p < 1.0:
                    terms.append(-(1.0 - p) * gls_loss(z_f, y_f, alpha, reduction=config.reduction))
                loss = terms[0] if len(terms) == 1 else terms[0] + terms[1]
                if not ctx.step(opt, loss):
                    break
                n_updates += 1
                alpha_sum += batch_alpha
                alpha_count += x_f.shape[0]
                sched.after_step()
            if ctx.stopped:
                break
            sched.after_epoch()

    ctx.info["steps"] = n_updates
    ctx.info["alpha_mean"] = alpha_sum / alpha_count if alpha_count else None
    ctx.info["driver"] = driver
    return model


# ---------------------------------------------------------------------------------------------
# Registered methods

# ``reference`` pins the update rule (not the library's starting numbers, which the paper does
# not publish), so that it stays the paper's even if a default changes.
_REFERENCE = {"max_grad_norm": None, "reduction": "mean"}
_GUARDED = {"max_grad_norm": 5.0}
_DIGITS = {"batch_size": 64, "alpha": -0.5, "epochs": 10, **_GUARDED}

#: One line of help per preset (both methods share the names and the meanings).
PRESET_HELP: dict[str, str] = {
    "reference": "the paper's update: no gradient clipping, batch-mean CE_r and GLS_f",
    "guarded": "the paper's update plus the library's divergence guard: clip gradients at norm 5",
    "adaptive": "per-sample negative smoothing rates from retain-neighbour density",
    "digits": "guarded starting point for the built-in 8x8 digits benchmark (batch 64)",
}


@register_method(
    "ugradsl",
    config=UGradSLConfig,
    access=_ACCESS,
    presets={
        "reference": _REFERENCE,
        "guarded": _GUARDED,
        "adaptive": {"alpha": "adaptive"},
        "digits": {**_DIGITS, "p": 0.5, "lr": 5e-3},
    },
    preset_help=PRESET_HELP,
    search_space={
        "alpha": choice(_ALPHA_CHOICES),
        "p": uniform(0.3, 0.95),
        "lr": loguniform(1e-5, 1e-3),
        "epochs": int_range(3, 10),
    },
)
def ugradsl(model: nn.Module, data: DataViews, config: UGradSLConfig, *, ctx: RunContext):
    """Ascend negatively smoothed CE on the forget set while descending CE on the retain set.

    Paper: Di et al., "Label Smoothing Improves Machine Unlearning" (arXiv 2406.07698, Eq. 8);
    GLS loss as in UCSC-REAL/negative-label-smoothing ``loss.py``. Each update uses one forget
    and one retain batch; ``D_f`` drives the epoch and ``D_r`` is cycled (GA backbone)::

        L(theta) = p * mean_{B_r} CE(f(x_r), y_r) - (1 - p) * mean_{B_f} l_GLS(x_f, y_f; alpha)
        l_GLS = -sum_k [(1 - alpha) e_y + alpha/K]_k log softmax(f(x))_k

    The default config and the ``reference`` preset make the paper's update: no gradient
    clipping, and batch means, as the group's GLS loss code computes them. Eq. 8 writes sums
    over the data; with equal batch sizes, per-batch sums give the same direction with a step
    about ``batch_size`` times larger (``reduction='sum'`` applies them literally). The
    ``guarded`` and ``digits`` presets clip the gradient norm at 5, a library guard against the
    unbounded ascent. Library decisions: two separate forward passes by default
    (``concat_forward`` joins them, which changes BatchNorm statistics); forget batches are
    never augmented. ``alpha='adaptive'`` computes per-sample rates from the
    detached penultimate features of the same forward pass (input of the last ``nn.Linear``):
    ``alpha_j = -s * c_j / |B_r|`` with ``c_j`` the retain samples within cosine distance
    ``(1 - cos)/2 < beta`` (or ``-s * (1 - c_j/|B_r|)``); with ``ctx.feature_fn`` the features
    come from an extra no-grad pass in eval mode. ``info`` records ``alpha_mean`` (over all
    forget samples used) and ``steps``.
    """
    return _run(model, data, config, ctx, driver="forget", method="ugradsl")


@register_method(
    "ugradsl_plus",
    aliases=("ugradsl+",),
    config=UGradSLPlusConfig,
    access=_ACCESS,
    presets={
        "reference": _REFERENCE,
        "guarded": _GUARDED,
        "adaptive": {"alpha": "adaptive"},
        "digits": {**_DIGITS, "p": 0.7, "lr": 0.01},
    },
    preset_help=PRESET_HELP,
    search_space={
        "alpha": choice(_ALPHA_CHOICES),
        "p": uniform(0.3, 0.95),
        "lr": loguniform(1e-3, 4e-2),
        "epochs": int_range(3, 10),
    },
)
def ugradsl_plus(model: nn.Module, data: DataViews, config: UGradSLPlusConfig, *, ctx: RunContext):
    """Fine-tune on the retain set while ascending negatively smoothed CE on the forget set.

    Paper: Di et al., "Label Smoothing Improves Machine Unlearning" (arXiv 2406.07698, Eq. 8,
    the UGradSL+ variant); GLS loss as in UCSC-REAL/negative-label-smoothing ``loss.py``. The
    same objective as :func:`ugradsl`, but ``D_r`` drives the epoch and ``D_f`` is cycled (FT
    backbone, about twice FT's cost)::

        L(theta) = p * mean_{B_r} CE(f(x_r), y_r) - (1 - p) * mean_{B_f} l_GLS(x_f, y_f; alpha)

    Presets and library decisions are those of :func:`ugradsl`: ``reference`` (and the default)
    is the paper's update without clipping, ``guarded`` clips at norm 5. With ``p = 1`` it is
    exactly fine-tuning on the retain batches.
    """
    return _run(model, data, config, ctx, driver="retain", method="ugradsl_plus")

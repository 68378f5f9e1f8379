"""UGradSL and UGradSL+: gradient unlearning with (negative) generalised label smoothing.

Paper: Di et al., "Label Smoothing Improves Machine Unlearning" (arXiv 2406.07698; ICLR 2026).
The GLS loss follows UCSC-REAL/negative-label-smoothing ``loss.py``. Both variants share one
implementation and differ only in which loader drives an epoch (METHODS.md section 1.1):
``ugradsl`` drives with ``D_f`` and cycles ``D_r`` (GA backbone); ``ugradsl_plus`` drives with
``D_r`` and cycles ``D_f`` (FT backbone).

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
from .base import (
    AccessSpec,
    BaseConfig,
    Dist,
    RunContext,
    choice,
    int_range,
    loguniform,
    uniform,
)

__all__ = [
    "ADAPTIVE_DIRECTIONS",
    "ADAPTIVE_SEARCH_SPACE",
    "UGradSLConfig",
    "UGradSLPlusConfig",
    "adaptive_alpha",
    "gls_loss",
    "gls_targets",
    "ugradsl",
    "ugradsl_plus",
]

ADAPTIVE_DIRECTIONS = ("dense_more_negative", "dense_less_negative")
AdaptiveDirection = Literal["dense_more_negative", "dense_less_negative"]


# ---------------------------------------------------------------------------------------------
# Pure helpers


def gls_targets(
    labels: torch.Tensor | int,
    alpha: float | torch.Tensor,
    num_classes: int,
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Generalised label-smoothing targets ``(1 - alpha) * e_y + (alpha / K) * 1``.

    ``alpha > 0`` is ordinary label smoothing, ``alpha < 0`` negative label smoothing; every
    target row sums to 1 and may hold negative entries.

    Args:
        labels: integer class labels, shape ``(N,)`` (or a single label).
        alpha: the smoothing rate, a scalar or a per-sample tensor of shape ``(N,)``.
        num_classes: ``K``.
        dtype: dtype of the result (default: ``alpha``'s if it is a floating tensor, else the
            default float dtype).

    Returns:
        Targets of shape ``(N, K)`` (``(K,)`` for a single label).

    Raises:
        ValueError: non-integer labels, or a per-sample ``alpha`` whose length is not ``N``.

    Example:
        >>> gls_targets(torch.tensor([0]), 0.2, 2)
        tensor([[0.9000, 0.1000]])
    """
    y = torch.as_tensor(labels)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    if dtype is None:
        is_float = isinstance(alpha, torch.Tensor) and alpha.is_floating_point()
        dtype = alpha.dtype if is_float else torch.get_default_dtype()
    onehot = F.one_hot(y.long(), num_classes).to(dtype)
    a = torch.as_tensor(alpha, dtype=dtype, device=y.device)
    if a.dim() > 1:
        raise ValueError(f"alpha must be a scalar or a vector of per-sample rates, got {a.shape}")
    if a.dim() == 1:
        if y.dim() != 1 or a.shape[0] != y.shape[0]:
            raise ValueError(
                f"per-sample alpha has {a.shape[0]} values for labels of shape {tuple(y.shape)}"
            )
        a = a.unsqueeze(-1)
    return (1.0 - a) * onehot + a / num_classes


def gls_loss(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float | torch.Tensor
) -> torch.Tensor:
    """Batch-mean soft-target cross-entropy with GLS targets (any sign of ``alpha``).

    Per sample, ``l = -sum_k y_k^{GLS,alpha} log p_k = (1 - alpha) CE_y + alpha mean_k(-log p_k)``;
    its gradient with respect to the logits is ``softmax(z) - y^{GLS,alpha}``. With
    ``alpha = 0`` this is ``F.cross_entropy``.

    Args:
        logits: ``(N, K)`` logits.
        labels: ``(N,)`` integer labels.
        alpha: scalar or ``(N,)`` smoothing rates (a tensor rate is treated as a constant).
    """
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.detach().to(logits.device)
    targets = gls_targets(labels, alpha, logits.shape[-1], dtype=logits.dtype)
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def adaptive_alpha(
    feat_r: torch.Tensor,
    feat_f: torch.Tensor,
    threshold: float,
    scale: float,
    direction: str = "dense_more_negative",
) -> torch.Tensor:
    """Per-forget-sample smoothing rates from retain-neighbour density (library resolution).

    With cosine distance ``d = (1 - cos(phi_r, phi_f)) / 2`` in ``[0, 1]`` and
    ``c_j = #{r in B_r : d(r, j) < threshold}``:

    - ``dense_more_negative``: ``alpha_j = -scale * c_j / |B_r|`` (the paper's literal
      ``alpha proportional to c_j``);
    - ``dense_less_negative``: ``alpha_j = -scale * (1 - c_j / |B_r|)`` ("dense => weaker").

    Both give ``alpha_j`` in ``[-scale, 0]``. Features are detached; zero vectors sit at distance
    ``0.5`` from everything.

    Args:
        feat_r: retain features, ``(N_r, ...)``.
        feat_f: forget features, ``(N_f, ...)``.
        threshold: ``beta``, the distance below which a retain sample counts as a neighbour.
        scale: ``s >= 0``.
        direction: one of :data:`ADAPTIVE_DIRECTIONS`.

    Returns:
        ``(N_f,)`` rates, float32, on ``feat_f``'s device.
    """
    if direction not in ADAPTIVE_DIRECTIONS:
        raise ValueError(f"direction must be one of {ADAPTIVE_DIRECTIONS}, got {direction!r}")
    if feat_r.shape[0] == 0:
        raise ValueError("adaptive alpha needs at least one retain sample in the batch")
    fr = F.normalize(feat_r.detach().flatten(1).float(), dim=1)
    ff = F.normalize(feat_f.detach().flatten(1).float(), dim=1).to(fr.device)
    cos = (ff @ fr.T).clamp(-1.0, 1.0)
    dist = (1.0 - cos) / 2.0
    frac = (dist < threshold).sum(dim=1).float() / fr.shape[0]
    if direction == "dense_more_negative":
        return -scale * frac
    return -scale * (1.0 - frac)


# ---------------------------------------------------------------------------------------------
# Configs

# SalUn-family conventions: SGD, momentum 0.9, weight decay 5e-4 (frozen, so safe to share).
_UGRADSL_OPTIMIZER = OptimizerSpec(lr=1e-4)
_UGRADSL_PLUS_OPTIMIZER = OptimizerSpec(lr=0.01)


@dataclass(frozen=True)
class UGradSLConfig(BaseConfig):
    """UGradSL: library starting points (SGD lr 1e-4, momentum 0.9, wd 5e-4, 5 epochs over D_f).

    The paper publishes no per-dataset alpha, p or epochs; every default is a library choice.
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
        metadata={"help": "retain weight in [0, 1]: L = p*CE_r - (1 - p)*GLS_f (batch means)"},
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
    max_grad_norm: float | None = field(
        default=5.0, metadata={"help": "gradient-norm clip (divergence guard for the ascent)"}
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
        if self.adaptive_direction not in ADAPTIVE_DIRECTIONS:
            raise ConfigError(
                f"adaptive_direction must be one of {list(ADAPTIVE_DIRECTIONS)}, "
                f"got {self.adaptive_direction!r}"
            )


@dataclass(frozen=True)
class UGradSLPlusConfig(UGradSLConfig):
    """UGradSL+: library starting points (SGD lr 0.01, p 0.7, 10 epochs over D_r)."""

    p: float = field(
        default=0.7,
        metadata={"help": "retain weight in [0, 1]: L = p*CE_r - (1 - p)*GLS_f (batch means)"},
    )
    epochs: int = field(default=10, metadata={"help": "passes over the driver loader"})
    optimizer: OptimizerSpec = _UGRADSL_PLUS_OPTIMIZER


# ---------------------------------------------------------------------------------------------
# Shared implementation

_ACCESS = AccessSpec(level="forget_and_retain")

#: The adaptive-mode search space (METHODS.md section 1.1); merge it into a tuner's space to
#: tune the adaptive rule instead of a fixed alpha.
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
                    terms.append(p * F.cross_entropy(z_r, y_r))
                if p < 1.0:
                    terms.append(-(1.0 - p) * gls_loss(z_f, y_f, alpha))
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

_DIGITS = {"batch_size": 64, "alpha": -0.5, "epochs": 10, "max_grad_norm": 5.0}


@register_method(
    "ugradsl",
    config=UGradSLConfig,
    access=_ACCESS,
    presets={
        "reference": {},
        "adaptive": {"alpha": "adaptive"},
        "digits": {**_DIGITS, "p": 0.5, "lr": 5e-3},
    },
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

    Library decisions [lib]: batch means instead of the paper's sums (so ``p`` does not
    re-weight with batch sizes); two separate forward passes by default (``concat_forward``
    joins them, which changes BatchNorm statistics); ``max_grad_norm = 5`` against divergence;
    forget batches are never augmented. ``alpha='adaptive'`` computes per-sample rates from the
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
        "reference": {},
        "adaptive": {"alpha": "adaptive"},
        "digits": {**_DIGITS, "p": 0.7, "lr": 0.01},
    },
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

    Library decisions [lib] are those of :func:`ugradsl` (batch means, separate forwards,
    ``max_grad_norm = 5``, the adaptive-alpha resolution); with ``p = 1`` it is exactly
    fine-tuning on the retain batches.
    """
    return _run(model, data, config, ctx, driver="retain", method="ugradsl_plus")

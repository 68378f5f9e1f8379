"""Fisher Forgetting: Gaussian noise shaped by the inverse retain-set Fisher (no training)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ..data import DataViews
from ..errors import AccessError, ConfigError, DataError
from ._loop import full_precision, grad_chunk_size
from ._registry import register_method
from .base import AccessSpec, RunContext, loguniform
from .config import BaseConfig

__all__ = [
    "FISHER_EPS",
    "FisherConfig",
    "auto_chunk_size",
    "classwise_override",
    "fisher",
    "fisher_diagonal",
    "fisher_variances",
]

#: Added to the Fisher before inversion (reference ``1 / (F + 1e-8)``).
FISHER_EPS = 1e-8
#: Variance clamps of the reference: every tensor, and tensors with ``shape[0] == K``.
VAR_CLAMP = 1e3
VAR_CLAMP_HEAD = 1e2
#: Variance of the forgotten class's head rows in the class-wise variant.
CLASSWISE_VAR = 1e-4
#: Elements of one chunk's per-sample, per-class gradients (chunk * K * P) when ``chunk_size``
#: is automatic: 2**23 floats (32 MiB) was the fastest on one CPU thread for the digits MLP
#: and CNN (smaller chunks pay per-call overhead, larger ones leave the cache). A ResNet-18
#: (11M parameters) gets one sample per chunk: K gradients, 450 MB for K = 10.
AUTO_CHUNK_ELEMENTS = 2**23

Variant = Literal["ssd", "sparse_scrub"]


@dataclass(frozen=True)
class FisherConfig(BaseConfig):
    """Fisher Forgetting: alpha 1e-6 (SSD repository), the SSD variant, full D_r.

    ``batch_size``, ``epochs`` and the optimizer fields of :class:`BaseConfig` are unused: the
    method makes no optimizer step.
    """

    alpha: float = field(
        default=1e-6,
        metadata={"help": "noise scale: var = alpha * clamp(1 / (F + 1e-8)) (0: no change)"},
    )
    variant: Variant = field(
        default="ssd",
        metadata={
            "help": "'ssd': x10 for 1-D tensors; 'sparse_scrub' (Unlearn-Sparse / SCRUB): x10 "
            "once for tensors with shape[0] == K or ndim == 1"
        },
    )
    classwise: bool | None = field(
        default=None,
        metadata={
            "help": "zero the forgotten classes' head rows (mu = 0, var = 1e-4); "
            "null: on in 'class' scenarios"
        },
    )
    max_samples: int | None = field(
        default=None,
        metadata={"help": "[lib] Fisher over a random subset of this many retain samples"},
    )
    chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "samples per vectorised per-sample-gradient call (memory ~ chunk * K * P "
            "floats); null: automatic (about 2**23 floats)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ConfigError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if self.variant not in ("ssd", "sparse_scrub"):
            raise ConfigError(f"variant must be 'ssd' or 'sparse_scrub', got {self.variant!r}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(
                f"max_samples must be >= 1 or null (all retain samples), got {self.max_samples}"
            )
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1 or null (automatic), got {self.chunk_size}")


def auto_chunk_size(num_params: int, num_classes: int) -> int:
    """Samples per vectorised call so that ``chunk * K * P`` is about 2**23 elements."""
    return grad_chunk_size(num_params, num_classes, budget_mb=AUTO_CHUNK_ELEMENTS * 4 / 2**20)


def fisher_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    *,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """The diagonal Fisher of the model's predictive distribution over the inputs ``x``.

    ``F_i = (1/n) sum_x sum_k p(k|x) * (d_i CE(f(x), k))^2`` with ``p = sg[softmax(f(x))]``,
    computed in eval mode (BatchNorm uses its running statistics, dropout is off) and in
    float32 (autocast off, whatever the run's precision). For each
    sample, :func:`torch.func.jacrev` gives the K gradients ``sqrt(p_k) * d_i log p(k|x)`` (one
    forward, K vector-Jacobian products); :func:`torch.func.vmap` vectorises this over
    ``chunk_size`` samples, and the squares are summed over samples and classes. Since
    ``d_i CE(f(x), k) = -d_i log p(k|x)``, this is the reference's sum over K backward passes
    per sample at batch size 1, up to float rounding.

    Args:
        model: the classifier; not modified (its train/eval flags are restored).
        x: model-ready inputs, ``(n, ...)``.
        chunk_size: samples per vectorised call (peak memory ~ ``chunk_size * K * P`` floats);
            ``None``: :func:`auto_chunk_size`.
        device: where to compute (default: the model's device).

    Returns:
        ``{name: F}`` for every parameter with ``requires_grad`` (frozen ones are constants).

    Raises:
        DataError: ``x`` is empty.
    """
    n = int(x.shape[0])
    if n == 0:
        raise DataError("the Fisher needs at least one sample; the retain set is empty")
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    consts = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
    consts.update({k: b.detach() for k, b in model.named_buffers()})
    if not params:
        return {}
    if device is None:
        device = next(iter(params.values())).device

    def scaled_log_probs(ps: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (ps, consts), (xi.unsqueeze(0),))
        lp = F.log_softmax(out, dim=-1).squeeze(0)
        # sqrt(sg[p_k]) * log p_k: its squared gradients carry the weights p_k.
        return lp * lp.detach().exp().sqrt()

    per_sample = vmap(jacrev(scaled_log_probs), in_dims=(None, 0))
    acc = {k: torch.zeros_like(p) for k, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        with full_precision(device):
            step = chunk_size
            if step is None:  # one forward finds K
                with torch.no_grad():
                    out = functional_call(model, (params, consts), (x[:1].to(device),))
                step = auto_chunk_size(sum(p.numel() for p in params.values()), out.shape[-1])
            for start in range(0, n, step):
                jac = per_sample(params, x[start : start + step].to(device))
                for k, j in jac.items():  # (chunk, K, *shape)
                    acc[k] += j.square_().sum(dim=(0, 1))
    finally:
        model.train(was_training)
    for v in acc.values():
        v /= float(n)
    return acc


def _head_like(p: torch.Tensor, num_classes: int) -> bool:
    return p.ndim >= 1 and p.shape[0] == num_classes


def fisher_variances(
    fisher: Mapping[str, torch.Tensor],
    params: Mapping[str, torch.Tensor],
    alpha: float,
    num_classes: int,
    variant: Variant = "ssd",
) -> dict[str, torch.Tensor]:
    """The per-coordinate noise variances of Fisher Forgetting (a pure function).

    Per tensor, in the reference's order: ``var = min(1 / (F + 1e-8), 1e3)``; if
    ``shape[0] == K``, ``var = min(var, 1e2)``; ``var *= alpha``; for ``ndim > 1`` the mean
    over dim 1 (keepdim) is expanded back to the tensor's shape; then ``var *= 10`` for 1-D
    tensors (``variant="ssd"``) or, once, for tensors with ``shape[0] == K`` or ``ndim == 1``
    (``variant="sparse_scrub"``). 0-d parameters are treated as 1-D [lib].

    Args:
        fisher: ``{name: F}`` (see :func:`fisher_diagonal`); names missing here get no entry.
        params: ``{name: tensor}`` giving each parameter's shape.
        alpha: the noise scale (>= 0).
        num_classes: K.
        variant: ``"ssd"`` or ``"sparse_scrub"``.

    Returns:
        ``{name: var}`` with each parameter's shape (fresh tensors).
    """
    if variant not in ("ssd", "sparse_scrub"):
        raise ConfigError(f"variant must be 'ssd' or 'sparse_scrub', got {variant!r}")
    out: dict[str, torch.Tensor] = {}
    for name, p in params.items():
        if name not in fisher:
            continue
        var = (1.0 / (fisher[name] + FISHER_EPS)).clamp(max=VAR_CLAMP)
        head = _head_like(p, num_classes)
        if head:
            var = var.clamp(max=VAR_CLAMP_HEAD)
        var = var * alpha
        if p.ndim > 1:
            var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
        if variant == "ssd":
            if p.ndim <= 1:
                var = var * 10
        elif head or p.ndim <= 1:
            var = var * 10
        out[name] = var
    return out


def classwise_override(
    mu: torch.Tensor, var: torch.Tensor, num_classes: int, classes: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The class-wise variant: ``mu[c] = 0`` and ``var[c] = 1e-4`` for tensors with
    ``shape[0] == K`` and every forgotten class ``c``; other tensors come back unchanged.

    Returns new tensors (the inputs are not modified).
    """
    if not _head_like(mu, num_classes) or not classes:
        return mu, var
    idx = torch.as_tensor(list(classes), dtype=torch.long, device=mu.device)
    mu, var = mu.clone(), var.clone()
    mu[idx] = 0
    var[idx] = CLASSWISE_VAR
    return mu, var


@register_method(
    "fisher",
    aliases=("ff", "fisher_forgetting"),
    config=FisherConfig,
    access=AccessSpec(
        level="forget_and_retain",
        uses_forget=False,
        forget_labels=False,
        retain_labels=False,
    ),
    presets={
        "reference": {},
        "sparse_scrub": {"variant": "sparse_scrub"},
        "digits": {"alpha": 1e-6},
    },
    search_space={"alpha": loguniform(1e-9, 1e-4)},
    identity_config={"alpha": 0.0, "classwise": False},
)
def fisher(model: nn.Module, data: DataViews, config: FisherConfig, *, ctx: RunContext):
    """Add Gaussian noise scaled by the inverse retain-set Fisher; no optimizer step.

    Reference: Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net: Selective
    Forgetting in Deep Networks" (CVPR 2020); if-loops/selective-synaptic-dampening
    ``src/forget_random_strategies.py::FisherForgetting`` (``hessian``, ``get_mean_var``);
    OPTML-Group/Unlearn-Saliency ``Classification/unlearn/fisher.py`` (``fisher_new``). In eval
    mode, over the retain set (labels are never read):

        F_i = (1/n_r) sum_{x in D_r} sum_k p(k|x) * (d_i CE(f(x), k))^2

    then, per parameter tensor, the variance of :func:`fisher_variances`
    (``alpha * min(1 / (F + 1e-8), 1e3)``, at most ``alpha * 1e2`` where ``shape[0] == K``,
    averaged over dim 1 for ``ndim > 1``, x10 for 1-D tensors) and

        theta <- mu + sqrt(var) * eps,   mu = theta_o,  eps ~ N(0, I)

    with ``eps`` drawn from ``ctx.generator`` tensor by tensor in ``named_parameters()`` order.

    Notes [lib]:
        - Per-sample, per-class gradients are vectorised with ``torch.func`` (``jacrev`` inside
          ``vmap``, ``chunk_size`` samples at a time) instead of the reference's ``K * n_r``
          backward passes at batch size 1; the result is the same up to float rounding.
        - ``max_samples``: the Fisher over a random subset of D_r drawn from ``ctx.generator``
          (default: all of D_r). Retain inputs are used without augmentation.
        - Class-wise variant (``classwise``; default on in ``class`` scenarios, using
          ``ctx.forget_classes``): for tensors with ``shape[0] == K``, ``mu[c] = 0`` and
          ``var[c] = 1e-4`` for each forgotten class ``c``, applied last, just before sampling
          (Unlearn-Sparse applies it before its x10, giving 1e-3 there).
        - Only parameters with ``requires_grad`` are perturbed (the reference would perturb
          frozen ones with the maximal variance); buffers (BN statistics) are unchanged.
        - Coordinates with ``var == 0`` keep ``mu`` bit-exactly, so ``alpha = 0`` (without the
          class-wise variant) leaves the model unchanged: the identity setting.
        - ``info``: ``fisher_samples`` (n used), ``mean_variance`` (over all perturbed
          coordinates), ``variant``, ``classwise``, ``fisher_seconds``.
    """
    retain = data.retain
    if retain is None:
        raise AccessError("fisher needs the retain set (its Fisher shapes the noise)")
    n_r = len(retain)
    if n_r == 0:
        raise DataError("fisher needs a non-empty retain set to estimate the Fisher")
    classwise = config.classwise
    if classwise is None:
        classwise = ctx.scenario == "class" and bool(ctx.forget_classes)
    if classwise and not ctx.forget_classes:
        raise ConfigError(
            "classwise=True needs forgotten classes (a 'class' scenario); set classwise to "
            "false or null for this task"
        )
    k = ctx.num_classes

    x = retain.x
    if config.max_samples is not None and config.max_samples < n_r:
        pick = torch.randperm(n_r, generator=ctx.generator)[: config.max_samples]
        x = x[pick.sort().values]
    t0 = time.perf_counter()
    fisher_diag = fisher_diagonal(model, x, chunk_size=config.chunk_size, device=ctx.device)
    t_fisher = time.perf_counter() - t0

    named = {name: p for name, p in model.named_parameters() if p.requires_grad}
    variances = fisher_variances(fisher_diag, named, config.alpha, k, config.variant)
    var_sum, var_count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for name, p in named.items():
            mu, var = p.detach().clone(), variances[name]
            if classwise:
                mu, var = classwise_override(mu, var, k, ctx.forget_classes)
            eps = torch.randn(p.shape, generator=ctx.generator, dtype=p.dtype).to(p.device)
            std = var.sqrt()
            # Where var == 0, keep mu exactly (mu + 0 * eps would turn -0.0 into +0.0).
            p.copy_(torch.where(std > 0, mu + std * eps, mu))
            var_sum += float(var.double().sum())
            var_count += var.numel()
    ctx.info.update(
        fisher_samples=int(x.shape[0]),
        mean_variance=var_sum / var_count if var_count else 0.0,
        variant=config.variant,
        classwise=bool(classwise),
        fisher_seconds=t_fisher,
    )
    return model

"""Selective Synaptic Dampening (SSD) and its label-free variant (LFSSD): no training loop."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataView, DataViews
from ..datasets._bundle import tensor_digest
from ..errors import AccessError, ConfigError, DataError
from ._registry import register_method
from .base import AccessSpec, BaseConfig, RunContext, loguniform

__all__ = [
    "SSDConfig",
    "compute_importances",
    "dampen",
    "dtr_importance_key",
    "lfssd",
    "ssd",
]


@dataclass(frozen=True)
class SSDConfig(BaseConfig):
    """SSD/LFSSD: reference alpha 10, lambda 1, importance batch 64 (128 for random)."""

    selection_weighting: float = field(
        default=10.0,
        metadata={"help": "alpha: a weight is selected where I_f > alpha * I_D (inf: none)"},
    )
    dampening_constant: float = field(
        default=1.0,
        metadata={"help": "lambda: selected weights are scaled by min(lambda * I_D / I_f, 1)"},
    )
    importance_batch_size: int = field(
        default=64,
        metadata={
            "help": "batch size of the importance passes over D_tr and D_f (the same "
            "for both; importances are squared mini-batch gradients)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.selection_weighting > 0:  # inf is allowed: it selects nothing
            raise ConfigError(
                f"selection_weighting (alpha) must be > 0, got {self.selection_weighting}"
            )
        if not (self.dampening_constant >= 0 and self.dampening_constant != float("inf")):
            raise ConfigError(
                "dampening_constant (lambda) must be a finite number >= 0, got "
                f"{self.dampening_constant}"
            )
        if self.importance_batch_size < 1:
            raise ConfigError(
                f"importance_batch_size must be >= 1, got {self.importance_batch_size}"
            )


def compute_importances(
    model: nn.Module,
    view: DataView,
    batch_size: int,
    *,
    label_free: bool = False,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Per-parameter importances over ``view``, in eval mode, batches in order.

    SSD: ``I = (1/#batches) sum_batches (grad CE_batch)^2`` with the batch-mean CE.
    LFSSD (``label_free``): ``I = (1/#batches) sum_batches |grad mean_b ||f(x_b)||^2|``; labels
    are never read. Only parameters with ``requires_grad`` get an importance. The model's mode
    is restored and no ``.grad`` is left behind.

    Raises:
        DataError: an empty view, or SSD on a view without labels.
    """
    if len(view) == 0:
        raise DataError(f"cannot compute importances over the empty view {view.name!r}")
    if not label_free and view.y is None:
        raise DataError(f"SSD importances need labels, but {view.name!r} has none; use 'lfssd'")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    imp = {n: torch.zeros_like(p) for n, p in named}
    params = [p for _, p in named]
    was_training = model.training
    model.eval()
    batches = 0
    try:
        for xb, yb in view.loader(batch_size, shuffle=False, device=device):
            with torch.enable_grad():
                out = model(xb)
                if label_free:
                    loss = out.pow(2).sum(dim=1).mean()
                else:
                    loss = F.cross_entropy(out, yb)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            for (n, _), g in zip(named, grads):
                if g is not None:
                    imp[n] += g.abs() if label_free else g.pow(2)
            batches += 1
    finally:
        model.train(was_training)
    for v in imp.values():
        v /= float(batches)
    return imp


def dtr_importance_key(
    model: nn.Module, view: DataView, batch_size: int, *, label_free: bool = False
) -> str:
    """The ``ctx.cache`` key of ``D_tr`` importances for this model, data and batch size.

    It hashes the model's state (parameters and buffers), the inputs (and labels for SSD) and
    the batch size, so a cache shared between runs never serves stale importances.
    """
    kind = "lfssd" if label_free else "ssd"
    model_digest = tensor_digest(
        *[t for _, t in sorted(model.state_dict().items())],
        extra=sorted(model.state_dict()),
    )
    parts = [view.x] if label_free or view.y is None else [view.x, view.y]
    data_digest = tensor_digest(*parts)
    return f"ssd_importance_Dtr/{kind}/bs{int(batch_size)}/{model_digest}/{data_digest}"


@torch.no_grad()
def dampen(
    model: nn.Module,
    importance_d: dict[str, torch.Tensor],
    importance_f: dict[str, torch.Tensor],
    alpha: float,
    lam: float,
) -> tuple[int, int]:
    """Scale each selected weight (``I_f > alpha * I_D``) by ``min(lam * I_D / I_f, 1)``.

    Unselected coordinates are left bit-identical. Returns ``(selected, total)`` counts over
    the parameters that have importances.
    """
    selected = total = 0
    for name, p in model.named_parameters():
        if name not in importance_f:
            continue
        i_d, i_f = importance_d[name], importance_f[name]
        where = i_f > i_d.mul(alpha)
        total += where.numel()
        n_sel = int(where.sum())
        if n_sel == 0:
            continue
        selected += n_sel
        factor = i_d.mul(lam).div(i_f).clamp(max=1.0)
        p.copy_(torch.where(where, p.mul(factor), p))
    return selected, total


def _run(model: nn.Module, data: DataViews, config: SSDConfig, ctx: RunContext, label_free: bool):
    name = "lfssd" if label_free else "ssd"
    if data.train_full is None:
        raise AccessError(f"{name} needs the full training set (full_train access) for I_D")
    bs = config.importance_batch_size
    key = dtr_importance_key(model, data.train_full, bs, label_free=label_free)
    imp_d = ctx.cache.get(key)
    ctx.info["importance_cached"] = imp_d is not None
    if imp_d is None:
        imp_d = compute_importances(
            model, data.train_full, bs, label_free=label_free, device=ctx.device
        )
        ctx.cache[key] = imp_d
    imp_f = compute_importances(model, data.forget, bs, label_free=label_free, device=ctx.device)
    selected, total = dampen(
        model, imp_d, imp_f, config.selection_weighting, config.dampening_constant
    )
    ctx.info["selected_fraction"] = selected / total if total else 0.0
    ctx.info["selected_weights"] = selected
    return model


_ACCESS_SSD = AccessSpec(level="full_train", uses_retain=False)
_ACCESS_LFSSD = AccessSpec(
    level="full_train", uses_retain=False, forget_labels=False, retain_labels=False
)
_PRESETS = {
    "ssd_resnet18_fullclass": {"selection_weighting": 10.0, "importance_batch_size": 64},
    "ssd_resnet18_subclass": {"selection_weighting": 10.0, "importance_batch_size": 64},
    "ssd_resnet18_random": {"selection_weighting": 10.0, "importance_batch_size": 128},
    "ssd_vit_fullclass": {"selection_weighting": 5.0, "importance_batch_size": 64},
    "ssd_vit_subclass": {"selection_weighting": 25.0, "importance_batch_size": 64},
    "ssd_vit_random": {"selection_weighting": 10.0, "importance_batch_size": 128},
    "ssd_pins_fullclass": {
        "selection_weighting": 50.0,
        "dampening_constant": 0.1,
        "importance_batch_size": 64,
    },
    "digits": {
        "selection_weighting": 10.0,
        "dampening_constant": 1.0,
        "importance_batch_size": 64,
    },
}
_SEARCH = {
    "selection_weighting": loguniform(1.0, 100.0),
    "dampening_constant": loguniform(0.05, 5.0),
}
# Reference importance batch: 64 for full-class and sub-class, 128 for random (and, by the
# library's choice, for arbitrary index sets, which are sample-wise like random).
_SCENARIO_DEFAULTS = {
    "random": {"importance_batch_size": 128},
    "indices": {"importance_batch_size": 128},
}
_IDENTITY = {"selection_weighting": float("inf")}


@register_method(
    "ssd",
    config=SSDConfig,
    access=_ACCESS_SSD,
    presets=_PRESETS,
    search_space=_SEARCH,
    identity_config=_IDENTITY,
    scenario_defaults=_SCENARIO_DEFAULTS,
)
def ssd(model: nn.Module, data: DataViews, config: SSDConfig, *, ctx: RunContext):
    """Dampen the weights far more important to D_f than to D_tr; no training loop.

    Reference: Foster, Schoepf, Brintrup, "Fast Machine Unlearning Without Retraining Through
    Selective Synaptic Dampening" (AAAI 2024); if-loops/selective-synaptic-dampening
    ``src/ssd.py`` (``calc_importance``, ``modify_weight``). With importances (eval mode)

        I_S = (1/#batches) sum_{batches of S} (grad_theta CE_batch)^2

    over ``D_tr`` and ``D_f`` with the same batch size, every coordinate with
    ``I_f,i > alpha * I_D,i`` is scaled ``theta_i <- min(lambda * I_D,i / I_f,i, 1) * theta_i``;
    all others are unchanged (bit-identical). No optimizer step is made.

    Notes [lib]:
        - ``D_tr`` importances are cached in ``ctx.cache`` under
          :func:`dtr_importance_key` (a hash of the model's weights and buffers, the data and
          the batch size), so repeated calls reuse them; precompute them with
          :func:`compute_importances` and store them under that key.
        - Batches are taken in dataset order (the reference shuffles), so importances are
          deterministic and cacheable.
        - ``alpha = inf`` selects nothing (the identity setting). ``batch_size``, ``epochs`` and
          the optimizer fields of the config are unused.
        - ``info["selected_fraction"]``: the fraction of weights dampened.
    """
    return _run(model, data, config, ctx, label_free=False)


@register_method(
    "lfssd",
    aliases=("label_free_ssd",),
    config=SSDConfig,
    access=_ACCESS_LFSSD,
    presets=_PRESETS,
    search_space=_SEARCH,
    identity_config=_IDENTITY,
    scenario_defaults=_SCENARIO_DEFAULTS,
)
def lfssd(model: nn.Module, data: DataViews, config: SSDConfig, *, ctx: RunContext):
    """Dampen weights with label-free importances (gradient of the squared logit norm).

    Reference: Foster, Schoepf, Brintrup, "Loss-Free Machine Unlearning" (ICLR 2024 Tiny
    Paper); the LFSSD change in the README of if-loops/selective-synaptic-dampening. As SSD,
    with importances

        I_S = (1/#batches) sum_{batches of S} |grad_theta mean_b ||f_theta(x_b)||_2^2|

    so no label of ``D_tr`` or ``D_f`` is ever read (the front door still hands ``D_tr`` with its
    labels; they are ignored). Dampening: ``theta_i <- min(lambda * I_D,i / I_f,i, 1) * theta_i``
    where ``I_f,i > alpha * I_D,i``.

    Notes [lib]: alpha and lambda default to SSD's values; the cache, ordering and identity
    notes of :func:`ssd` apply.
    """
    return _run(model, data, config, ctx, label_free=True)

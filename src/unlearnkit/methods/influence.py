"""Influence Unlearning with the WoodFisher inverse approximation.

One Newton-like step, no optimizer: remove the forget set's influence on the empirical risk
minimiser by ``θ ← θ + α · Ĥ⁻¹ v``, where ``v`` is the (scaled) difference of the forget and
retain gradients and ``Ĥ⁻¹`` is approximated by a rank-one recursion over single retain-sample
gradients (WoodFisher). Everything runs in eval mode on flattened parameter vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..data import DataView, DataViews
from ..errors import ConfigError, DataError
from ._loop import full_precision, grad_chunk_size
from ._registry import register_method
from .base import AccessSpec, RunContext, loguniform
from .config import RECORD_IF_SET, BaseConfig

__all__ = [
    "InfluenceConfig",
    "influence",
    "influence_chunk_size",
    "influence_direction",
    "summed_gradient",
    "woodfisher_recursion",
]


@dataclass(frozen=True)
class InfluenceConfig(BaseConfig):
    """Influence Unlearning (WoodFisher): step size ``alpha`` and the recursion's ``N``.

    ``batch_size`` only sets how many samples one gradient call handles (the sums do not
    depend on it beyond float rounding); ``chunk_size`` caps how many single-sample gradients
    are held at once; ``epochs`` and the optimizer are unused.
    """

    alpha: float = field(default=1.0, metadata={"help": "step size of θ ← θ + α·k"})
    n_samples: int = field(
        default=1000,
        metadata={
            "help": "N of the recursion (capped at n_r); N + 2 retain samples are processed "
            "in dataset order"
        },
    )
    batch_size: int = 256
    chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "single-sample gradients computed at once (memory ~ 2 * chunk * P floats); "
            "null: batch_size, lowered so that they fit in 256 MB (a few for a ResNet-18)",
            RECORD_IF_SET: True,
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not math.isfinite(self.alpha):
            raise ConfigError(f"alpha must be a finite number, got {self.alpha}")
        if self.n_samples < 1:
            raise ConfigError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1 or null (automatic), got {self.chunk_size}")


def influence_chunk_size(config: InfluenceConfig, num_params: int) -> int:
    """Samples per single-sample-gradient call: ``config.chunk_size``, or ``batch_size``
    capped so that the ``(chunk, P)`` block and its per-tensor parts fit in 256 MB."""
    if config.chunk_size is not None:
        return config.chunk_size
    return min(config.batch_size, grad_chunk_size(num_params, per_sample=2))


def _split_params(model: nn.Module):
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    consts = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
    consts.update({k: b.detach() for k, b in model.named_buffers()})
    return params, consts


def _flat(grads: dict[str, torch.Tensor], names: list[str], lead: int = 0) -> torch.Tensor:
    """Concatenate gradients in parameter order; ``lead`` leading (per-sample) axes kept."""
    return torch.cat([grads[n].reshape(*grads[n].shape[:lead], -1) for n in names], dim=-1)


def summed_gradient(
    model: nn.Module, view: DataView, batch_size: int, device: torch.device
) -> torch.Tensor:
    """``Σ_{x ∈ view} ∇ℓ(x)`` as a flat vector: batch-mean cross-entropy gradients times the
    batch size, batches in dataset order (no shuffling), eval mode."""
    params, consts = _split_params(model)
    names = list(params)

    def batch_loss(ps, x, y):
        return F.cross_entropy(functional_call(model, (ps, consts), (x,)), y)

    g = torch.func.grad(batch_loss)
    total = torch.zeros(sum(p.numel() for p in params.values()), device=device)
    for start in range(0, len(view), batch_size):
        x = view.x[start : start + batch_size].to(device)
        y = view.y[start : start + batch_size].to(device)
        total += _flat(g(params, x, y), names) * x.shape[0]
    return total


def influence_direction(g_f: torch.Tensor, g_r: torch.Tensor, n_f: int, n_r: int) -> torch.Tensor:
    """``v = g_f/n − (n_f/(n·n_r))·g_r`` with ``n = n_f + n_r`` (= ``(n_f/n)(ḡ_f − ḡ_r)``)."""
    n = n_f + n_r
    return g_f / n - (n_f / (n * n_r)) * g_r


def woodfisher_recursion(v: torch.Tensor, grads, n: int) -> torch.Tensor:
    """The reference's WoodFisher recursion (step 3 of :func:`influence`).

    ``k ← v``, ``o ← None``; for each single-sample gradient ``g`` in order: the first sets
    ``o ← g``; every later one does ``t = o·g``, ``k ← k − ((k·g)/(n + t))·o``,
    ``o ← o − (t/(n + t))·o``. ``grads`` is an iterable of flat gradient vectors (or of
    ``(m, P)`` blocks of them, taken row by row).
    """
    k = v.clone()
    o: torch.Tensor | None = None
    for block in grads:
        rows = block if block.dim() == 2 else block.unsqueeze(0)
        for g in rows:
            if o is None:
                o = g.clone()
                continue
            t = torch.dot(o, g)
            k = k - (torch.dot(k, g) / (n + t)) * o
            o = o - (t / (n + t)) * o
    return k


def _per_sample_gradients(model, view: DataView, count: int, chunk: int, device):
    """Single-sample gradients of the first ``count`` samples of ``view``, in order, as
    ``(m, P)`` blocks of at most ``chunk`` rows (vectorised with :func:`torch.func.vmap`)."""
    params, consts = _split_params(model)
    names = list(params)

    def one_loss(ps, x, y):
        out = functional_call(model, (ps, consts), (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    per_sample = vmap(grad(one_loss), in_dims=(None, 0, 0))
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        x, y = view.x[start:stop].to(device), view.y[start:stop].to(device)
        yield _flat(per_sample(params, x, y), names, lead=1)


@register_method(
    "influence",
    aliases=("iu", "wfisher", "woodfisher"),
    config=InfluenceConfig,
    access=AccessSpec(level="forget_and_retain"),
    presets={"reference": {}, "deepunlearn": {"alpha": 0.2}, "salun_scripts": {"alpha": 2.0}},
    search_space={"alpha": loguniform(0.05, 50)},
    identity_config={"alpha": 0.0},
)
def influence(model: nn.Module, data: DataViews, config: InfluenceConfig, *, ctx: RunContext):
    """``θ ← θ + α·k`` with ``k`` the WoodFisher-preconditioned influence direction.

    Reference: OPTML-Group/Unlearn-Saliency ``unlearn/Wfisher.py``; xcadet/deepunlearn
    ``munl/unlearning/iu.py``. Steps:

    1. ``g_f``, ``g_r``: summed per-sample gradients of D_f and D_r (batch means times batch
       sizes, dataset order, eval mode);
    2. ``v = g_f/n − (n_f/(n·n_r))·g_r``;
    3. the WoodFisher recursion over single retain samples in dataset order with
       ``N = min(n_samples, n_r)``, processing samples 0..N+1 (at most ``n_r``), their
       gradients computed ``chunk_size`` at a time (see :func:`influence_chunk_size`);
    4. ``θ ← θ + α·k`` over the trainable parameters, in ``named_parameters`` order.
    """
    forget, retain = data.forget, data.retain
    n_f, n_r = len(forget), len(retain)
    if n_f == 0 or n_r == 0:
        raise DataError("influence needs a non-empty forget set and retain set")
    if config.alpha == 0:
        return model  # the identity: no gradients needed
    was_training = model.training
    model.eval()
    try:
        dev = ctx.device
        num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        with full_precision(dev):  # float32 whatever the run's precision
            g_f = summed_gradient(model, forget, config.batch_size, dev)
            g_r = summed_gradient(model, retain, config.batch_size, dev)
            v = influence_direction(g_f, g_r, n_f, n_r)
            n = min(config.n_samples, n_r)
            count = min(n + 2, n_r)
            chunk = influence_chunk_size(config, num_params)
            blocks = _per_sample_gradients(model, retain, count, chunk, dev)
            k = woodfisher_recursion(v, blocks, n)
        if not bool(torch.isfinite(k).all()):
            ctx.diverge("the influence perturbation is not finite")  # model left as it was
            return model
        with torch.no_grad():
            offset = 0
            for p in model.parameters():
                if not p.requires_grad:
                    continue
                size = p.numel()
                p.add_(k[offset : offset + size].view_as(p), alpha=config.alpha)
                offset += size
    finally:
        model.train(was_training)
    return model

"""JiT's loss: the local Lipschitz ratio of a model around a batch, with the noise it is taken at.

Pure functions of a model, a batch and given noise; :func:`unlearnkit.methods.jit.jit` runs
them, and they stay importable from :mod:`unlearnkit.methods.jit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..checks import require_continuous_inputs
from ..errors import ConfigError, DataError

__all__ = [
    "DENOMINATORS",
    "REDUCTIONS",
    "LipschitzTerms",
    "lipschitz_loss",
    "lipschitz_terms",
    "sample_noise",
]

REDUCTIONS = ("sum", "mean")
DENOMINATORS = ("perturbed_diff", "noise")


class LipschitzTerms(NamedTuple):
    """The JiT loss of one batch and its parts.

    Attributes:
        loss: ``(1/N) sum_i K_i``, with a graph through the clean branch only.
        ratios: ``(N, B)`` detached per-sample ratios ``r_{i,b}``.
        perturbed_inputs: the ``N`` clamped inputs ``x_tilde_i``.
        perturbed_outputs: the ``N`` outputs ``f(x_tilde_i)`` (computed without gradient).
        n_degenerate: ratios set to 0 because their denominator was 0 [lib].
    """

    loss: torch.Tensor
    ratios: torch.Tensor
    perturbed_inputs: list[torch.Tensor]
    perturbed_outputs: list[torch.Tensor]
    n_degenerate: int


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def sample_noise(
    x: torch.Tensor, sigma: float, n: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """``n`` draws of ``sigma * N(0, I)`` with ``x``'s shape, from ``generator``, on ``x``'s device.

    The draws are made on the generator's device (CPU for the run context's generator) and moved,
    so a run is reproducible across devices.

    Raises:
        DataError: ``x`` holds integers (categorical codes): Gaussian noise needs real inputs.
    """
    require_continuous_inputs(x, "JiT")
    gen_device = generator.device
    return [
        (sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=gen_device)).to(
            x.device
        )
        for _ in range(n)
    ]


def lipschitz_terms(
    model: nn.Module,
    x: torch.Tensor,
    noise: Sequence[torch.Tensor],
    *,
    reduction: str = "sum",
    bounds: tuple[Any, Any] | None = None,
    denominator: str = "perturbed_diff",
) -> LipschitzTerms:
    """Compute the JiT loss of one batch with given noise (the pure core of :func:`jit`).

    ``L = (1/N) sum_i R_b ||f(x_b) - sg[f(x~_{i,b})]||_2 / ||x_b - x~_{i,b}||_2`` with
    ``x~_i = clamp(x + xi_i, lo, hi)``, inputs and outputs flattened per sample, and ``R`` the
    sum (or mean) over the batch.

    Args:
        model: the model, in the mode the caller chose (its forward passes run as they are).
        x: the batch of model inputs.
        noise: the ``N`` noise tensors ``xi_i`` (already scaled by sigma), shaped like ``x``.
        reduction: ``"sum"`` [ref] or ``"mean"`` over the batch.
        bounds: ``(lo, hi)`` for the clamp (scalars or tensors broadcastable to ``x``), or
            ``None`` for no clamp.
        denominator: ``"perturbed_diff"`` (``||x - x~||``, the reference code) or ``"noise"``
            (``||xi||``, the paper's Algorithm 1).

    Returns:
        The loss and its parts. A ratio whose denominator is 0 (the clamp undid the whole
        perturbation of a sample) is set to 0 instead of 0/0 [lib].
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    if denominator not in DENOMINATORS:
        raise ConfigError(f"denominator must be one of {list(DENOMINATORS)}, got {denominator!r}")
    if len(noise) < 1:
        raise ConfigError("lipschitz_terms needs at least one noise tensor (n_samples >= 1)")
    out = model(x).flatten(1)
    x_flat = x.flatten(1)
    total = out.new_zeros(())
    ratios, xs, outs = [], [], []
    n_degenerate = 0
    for xi in noise:
        if xi.shape != x.shape:
            raise DataError(
                f"noise shape {tuple(xi.shape)} differs from the batch {tuple(x.shape)}"
            )
        x_tilde = x + xi
        if bounds is not None:
            x_tilde = torch.clamp(x_tilde, bounds[0], bounds[1])
        x_tilde = x_tilde.detach()
        with torch.no_grad():
            try:
                out_tilde = model(x_tilde).flatten(1)
            except IndexError as exc:  # an embedding looked up a perturbed (non-code) input
                raise DataError(
                    f"the model failed on noise-perturbed inputs ({_first_line(exc)}); JiT "
                    "needs continuous inputs, and these look like categorical codes: use a "
                    "method that does not perturb inputs, or one-hot encode the features"
                ) from exc
        num = torch.linalg.vector_norm(out - out_tilde, dim=1)
        diff = xi if denominator == "noise" else x_flat.detach() - x_tilde.flatten(1)
        den = torch.linalg.vector_norm(diff.flatten(1), dim=1)
        ok = den > 0
        n_degenerate += int((~ok).sum())
        r = torch.where(ok, num / den.masked_fill(~ok, 1.0), torch.zeros_like(num))
        total = total + (r.sum() if reduction == "sum" else r.mean())
        ratios.append(r.detach())
        xs.append(x_tilde)
        outs.append(out_tilde)
    return LipschitzTerms(total / len(noise), torch.stack(ratios), xs, outs, n_degenerate)


def lipschitz_loss(
    model: nn.Module,
    x: torch.Tensor,
    noise: Sequence[torch.Tensor],
    *,
    reduction: str = "sum",
    bounds: tuple[Any, Any] | None = None,
    denominator: str = "perturbed_diff",
) -> torch.Tensor:
    """The JiT loss of one batch with given noise (see :func:`lipschitz_terms`)."""
    return lipschitz_terms(
        model, x, noise, reduction=reduction, bounds=bounds, denominator=denominator
    ).loss

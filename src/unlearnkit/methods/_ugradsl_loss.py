"""Generalised label-smoothing loss and self-adaptive smoothing rates of UGradSL.

The loss is the soft-target cross-entropy of Wei et al.'s generalised label smoothing (the form
of UCSC-REAL/negative-label-smoothing ``loss.py``), used with a negative rate by UGradSL.

>>> import torch
>>> gls_targets(torch.tensor([1]), -0.5, 4)
tensor([[-0.1250,  1.3750, -0.1250, -0.1250]])
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "ADAPTIVE_DIRECTIONS",
    "REDUCTIONS",
    "AdaptiveDirection",
    "adaptive_alpha",
    "gls_loss",
    "gls_targets",
]

ADAPTIVE_DIRECTIONS = ("dense_more_negative", "dense_less_negative")
AdaptiveDirection = Literal["dense_more_negative", "dense_less_negative"]
REDUCTIONS = ("mean", "sum")


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
    logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float | torch.Tensor,
    *,
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """Soft-target cross-entropy with GLS targets (any sign of ``alpha``), batch mean or sum.

    Per sample, ``l = -sum_k y_k^{GLS,alpha} log p_k = (1 - alpha) CE_y + alpha mean_k(-log p_k)``;
    its gradient with respect to the logits is ``softmax(z) - y^{GLS,alpha}``. With
    ``alpha = 0`` this is ``F.cross_entropy``.

    Args:
        logits: ``(N, K)`` logits.
        labels: ``(N,)`` integer labels.
        alpha: scalar or ``(N,)`` smoothing rates (a tensor rate is treated as a constant).
        reduction: ``"mean"`` over the batch (as the reference ``loss_gls`` does) or ``"sum"``.

    Raises:
        ValueError: an unknown ``reduction``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.detach().to(logits.device)
    targets = gls_targets(labels, alpha, logits.shape[-1], dtype=logits.dtype)
    per_sample = -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


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

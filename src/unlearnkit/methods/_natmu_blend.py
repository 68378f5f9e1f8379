"""NatMU's pixel side: the tent/V masks and the forget/retain blending with its quantisation.

Pure functions, no training; re-exported by :mod:`unlearnkit.methods.natmu`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ConfigError, DataError

MAX_HYBRIDS = 4
VECTOR_MASK_RULES = ("auto", "image", "index_perm")
QUANTIZE_MODES = ("truncate", "round", "none")

# Step 4: masks


def tent_profiles(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tent ``T_L`` and V ``V_L`` profiles of an axis of length ``L``.

    ``b = ceil(L/2)``, ``T_L(r) = min(r, L-1-r)/b``, ``V_L(r) = max T_L - T_L(r)``. For even
    ``L`` this is exactly the reference loop (peak ``(b-1)/b`` at the two centre rows).
    """
    if length < 1:
        raise ConfigError(f"mask axes need length >= 1, got {length}")
    b = -(-length // 2)
    r = torch.arange(length, dtype=torch.float64)
    t = torch.minimum(r, (length - 1) - r) / b
    v = t.max() - t
    return t.float(), v.float()


def check_n_hybrids(n_hybrids: int) -> None:
    if not 1 <= int(n_hybrids) <= MAX_HYBRIDS:
        raise ConfigError(f"n_hybrids must lie in 1..{MAX_HYBRIDS}, got {n_hybrids}")


def natmu_masks(height: int, width: int, delta: float = 0.0, n_hybrids: int = 4) -> torch.Tensor:
    """The forget-weight masks ``M_k = clip(G_k + delta, 0, 1)`` of an ``H x W`` image.

    ``G_1 = T_H`` over rows, ``G_2 = T_W`` over columns, ``G_3 = V_H`` over rows,
    ``G_4 = V_W`` over columns; the first ``n_hybrids`` are returned.

    Returns:
        A float32 tensor of shape ``(n_hybrids, H, W)``; the retain weight is ``1 - M_k``.

    Example:
        >>> natmu_masks(32, 32)[0, :, 0][[0, 15, 16, 31]].tolist()
        [0.0, 0.9375, 0.9375, 0.0]
    """
    check_n_hybrids(n_hybrids)
    t_h, v_h = tent_profiles(height)
    t_w, v_w = tent_profiles(width)
    ones = torch.ones(height, width)
    base = [
        t_h[:, None] * ones,
        t_w[None, :] * ones,
        v_h[:, None] * ones,
        v_w[None, :] * ones,
    ]
    return (torch.stack(base[:n_hybrids]) + delta).clamp(0.0, 1.0)


def vector_masks(
    dim: int, delta: float = 0.0, n_hybrids: int = 4, *, permutation: torch.Tensor | None = None
) -> torch.Tensor:
    """Masks for ``D``-dimensional vectors [lib]: ``t(i), t(pi(i)), v(i), v(pi(i))``.

    ``t = T_D`` and ``v = V_D`` over the feature index; ``pi`` is a fixed permutation (identity
    when ``None``). ``G_1``/``G_3`` and ``G_2``/``G_4`` are complementary, so every feature gets
    forget weight ``>= max T / 2`` in at least one of the first three hybrids.

    Returns:
        A float32 tensor of shape ``(n_hybrids, D)``.
    """
    check_n_hybrids(n_hybrids)
    t, v = tent_profiles(dim)
    pi = torch.arange(dim) if permutation is None else torch.as_tensor(permutation).long()
    if sorted(pi.tolist()) != list(range(dim)):
        raise ConfigError(f"permutation must be a permutation of 0..{dim - 1}")
    base = [t, t[pi], v, v[pi]]
    return (torch.stack(base[:n_hybrids]) + delta).clamp(0.0, 1.0)


def hybrid_masks(
    sample_shape: Sequence[int],
    delta: float,
    n_hybrids: int,
    *,
    rule: str = "auto",
    image_shape: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, str]:
    """Masks shaped like one model input, and the rule that made them (``image``/``index_perm``).

    ``auto`` uses image masks for ``(C, H, W)`` inputs, and for flattened inputs when
    ``image_shape`` has as many values (reshaping, identical across channels); otherwise the
    vector rule with a permutation drawn once from ``generator``. ``image`` requires an image
    layout; ``index_perm`` always uses the vector rule on the flattened input.

    Returns:
        ``(masks, rule_used)`` with ``masks`` of shape ``(n_hybrids, *sample_shape)``.
    """
    if rule not in VECTOR_MASK_RULES:
        raise ConfigError(f"vector_mask_rule must be one of {VECTOR_MASK_RULES}, got {rule!r}")
    shape = tuple(int(s) for s in sample_shape)
    dim = math.prod(shape)
    if rule in ("auto", "image"):
        chw: tuple[int, ...] | None = None
        if len(shape) == 3:
            chw = shape
        elif image_shape is not None and math.prod(image_shape) == dim:
            chw = tuple(int(s) for s in image_shape)
        if chw is not None:
            c, h, w = chw
            m = natmu_masks(h, w, delta, n_hybrids)[:, None].expand(n_hybrids, c, h, w)
            return m.reshape(n_hybrids, *shape).contiguous(), "image"
        if rule == "image":
            raise ConfigError(
                f"vector_mask_rule='image' needs (C, H, W) inputs or ctx.image_shape matching the "
                f"{dim} input values (inputs have shape {shape}); pass image_shape= to the "
                "dataset or use vector_mask_rule='index_perm'"
            )
    perm = torch.randperm(dim, generator=generator)
    m = vector_masks(dim, delta, n_hybrids, permutation=perm)
    return m.reshape(n_hybrids, *shape), "index_perm"


# ---------------------------------------------------------------------------------------------
# Step 5: hybrids


def quantize_mode(value: str | bool) -> str:
    """Normalise a ``quantize`` setting to one of :data:`QUANTIZE_MODES`.

    ``True`` means ``"round"`` and ``False`` means ``"none"`` (the meanings the boolean had before
    truncation became the default), so older configs reproduce their hybrids; the strings
    ``"true"``/``"false"`` (command-line overrides) count as booleans.
    """
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if isinstance(value, bool):
        return "round" if value else "none"
    if value not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {QUANTIZE_MODES}, got {value!r}")
    return value


def blend_hybrids(
    x_forget: torch.Tensor,
    x_retain: torch.Tensor,
    partners: torch.Tensor,
    masks: torch.Tensor,
    *,
    normalization: Any = None,
    quantize: str | bool = "truncate",
) -> torch.Tensor:
    """``x~_{j,k} = M_k * x_f[j] + (1 - M_k) * x_r[partners[j, k]]``, sample-major.

    When the raw data are integers (``normalization.quantized``) each hybrid is put back on the
    raw integer grid, as the reference stores its hybrids as uint8 images:

    - ``"truncate"`` (default): the blend is computed on the raw values in float32 (retain term
      plus forget term), clipped to the raw range and rounded *down*, which is what the
      reference's ``astype(uint8)`` conversion does;
    - ``"round"``: the blend is computed in model-input space, mapped to raw values and rounded
      to the nearest integer (a convex blend commutes with the affine normalisation, so only
      the rounding differs from ``"truncate"``);
    - ``"none"``: the exact blend in model-input space, off the integer grid.

    Without a quantized ``normalization`` every mode gives the exact blend. ``True``/``False``
    are accepted for ``"round"``/``"none"``.

    Returns:
        ``(n_f * n, *sample_shape)`` hybrids in model-input space; their labels are
        ``retain_labels[partners]``.
    """
    mode = quantize_mode(quantize)
    n_f, n = partners.shape
    shape = tuple(x_forget.shape[1:])
    if tuple(masks.shape) != (n, *shape):
        raise ConfigError(f"masks must have shape {(n, *shape)}, got {tuple(masks.shape)}")
    if tuple(x_retain.shape[1:]) != shape:
        raise DataError(
            f"forget and retain inputs differ in shape ({shape} vs {tuple(x_retain.shape[1:])})"
        )
    quantized = normalization is not None and getattr(normalization, "quantized", False)
    xr = x_retain[partners.reshape(-1).to(x_retain.device)].to(x_forget.device)
    if quantized and mode == "truncate":
        # Raw integer images, float32 arithmetic in the reference's order, then round down.
        m = masks.to(device=x_forget.device, dtype=torch.float32).unsqueeze(0)
        raw_f = normalization.to_raw(x_forget.float(), round_=True).unsqueeze(1)
        raw_r = normalization.to_raw(xr.float(), round_=True).reshape(n_f, n, *shape)
        lo, hi = normalization.raw_range
        raw = (raw_r * (1 - m) + raw_f * m).clamp(lo, hi).floor()
        out = normalization.to_model(raw.reshape(n_f * n, *shape))
        return out.to(x_forget.dtype)
    m = masks.to(device=x_forget.device, dtype=x_forget.dtype).unsqueeze(0)
    xr = xr.reshape(n_f, n, *shape)
    out = (m * x_forget.unsqueeze(1) + (1 - m) * xr).reshape(n_f * n, *shape)
    if quantized and mode == "round":
        out = normalization.to_model(normalization.to_raw(out, round_=True)).to(x_forget.dtype)
    return out

"""The divergence guard's pieces: state copies, and the probe that tells a usable state.

A state a run may roll back to must give finite outputs (every value at most
:data:`OUTPUT_LIMIT` in magnitude) on a fixed probe batch of the task's training inputs; the run
context (:class:`unlearnkit.methods.RunContext`) keeps the last such state and the input model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["OUTPUT_LIMIT", "outputs_finite", "probe_inputs"]


def _copy_state(model: nn.Module, into: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy ``model``'s state into the buffers of ``into`` (re-allocated where shapes differ)."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            buf = into.get(name)
            if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
                into[name] = t.detach().clone()
            else:
                buf.copy_(t)
    return into


def _load_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, t in model.state_dict().items():
            saved = state.get(name)
            if saved is not None and saved.shape == t.shape:
                t.copy_(saved)


# Outputs count as finite below this magnitude: a state whose logits sit near the float32
# limit (3.4e38) on the probe overflows on other inputs, so keep eight orders of headroom.
OUTPUT_LIMIT = 1e30


def _all_finite(out: Any) -> bool:
    if isinstance(out, torch.Tensor):
        return not out.is_floating_point() or bool((out.abs() <= OUTPUT_LIMIT).all())
    if isinstance(out, (tuple, list)):
        return all(_all_finite(o) for o in out)
    if isinstance(out, dict):
        return all(_all_finite(o) for o in out.values())
    return True


def outputs_finite(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``model(x)`` is finite, with every value at most :data:`OUTPUT_LIMIT` in
    magnitude; computed in eval mode without gradients (BatchNorm running statistics
    untouched), every module's train/eval mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return _all_finite(model(x))
    finally:
        for m, mode in modes:
            m.training = mode


def probe_inputs(task: Any, device: torch.device | str | None = None, n: int = 64):
    """The fixed probe batch of a run: up to ``n`` training inputs, evenly spaced over the
    training set (over the forget set for a forget-only request), on ``device``.

    A rolled-back state must give finite outputs on it. Returns ``None`` for a task without
    training data.
    """
    bundle = getattr(task, "bundle", None)
    x = getattr(getattr(bundle, "train", None), "x", None)
    if x is None or len(x) == 0:
        return None
    if getattr(task, "retain_available", True):
        pool = np.arange(len(x))
    else:
        pool = np.asarray(task.forget_idx)
    if len(pool) == 0:
        return None
    pick = np.unique(np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(np.int64))
    return x[torch.as_tensor(pool[pick])].to(device)

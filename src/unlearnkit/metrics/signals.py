"""Per-sample signals of one model on one split, computed once and read by every metric.

:class:`SplitSignals` holds the logits and labels of a split and derives, lazily and in float64,
the signals (``conf``, ``corr``, ``loss``, ``entropy``, ``m_entropy``,
``prob``, ``phi``). :func:`compute_signals` runs the one forward pass with evaluation hygiene
(eval mode, no grad, no shuffling, the model's mode restored afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from ..datasets._lazy import LazyImages

__all__ = ["SplitSignals", "compute_signals", "log_softmax64"]

_TINY = 1e-30


def log_softmax64(logits: np.ndarray) -> np.ndarray:
    """Return ``log_softmax`` of ``logits`` (n, K) computed in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass(eq=False)
class SplitSignals:
    """Logits and labels of one split under one model, with the derived per-sample signals.

    Args:
        logits: array (n, K) of raw model outputs, in the model's dtype (normally float32).
        labels: array (n,) of integer labels.

    The derived signals are computed on first access and cached; the arrays are never mutated.
    """

    logits: np.ndarray
    labels: np.ndarray
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.logits = np.asarray(self.logits)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.logits.ndim != 2 or self.labels.shape != (self.logits.shape[0],):
            raise ValueError(
                "logits must be (n, K) and labels (n,); "
                f"got {self.logits.shape} and {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def _get(self, key: str, fn):  # noqa: ANN001 - tiny memo helper
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def log_prob(self) -> np.ndarray:
        """float64 log-probabilities (n, K)."""
        return self._get("log_prob", lambda: log_softmax64(self.logits))

    @property
    def prob(self) -> np.ndarray:
        """float64 probabilities (n, K)."""
        return self._get("prob", lambda: np.exp(self.log_prob))

    @property
    def conf(self) -> np.ndarray:
        """Probability of the true label, ``p_y``."""
        return self._get("conf", lambda: self.prob[np.arange(len(self)), self.labels])

    @property
    def pred(self) -> np.ndarray:
        """Arg-max prediction (ties as ``torch.argmax``: the first maximum)."""
        return self._get("pred", lambda: np.argmax(self.logits, axis=1))

    @property
    def corr(self) -> np.ndarray:
        """1.0 where the arg-max prediction equals the label, else 0.0."""
        return self._get("corr", lambda: (self.pred == self.labels).astype(np.float64))

    @property
    def loss(self) -> np.ndarray:
        """Per-sample cross-entropy ``-ln p_y``."""
        return self._get("loss", lambda: -self.log_prob[np.arange(len(self)), self.labels])

    @property
    def entropy(self) -> np.ndarray:
        """Prediction entropy ``-sum_c p_c ln p_c`` (0 ln 0 = 0)."""

        def _ent() -> np.ndarray:
            p = self.prob
            return -np.sum(np.where(p > 0, p * self.log_prob, 0.0), axis=1)

        return self._get("entropy", _ent)

    @property
    def m_entropy(self) -> np.ndarray:
        """Song & Mittal modified entropy."""

        def _ment() -> np.ndarray:
            p = self.prob
            n = len(self)
            rows = np.arange(n)
            py = p[rows, self.labels]
            term_true = -(1.0 - py) * np.log(np.maximum(py, _TINY))
            others = -p * np.log(np.maximum(1.0 - p, _TINY))
            others[rows, self.labels] = 0.0
            return term_true + others.sum(axis=1)

        return self._get("m_entropy", _ment)

    def subset(self, idx: np.ndarray) -> SplitSignals:
        """Signals of the samples at positions ``idx`` (a new object)."""
        idx = np.asarray(idx)
        return SplitSignals(self.logits[idx], self.labels[idx])

    def feature(self, name: str) -> np.ndarray:
        """Return the attack feature ``name`` as a 2-D array (n, d)."""
        if name == "prob":
            return self.prob
        if name in ("conf", "corr", "loss", "entropy", "m_entropy"):
            return getattr(self, name)[:, None]
        raise ValueError(
            f"unknown signal {name!r}; use conf, corr, loss, entropy, m_entropy or prob"
        )


def compute_signals(
    model: nn.Module,
    x: torch.Tensor | LazyImages,
    y: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> SplitSignals:
    """Run ``model`` once over ``(x, y)`` with evaluation hygiene and return its signals.

    The model is put in eval mode under ``torch.no_grad()``, batches are taken in order with no
    shuffling and no dropped remainder, and the model's previous training mode is restored, even
    if the forward pass raises.

    Disk-backed inputs (the ``image_folder`` dataset) are streamed: each batch is decoded when
    it is needed, at most ``x.eval_batch_size`` rows at a time, so only the logits of the whole
    split are held; the heap's freed pages are handed back between batches (see
    :func:`~unlearnkit.datasets._lazy.release_freed_memory`).
    """
    import torch

    from ..data import BatchLoader
    from ..datasets._lazy import is_lazy, release_freed_memory

    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    lazy = is_lazy(x)
    if lazy:
        batch_size = min(batch_size, x.eval_batch_size)
    was_training = model.training
    model.eval()
    try:
        outs = []
        with torch.no_grad():
            for xb, _ in BatchLoader(x, None, batch_size, device=device):
                outs.append(model(xb).detach().to("cpu"))
                del xb
                if lazy:  # the batch's buffers are free: keep them from piling up
                    release_freed_memory()
        logits = torch.cat(outs).numpy() if outs else np.zeros((0, 0), dtype=np.float32)
    finally:
        model.train(was_training)
    return SplitSignals(logits, y.detach().cpu().numpy())

"""The dataset bundle: train/val/test tensors with the metadata methods and metrics need."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._lazy import LazyImages, take_rows

__all__ = ["DatasetBundle", "Normalization", "Split", "stratified_split", "tensor_digest"]


@dataclass(frozen=True)
class Normalization:
    """The map from raw inputs to model inputs.

    ``model_input = ((raw - lo) / (hi - lo) - mean) / std`` per channel (or per feature), where
    ``(lo, hi) = raw_range``. ``mean``/``std`` of ``None`` mean 0 and 1.

    Args:
        raw_range: the range of raw values, e.g. ``(0, 255)`` or ``(0, 16)``.
        mean: per-channel mean on the [0, 1] scale, or ``None``.
        std: per-channel std on the [0, 1] scale, or ``None``.
        quantized: whether raw values are integers.
    """

    raw_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    quantized: bool = False

    def _affine(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = [1] * x.dim()
        if x.dim() >= 2:
            shape[1] = -1  # channels (images) or features (vectors)
        mean = torch.tensor(
            self.mean if self.mean is not None else (0.0,), dtype=x.dtype, device=x.device
        )
        std = torch.tensor(
            self.std if self.std is not None else (1.0,), dtype=x.dtype, device=x.device
        )
        if mean.numel() > 1 and x.dim() >= 2:
            mean, std = mean.view(shape), std.view(shape)
        return mean, std

    def to_model(self, raw: torch.Tensor) -> torch.Tensor:
        """Map raw inputs to model inputs."""
        lo, hi = self.raw_range
        unit = (raw.to(torch.float32) - lo) / (hi - lo)
        mean, std = self._affine(unit)
        return (unit - mean) / std

    def to_raw(self, x: torch.Tensor, *, round_: bool | None = None) -> torch.Tensor:
        """Map model inputs back to raw values (rounded when the data are quantized)."""
        lo, hi = self.raw_range
        mean, std = self._affine(x)
        raw = (x * std + mean) * (hi - lo) + lo
        if self.quantized if round_ is None else round_:
            raw = torch.round(raw).clamp(lo, hi)
        return raw

    def model_range(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the (lo, hi) of valid model inputs, broadcastable against ``like``."""
        lo_raw = torch.full_like(like[:1], self.raw_range[0])
        hi_raw = torch.full_like(like[:1], self.raw_range[1])
        return self.to_model(lo_raw), self.to_model(hi_raw)


@dataclass
class Split:
    """One split of a dataset: model-ready inputs ``x`` and integer labels ``y``.

    ``x`` is float32, or int64 for integer (categorical) inputs kept as they are by
    ``from_arrays(..., keep_dtype=True)``; methods that perturb inputs refuse those.

    ``x`` may also be disk-backed (:class:`~unlearnkit.datasets._lazy.LazyImages`, from the
    ``image_folder`` loader): indexing it decodes only the rows asked for, and :meth:`subset`
    selects rows without reading any file.

    ``fine`` optionally holds each sample's *fine* label when ``y`` is a coarser label space
    (e.g. CIFAR-100's 100 classes under its 20 super-classes): the ``subclass`` scenario forgets
    one fine class while the model keeps predicting super-classes.
    """

    x: torch.Tensor | LazyImages
    y: torch.Tensor
    fine: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"inputs and labels differ in length ({self.x.shape[0]} vs {self.y.shape[0]})"
            )
        if self.fine is not None and self.fine.shape != self.y.shape:
            raise DataError(
                f"fine labels must match the labels' shape {tuple(self.y.shape)}, "
                f"got {tuple(self.fine.shape)}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: np.ndarray | torch.Tensor) -> Split:
        idx_t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        fine = None if self.fine is None else self.fine[idx_t]
        return Split(take_rows(self.x, idx_t), self.y[idx_t], fine)

    @property
    def lazy(self) -> bool:
        """Whether the inputs are read from disk on demand."""
        return isinstance(self.x, LazyImages)


def tensor_digest(*tensors: torch.Tensor | np.ndarray | LazyImages, extra: Any = None) -> str:
    """Return a short, stable content hash of arrays (and an optional JSON-able extra).

    Disk-backed inputs contribute :meth:`LazyImages.digest` (file names with sizes and
    modification times, or their streamed bytes); no image is decoded.
    """
    h = hashlib.sha256()
    for t in tensors:
        if isinstance(t, LazyImages):
            h.update(b"LazyImages")
            h.update(t.digest())
            continue
        a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.reshape(-1).view(np.uint8))  # the array's own bytes, without a copy
    if extra is not None:
        h.update(repr(extra).encode())
    return h.hexdigest()[:16]


@dataclass
class DatasetBundle:
    """Everything a benchmark needs to know about one dataset.

    Attributes:
        name: dataset name (``"digits"``, ``"synthetic"``, or a user's).
        train, val, test: the splits; ``val`` may be ``None``.
        num_classes: K.
        input_shape: shape of one model input, e.g. ``(1, 8, 8)`` or ``(64,)``.
        image_shape: ``(C, H, W)`` when inputs are (possibly flattened) images, else ``None``.
        normalization: raw-to-model map, or ``None`` when raw inputs are model inputs.
        split_info: how the splits were made (seed, fractions, sizes); stored with every result.
        augment: optional training-time augmentation ``fn(x, generator) -> x``.
        flip_invariant: whether horizontal flips preserve labels (LiRA query augmentation).
        class_names: names of the ``num_classes`` labels, if known.
        fine_names: names of the fine labels when the splits carry ``fine`` labels (their
            count is the number of fine classes), else ``None``.
        modality: ``"text"`` when inputs are token ids; ``None`` (the default) for images and
            feature vectors.
        vocab_size: number of token ids (inputs lie in ``0..vocab_size-1``) for text, else
            ``None``; the size of a model's embedding table.
        vocabulary: the token of each id (id 0 padding, id 1 unknown) when the bundle carries
            the vocabulary it was encoded with, so new text can be encoded the same way
            (:meth:`unlearnkit.datasets.text.Vocabulary.from_bundle`); part of the fingerprint.
    """

    name: str
    train: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    val: Split | None = None
    image_shape: tuple[int, int, int] | None = None
    normalization: Normalization | None = None
    split_info: dict[str, Any] = field(default_factory=dict)
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    flip_invariant: bool = False
    class_names: tuple[str, ...] | None = None
    fine_names: tuple[str, ...] | None = None
    modality: str | None = None
    vocab_size: int | None = None
    vocabulary: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        k = self.num_classes
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise DataError(f"{self.name}: num_classes must be an integer >= 2, got {k!r}")
        self.num_classes = int(k)
        self._check_vocabulary()
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            if split is None:
                continue
            if (split.fine is None) != (self.train.fine is None):
                raise DataError(
                    f"{self.name}: either every split carries fine labels or none does "
                    f"({split_name} differs from train)"
                )
            if tuple(split.x.shape[1:]) != tuple(self.input_shape):
                raise DataError(
                    f"{self.name}: {split_name} inputs have shape {tuple(split.x.shape[1:])}, "
                    f"expected {tuple(self.input_shape)}"
                )
            if len(split) and (int(split.y.min()) < 0 or int(split.y.max()) >= self.num_classes):
                raise DataError(
                    f"{self.name}: {split_name} labels must lie in [0, {self.num_classes}); "
                    f"found {int(split.y.min())}..{int(split.y.max())}"
                )
        self._fingerprint: str | None = None

    def _check_vocabulary(self) -> None:
        """Check ``modality``/``vocab_size``/``vocabulary`` and that token ids are in range."""
        if self.modality is not None and not isinstance(self.modality, str):
            raise DataError(
                f"{self.name}: modality must be a string or None, got {self.modality!r}"
            )
        if self.vocabulary is not None:
            self.vocabulary = tuple(self.vocabulary)
            if not all(isinstance(t, str) for t in self.vocabulary):
                raise DataError(f"{self.name}: vocabulary must hold strings (one token per id)")
            if self.vocab_size is None:
                self.vocab_size = len(self.vocabulary)
        v = self.vocab_size
        if v is None:
            return
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise DataError(f"{self.name}: vocab_size must be an integer >= 2, got {v!r}")
        self.vocab_size = int(v)
        if self.vocabulary is not None and len(self.vocabulary) != self.vocab_size:
            raise DataError(
                f"{self.name}: the vocabulary lists {len(self.vocabulary)} tokens but "
                f"vocab_size is {self.vocab_size}; pass one token per id"
            )
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            if split is None or not len(split):
                continue
            if split.x.is_floating_point():
                raise DataError(
                    f"{self.name}: {split_name} inputs are {split.x.dtype}, but a bundle with a "
                    f"vocab_size holds integer token ids; encode the text first"
                )
            lo, hi = int(split.x.min()), int(split.x.max())
            if lo < 0 or hi >= self.vocab_size:
                raise DataError(
                    f"{self.name}: {split_name} token ids span {lo}..{hi}, outside "
                    f"0..{self.vocab_size - 1}; encode with the bundle's vocabulary"
                )

    @property
    def fingerprint(self) -> str:
        """Content hash of the data and the split (part of every cache and result key)."""
        if self._fingerprint is None:
            parts = [self.train.x, self.train.y, self.test.x, self.test.y]
            if self.val is not None:
                parts += [self.val.x, self.val.y]
            if self.train.fine is not None:  # absent for most data: their hashes stay as they were
                parts += [s.fine for s in (self.train, self.val, self.test) if s is not None]
            extra: tuple[Any, ...] = (self.name, self.num_classes)
            if self.vocabulary is not None:  # absent for non-text data: their hashes stay
                extra += (self.vocabulary,)
            self._fingerprint = tensor_digest(*parts, extra=extra)
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (name, sizes, shapes, modality and vocabulary size, split
        provenance, fingerprint)."""
        return {
            "name": self.name,
            "n_train": len(self.train),
            "n_val": len(self.val) if self.val is not None else 0,
            "n_test": len(self.test),
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "modality": self.modality,
            "vocab_size": self.vocab_size,
            "split": dict(self.split_info),
            "fingerprint": self.fingerprint,
        }


def stratified_split(
    y: np.ndarray, fractions: dict[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Split indices of ``y`` into named parts with the given fractions, stratified by label.

    Within each class the indices are shuffled with ``seed`` and cut by rounding the cumulative
    fractions, so every part keeps the class proportions (up to one sample per class).
    """
    if not np.isclose(sum(fractions.values()), 1.0):
        raise DataError(f"split fractions must sum to 1, got {sum(fractions.values()):.3f}")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in fractions}
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        bounds = np.round(np.cumsum([0.0, *fractions.values()]) * len(idx)).astype(int)
        for k, lo, hi in zip(fractions, bounds[:-1], bounds[1:]):
            parts[k].append(idx[lo:hi])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}

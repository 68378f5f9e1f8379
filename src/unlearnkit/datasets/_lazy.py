"""Images read from disk on demand: the inputs of a disk-backed split, never all in memory.

A :class:`LazyImages` stands where a split's ``x`` tensor would: it knows its files, the shape
and dtype of one model input and how to decode them, and indexing it (an int, a slice, an index
array or tensor, a boolean mask) decodes only the rows asked for into a float32 tensor.
:meth:`LazyImages.subset` selects rows without reading anything, which is how views of a split
are made. :func:`take_rows` and :func:`concat_rows` do the same for tensors and lazy inputs
alike, so code that builds views works on either.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from ._bundle import Normalization

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageSource",
    "LazyImages",
    "concat_rows",
    "is_lazy",
    "read_image",
    "take_rows",
]

#: File endings read as images (compared in lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")

_HASH_CHUNK = 1 << 20
_EVAL_BYTES = 64 * 2**20  # float32 inputs one evaluation batch may take, by default


def read_image(path: str, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """Decode one image file into an ``(H, W, C)`` uint8 array.

    ``mode`` is ``"L"`` (one channel) or ``"RGB"``; other modes are converted (16-bit
    grayscale is scaled to 8 bits). ``size`` ``(H, W)`` resizes the image (bilinear), ``None``
    keeps it as it is.

    Raises:
        DataError: the file is missing or is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode == "I" or im.mode.startswith("I;16"):  # 16-bit grayscale
                wide = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8))
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        raise DataError(f"cannot read image {path} ({detail}); replace or remove the file") from exc
    return arr[..., None] if arr.ndim == 2 else arr


@dataclass(frozen=True)
class ImageSource:
    """What every row of a disk-backed split shares: where the files lie and how to decode them.

    Args:
        root: the directory the file names are relative to.
        channels: 1 (read as grayscale) or 3 (read as RGB).
        height, width: the size of every image.
        resize: resize images to ``(height, width)``; when false, an image of another size is
            an error naming it.
        normalization: the raw-to-model map of the decoded uint8 pixels.
        num_workers: loader worker processes (``None``: automatic, see
            :class:`~unlearnkit.data.BatchLoader`).
        eval_batch_size: rows per batch of evaluation passes (``None``: as many as fit in
            64 MiB of float32 inputs, at most 1024).
        hash_mode: ``"stat"`` (fingerprint of names, sizes and modification times) or
            ``"content"`` (of names and the bytes of every file, streamed).
    """

    root: str
    channels: int
    height: int
    width: int
    resize: bool
    normalization: Normalization
    num_workers: int | None = None
    eval_batch_size: int | None = None
    hash_mode: str = "stat"

    @property
    def mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"

    def key(self) -> tuple[Any, ...]:
        """What the decoded values depend on besides the files (part of the fingerprint)."""
        n = self.normalization
        return (self.channels, self.height, self.width, self.resize, n.raw_range, n.mean, n.std)


class LazyImages:
    """Disk-backed images in place of an ``(N, C, H, W)`` float32 input tensor.

    It supports ``len()``, ``.shape``, ``.dtype``, ``.device``, ``dim()``,
    ``is_floating_point()`` and indexing by rows (which decodes those rows only);
    :meth:`subset` and :meth:`concat` select rows without reading. Training and evaluation
    loaders read it in batches (:class:`~unlearnkit.data.BatchLoader`).

    Args:
        source: what the rows share (:class:`ImageSource`).
        files: each row's file name, relative to ``source.root``.
        sizes, mtimes: each file's size in bytes and modification time in nanoseconds (the
            ``"stat"`` fingerprint).
    """

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(
        self,
        source: ImageSource,
        files: Sequence[str] | np.ndarray,
        sizes: np.ndarray,
        mtimes: np.ndarray,
    ) -> None:
        self.source = source
        self.files = np.asarray(files, dtype=object)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.mtimes = np.asarray(mtimes, dtype=np.int64)
        if not self.files.ndim == 1 or not len(self.files) == len(self.sizes) == len(self.mtimes):
            raise ValueError("files, sizes and mtimes must be 1-D and of one length")

    @classmethod
    def from_files(cls, source: ImageSource, files: Sequence[str]) -> LazyImages:
        """Rows for ``files`` (relative to ``source.root``), statted now (nothing is read).

        Raises:
            DataError: a file is missing.
        """
        sizes = np.empty(len(files), dtype=np.int64)
        mtimes = np.empty(len(files), dtype=np.int64)
        for i, name in enumerate(files):
            try:
                st = os.stat(os.path.join(source.root, name))
            except OSError as exc:
                raise DataError(
                    f"image {os.path.join(source.root, name)} is listed but cannot be found "
                    f"({exc.strerror}); restore it or remove it from the listing"
                ) from exc
            sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
        return cls(source, list(files), sizes, mtimes)

    # --- the tensor-like surface -------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.files.shape[0])

    @property
    def shape(self) -> torch.Size:
        s = self.source
        return torch.Size((len(self), s.channels, s.height, s.width))

    @property
    def ndim(self) -> int:
        return 4

    def dim(self) -> int:
        return 4

    def is_floating_point(self) -> bool:
        return True

    @property
    def num_workers(self) -> int | None:
        return self.source.num_workers

    @property
    def eval_batch_size(self) -> int:
        """Rows per batch of evaluation passes."""
        if self.source.eval_batch_size is not None:
            return int(self.source.eval_batch_size)
        row = 4 * self.source.channels * self.source.height * self.source.width
        return int(min(1024, max(1, _EVAL_BYTES // row)))

    def __repr__(self) -> str:
        c, h, w = self.shape[1:]
        return f"LazyImages({len(self)} images of {c}x{h}x{w} under {self.source.root!r})"

    def __getitem__(self, index: Any) -> torch.Tensor:
        """Decode the rows at ``index`` (an int gives one ``(C, H, W)`` image)."""
        pos = self._positions(index)
        if isinstance(pos, int):
            return self._decode(np.asarray([pos]))[0]
        return self._decode(pos)

    def _positions(self, index: Any) -> np.ndarray | int:
        n = len(self)
        if isinstance(index, tuple):
            raise TypeError("disk-backed images are indexed by rows only (one index, no tuple)")
        if isinstance(index, slice):
            return np.arange(n)[index]
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        if isinstance(index, (bool, np.bool_)):
            raise TypeError("index disk-backed images with integers, a slice or a mask")
        a = np.asarray(index)
        if a.dtype == np.bool_:
            if a.shape != (n,):
                raise IndexError(f"a boolean mask of shape {a.shape} for {n} rows")
            return np.flatnonzero(a)
        if a.dtype.kind not in "iu" or a.ndim > 1:
            raise IndexError(f"rows must be integers (a scalar or 1-D), got {a.dtype} {a.shape}")
        a = a.astype(np.int64)
        a = np.where(a < 0, a + n, a)
        if a.size and (a.min() < 0 or a.max() >= n):
            raise IndexError(f"row index out of range for {n} images")
        return int(a) if a.ndim == 0 else a

    def _decode(self, pos: np.ndarray) -> torch.Tensor:
        s = self.source
        raw = np.empty((len(pos), s.height, s.width, s.channels), dtype=np.uint8)
        size = (s.height, s.width) if s.resize else None
        for j, p in enumerate(pos):
            path = os.path.join(s.root, self.files[p])
            arr = read_image(path, s.mode, size)
            if arr.shape != raw.shape[1:]:
                raise DataError(
                    f"image {path} is {arr.shape[1]}x{arr.shape[0]}, the others "
                    f"{s.width}x{s.height}; pass size=({s.height}, {s.width}) to resize them all"
                )
            raw[j] = arr
        chw = torch.from_numpy(np.ascontiguousarray(raw.transpose(0, 3, 1, 2)))
        return s.normalization.to_model(chw).contiguous()

    # --- selecting rows without reading ------------------------------------------------------

    def subset(self, index: Any) -> LazyImages:
        """The rows at ``index`` (positions, a slice or a mask), still on disk."""
        pos = self._positions(index)
        pos = np.asarray([pos]) if isinstance(pos, int) else pos
        return LazyImages(self.source, self.files[pos], self.sizes[pos], self.mtimes[pos])

    @staticmethod
    def concat(parts: Sequence[LazyImages]) -> LazyImages:
        """The rows of ``parts`` one after the other (all from one :class:`ImageSource`)."""
        if not parts or any(p.source != parts[0].source for p in parts):
            raise DataError(
                "only disk-backed inputs of one image folder (same size, channels and "
                "normalisation) can be joined"
            )
        return LazyImages(
            parts[0].source,
            np.concatenate([p.files for p in parts]),
            np.concatenate([p.sizes for p in parts]),
            np.concatenate([p.mtimes for p in parts]),
        )

    # --- fingerprint -------------------------------------------------------------------------

    def digest(self) -> bytes:
        """A content hash of the rows: their file names with sizes and modification times
        (``hash_mode="stat"``) or with their bytes, streamed (``"content"``), and the decoding
        settings. Nothing is decoded."""
        h = hashlib.sha256(repr(("lazy_images", *self.source.key())).encode())
        if self.source.hash_mode == "content":
            for name in self.files:
                h.update(f"{name}\0".encode())
                with open(os.path.join(self.source.root, name), "rb") as f:
                    while chunk := f.read(_HASH_CHUNK):
                        h.update(chunk)
        else:
            for name, size, mtime in zip(self.files, self.sizes, self.mtimes):
                h.update(f"{name}\0{size}\0{mtime}\n".encode())
        return h.digest()


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or ``None`` (another C library or system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Give the pages the heap holds free back to the system (glibc's ``malloc_trim(0)``; a
    no-op elsewhere).

    A pass over disk-backed inputs allocates and frees batch-sized buffers (decoded images,
    activations) over and over. glibc raises its mmap threshold after the first large block is
    freed, so later ones come from the heap, whose freed pages stay resident and fragment as
    the batches go by: the process's memory creeps up with the number of batches. Called
    between the batches of an evaluation pass (each decodes up to ``eval_batch_size`` images,
    so the call is cheap next to a batch), it keeps the peak flat as the dataset grows
    (``benchmarks/image_folder_memory.py``). ``UNLEARNKIT_MALLOC_TRIM=0`` in the environment
    switches it off.
    """
    trim = _malloc_trim()
    if trim is not None and os.environ.get("UNLEARNKIT_MALLOC_TRIM", "1") != "0":
        trim(0)


def is_lazy(x: Any) -> bool:
    """Whether ``x`` is disk-backed (:class:`LazyImages`) rather than a tensor."""
    return isinstance(x, LazyImages)


def take_rows(x: torch.Tensor | LazyImages, index: Any) -> torch.Tensor | LazyImages:
    """The rows of ``x`` at ``index``: a tensor's are indexed, a disk-backed input's are
    selected without reading."""
    if isinstance(x, LazyImages):
        return x.subset(index)
    return x[index]


def concat_rows(parts: Sequence[torch.Tensor | LazyImages]) -> torch.Tensor | LazyImages:
    """``parts`` one after the other: ``torch.cat`` for tensors (on the first one's device),
    :meth:`LazyImages.concat` for disk-backed inputs.

    Raises:
        DataError: disk-backed and in-memory inputs mixed.
    """
    lazy = [isinstance(p, LazyImages) for p in parts]
    if all(lazy):
        return LazyImages.concat(parts)  # type: ignore[arg-type]
    if any(lazy):
        raise DataError("cannot join disk-backed and in-memory inputs; load both the same way")
    return torch.cat([p.to(parts[0].device) for p in parts])  # type: ignore[union-attr]

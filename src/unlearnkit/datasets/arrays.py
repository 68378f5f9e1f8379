"""A user's own data: NumPy/torch arrays, any torch ``Dataset``, or an ``.npz`` file."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._bundle import DatasetBundle, Normalization, Split

__all__ = ["as_inputs", "from_arrays", "from_npz", "from_torch"]


def as_inputs(a: Any, what: str, keep_dtype: bool = False) -> torch.Tensor:
    """Model inputs from an array or tensor: float32 (int64 for integer inputs when
    ``keep_dtype``), at least 2-D, finite; DataError naming ``what`` otherwise (shared by
    :func:`from_arrays` and the deletion-request readers)."""
    if isinstance(a, torch.Tensor):
        t = a.detach().cpu()
    else:
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise DataError(
                f"{what} must hold numbers (inputs must be numbers), got dtype {arr.dtype}; "
                "encode text or categories as integer codes or floats first"
            )
        t = torch.as_tensor(arr)
    if t.dim() < 2:
        raise DataError(
            f"{what} must have shape (n, ...) with at least 2 dimensions, got "
            f"{tuple(t.shape)}; reshape single features to (n, 1)"
        )
    if t.is_complex():
        raise DataError(f"{what} holds complex numbers; pass real-valued features")
    if keep_dtype and not t.is_floating_point():
        return t.to(torch.int64).contiguous()  # integer / categorical codes, kept exact
    t = t.to(torch.float32)
    bad = ~torch.isfinite(t).flatten(1).all(dim=1)
    if bad.any():
        raise DataError(
            f"{what}: row {int(bad.nonzero()[0])} of the inputs holds NaN or infinite values; "
            "clean the data first"
        )
    return t.contiguous()


def _as_y(a: Any, what: str) -> torch.Tensor:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if arr.ndim != 1:
        raise DataError(f"{what} must be a 1-D array of class indices, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{what} must hold integer class indices, found non-integer values")
    elif arr.dtype.kind not in "iub":
        raise DataError(f"{what} must hold integer class indices, got dtype {arr.dtype}")
    return torch.as_tensor(arr.astype(np.int64))


def from_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    x_val: Any = None,
    y_val: Any = None,
    num_classes: int | None = None,
    image_shape: tuple[int, int, int] | None = None,
    normalization: Normalization | None = None,
    name: str = "mydata",
    keep_dtype: bool = False,
) -> DatasetBundle:
    """Wrap a user's arrays (model-ready inputs and integer labels) as a dataset bundle.

    Args:
        x_train, y_train, x_test, y_test: inputs ``(n, ...)`` and labels ``(n,)``.
        x_val, y_val: optional validation split (the only data model selection may read).
        num_classes: K, an integer >= 2; inferred as ``max label + 1`` when omitted.
        image_shape: ``(C, H, W)`` when vector inputs are flattened images (NatMU masks).
        normalization: the raw-to-model map, if inputs are normalised.
        name: a name recorded with results.
        keep_dtype: keep integer (or boolean) inputs as ``int64`` instead of casting them to
            ``float32``: for categorical codes that the model looks up (e.g. in an
            ``nn.Embedding``). Methods that add continuous noise to inputs (JiT) refuse such
            data with a :class:`DataError`. Floating-point inputs are float32 either way.

    Raises:
        DataError: mismatched lengths, non-integer or out-of-range labels, NaN inputs,
            non-numeric inputs, empty splits, only one of ``x_val``/``y_val``, a
            ``num_classes`` that is not an integer >= 2 above every label, or a bad
            ``image_shape``.
    """
    if (x_val is None) != (y_val is None):
        raise DataError("give both x_val and y_val, or neither")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
    ):
        raise DataError(
            f"num_classes must be an integer, got {type(num_classes).__name__} {num_classes!r}; "
            "pass e.g. num_classes=3, or leave it out to infer it from the labels"
        )
    if not isinstance(keep_dtype, (bool, np.bool_)):
        raise DataError(f"keep_dtype must be True or False, got {keep_dtype!r}")
    splits = {"train": (x_train, y_train), "test": (x_test, y_test)}
    if x_val is not None:
        splits["val"] = (x_val, y_val)
    made: dict[str, Split] = {}
    for key, (xa, ya) in splits.items():
        x, y = as_inputs(xa, f"x_{key}", bool(keep_dtype)), _as_y(ya, f"y_{key}")
        if x.shape[0] != y.shape[0]:
            raise DataError(f"x_{key} has {x.shape[0]} rows but y_{key} has {y.shape[0]} labels")
        if x.shape[0] == 0:
            raise DataError(f"the {key} split is empty")
        made[key] = Split(x, y)
    shapes = {tuple(s.x.shape[1:]) for s in made.values()}
    if len(shapes) != 1:
        raise DataError(f"all splits must share one input shape, got {sorted(shapes)}")
    max_label = max(int(s.y.max()) for s in made.values())
    if num_classes is None:
        num_classes = max_label + 1
    if num_classes < 2:
        raise DataError(f"need at least 2 classes, got {num_classes}")
    if num_classes <= max_label:
        raise DataError(
            f"the labels go up to {max_label} but num_classes={num_classes}; labels must lie in "
            f"0..num_classes-1: raise num_classes or fix the labels"
        )
    input_shape = shapes.pop()
    if image_shape is not None:
        if isinstance(image_shape, (str, bytes)) or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
            for v in image_shape
        ):
            raise DataError(f"image_shape must be (C, H, W) positive integers, got {image_shape!r}")
        image_shape = tuple(int(v) for v in image_shape)  # type: ignore[assignment]
        if len(image_shape) != 3 or math.prod(image_shape) != math.prod(input_shape):
            raise DataError(
                f"image_shape {image_shape} must be (C, H, W) with as many values as an input "
                f"of shape {input_shape}"
            )
    elif len(input_shape) == 3:
        image_shape = input_shape  # type: ignore[assignment]
    return DatasetBundle(
        name=name,
        train=made["train"],
        val=made.get("val"),
        test=made["test"],
        num_classes=int(num_classes),
        input_shape=input_shape,
        image_shape=image_shape,
        normalization=normalization,
        split_info={"source": "arrays", "sizes": {k: len(v) for k, v in made.items()}},
    )


def _materialise(ds: Any, what: str, keep_dtype: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        n = len(ds)
    except TypeError as exc:
        raise DataError(f"{what} must be a map-style torch Dataset with __len__") from exc
    if n == 0:
        raise DataError(f"{what} is empty")
    xs, ys = [], []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(
                f"{what}[{i}] must be an (input, label) pair, got {type(item).__name__}"
            )
        x = torch.as_tensor(item[0])
        xs.append(x if keep_dtype and not x.is_floating_point() else x.to(torch.float32))
        ys.append(int(item[1]))
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


def from_torch(
    train_ds: Any,
    test_ds: Any,
    *,
    num_classes: int,
    val_ds: Any = None,
    image_shape: tuple[int, int, int] | None = None,
    normalization: Normalization | None = None,
    name: str = "torch_dataset",
    keep_dtype: bool = False,
) -> DatasetBundle:
    """Wrap map-style torch ``Dataset`` objects that yield ``(input, label)`` pairs.

    Items are read once, in index order, and kept in memory as tensors (the evaluation transform
    of the dataset is what gets stored). ``keep_dtype`` is as in :func:`from_arrays`.
    """
    keep = bool(keep_dtype)
    x_tr, y_tr = _materialise(train_ds, "train_ds", keep)
    x_te, y_te = _materialise(test_ds, "test_ds", keep)
    x_va = y_va = None
    if val_ds is not None:
        x_va, y_va = _materialise(val_ds, "val_ds", keep)
    return from_arrays(
        x_tr,
        y_tr,
        x_te,
        y_te,
        x_val=x_va,
        y_val=y_va,
        num_classes=num_classes,
        image_shape=image_shape,
        normalization=normalization,
        name=name,
        keep_dtype=keep_dtype,
    )


def from_npz(path: str | Path, *, name: str | None = None, **kwargs: Any) -> DatasetBundle:
    """Load a bundle from an ``.npz`` file holding ``x_train, y_train, x_test, y_test``
    (and optionally ``x_val, y_val``)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no such file: {p}; pass the path of an .npz file")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a data error
        raise DataError(f"cannot read {p} as .npz: {exc}") from exc
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(f"{p} lacks arrays {missing}; it needs x_train, y_train, x_test, y_test")
    return from_arrays(
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        x_val=arrays.get("x_val"),
        y_val=arrays.get("y_val"),
        name=name or p.stem,
        **kwargs,
    )

"""Forget tasks: which training samples to forget, validated, with a content-hash id.

>>> import unlearnkit as uk
>>> bundle = uk.datasets.load("digits")
>>> task = uk.forget_task(bundle, scenario="class", classes=[3])
>>> task.scenario, task.forget_classes
('class', (3,))
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checks import check_seed
from .data import DataView
from .datasets import DatasetBundle
from .datasets._bundle import tensor_digest
from .errors import DataError

__all__ = ["SCENARIOS", "ForgetTask", "forget_task", "read_indices"]

SCENARIOS = ("random", "class", "indices", "subclass")


@dataclass(frozen=True, eq=False)
class ForgetTask:
    """A forget request on a dataset bundle.

    Attributes:
        bundle: the dataset.
        scenario: ``"random"``, ``"class"``, ``"indices"`` or ``"subclass"``.
        forget_idx: sorted positions of the forget set in ``bundle.train``.
        retain_idx: the complement (positions of the retain set).
        forget_classes: the forgotten classes (``class`` scenario), else ``()``.
        forget_subclasses: the forgotten fine classes (``subclass`` scenario: fine labels of
            ``bundle``'s splits, inside the coarse label space the model predicts), else ``()``.
        params: the arguments that built the task (recorded with results).
        retain_available: ``False`` for a forget-only request (no retain data at all).
    """

    bundle: DatasetBundle
    scenario: str
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    forget_classes: tuple[int, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    retain_available: bool = True
    forget_subclasses: tuple[int, ...] = ()

    @property
    def id(self) -> str:
        """Content hash of (dataset fingerprint, scenario, forget indices)."""
        extra: tuple = (self.bundle.fingerprint, self.scenario, self.forget_classes)
        if self.forget_subclasses:
            extra += (self.forget_subclasses,)
        return tensor_digest(self.forget_idx, extra=extra)

    @property
    def n_forget(self) -> int:
        return int(len(self.forget_idx))

    def _train_view(self, name: str, idx: np.ndarray) -> DataView:
        part = self.bundle.train.subset(idx)  # disk-backed inputs stay on disk
        return DataView(
            name,
            part.x,
            part.y,
            indices=idx,
            augment=self.bundle.augment,
            normalization=self.bundle.normalization,
        )

    def _split_view(self, name: str, split: Any, mask: np.ndarray | None = None) -> DataView:
        if mask is not None:
            split = split.subset(np.flatnonzero(mask))  # disk-backed inputs stay on disk
        return DataView(name, split.x, split.y, normalization=self.bundle.normalization)

    @property
    def forget(self) -> DataView:
        """``D_f``."""
        return self._train_view("forget", self.forget_idx)

    @property
    def retain(self) -> DataView | None:
        """``D_r``, or ``None`` for a forget-only request."""
        if not self.retain_available:
            return None
        return self._train_view("retain", self.retain_idx)

    @property
    def train_full(self) -> DataView | None:
        """``D_tr`` as one set (``full_train`` access), ``None`` for a forget-only request."""
        if not self.retain_available:
            return None
        return self._train_view("train_full", np.arange(len(self.bundle.train)))

    @property
    def val(self) -> DataView | None:
        """``D_val`` (model selection only), or ``None``."""
        if self.bundle.val is None:
            return None
        return self._split_view("val", self.bundle.val)

    @property
    def _classwise(self) -> bool:
        """Whether the test set splits into forgotten and remaining parts."""
        return bool(self.forget_classes or self.forget_subclasses)

    def _test_mask(self, forgotten: bool) -> np.ndarray:
        test = self.bundle.test
        if self.forget_subclasses:
            labels, forgot = test.fine, self.forget_subclasses
        else:
            labels, forgot = test.y, self.forget_classes
        in_fgt = np.isin(labels.numpy(), np.asarray(forgot, dtype=np.int64))
        return in_fgt if forgotten else ~in_fgt

    @property
    def test(self) -> DataView:
        """``D_te^rem``: the test set without the forgotten classes or sub-classes (all of it
        for sample-wise scenarios)."""
        if not self._classwise:
            return self._split_view("test", self.bundle.test)
        return self._split_view("test", self.bundle.test, self._test_mask(False))

    @property
    def test_full(self) -> DataView:
        """``D_te`` including forgotten classes."""
        return self._split_view("test_full", self.bundle.test)

    @property
    def forget_test(self) -> DataView | None:
        """``D_te^fgt``: test samples of the forgotten classes (``class``) or fine classes
        (``subclass``), else ``None``."""
        if not self._classwise:
            return None
        return self._split_view("forget_test", self.bundle.test, self._test_mask(True))

    def forget_only(self) -> ForgetTask:
        """The same request with no retain data at all (what a zero-shot method gets)."""
        return replace(self, retain_available=False)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary recorded with every result."""
        return {
            "id": self.id,
            "scenario": self.scenario,
            "n_forget": self.n_forget,
            "n_retain": int(len(self.retain_idx)) if self.retain_available else 0,
            "forget_classes": list(self.forget_classes),
            "forget_subclasses": list(self.forget_subclasses),
            "params": self.params,
            "dataset": self.bundle.fingerprint,
        }


def _hardest(
    hardness: np.ndarray | Sequence[float], y: np.ndarray, k: int, stratified: bool, params: dict
) -> np.ndarray:
    """The ``k`` samples with the highest scores (per class in proportion when stratified)."""
    h = np.asarray(hardness, dtype=np.float64)
    if h.shape != y.shape:
        raise DataError(
            f"hardness must hold one score per training sample ({y.shape[0]}), got shape {h.shape}"
        )
    if not np.isfinite(h).all():
        raise DataError("hardness scores must be finite numbers")
    params["hard"] = True
    params["hardness_digest"] = tensor_digest(h)

    def top(idx: np.ndarray, m: int) -> np.ndarray:
        order = np.lexsort((idx, -h[idx]))  # highest score first, then by position
        return idx[order[:m]]

    if not stratified:
        return top(np.arange(len(y)), k)
    params["stratified"] = True
    n = len(y)
    picks = [top(np.flatnonzero(y == c), int(round(k * (y == c).sum() / n))) for c in np.unique(y)]
    forget = np.concatenate(picks)
    if forget.size == 0:
        raise DataError("stratified selection gave an empty forget set; raise the fraction")
    return forget


def read_indices(path: str | Path) -> list[int]:
    """Read forget indices from ``.npy``, ``.json`` (a list) or text (comma/space separated)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"indices file not found: {p}")
    try:
        if p.suffix == ".npy":
            values = np.load(p, allow_pickle=False).ravel().tolist()
        elif p.suffix == ".json":
            values = json.loads(p.read_text())
        else:
            text = p.read_text().replace(",", " ").split()
            values = [float(v) for v in text]
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read indices from {p}: {exc}") from exc
    if not isinstance(values, list):
        raise DataError(f"{p} must hold a flat list of integer indices")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DataError(f"{p} holds a non-integer index {v!r}; it must list whole numbers")
        if not math.isfinite(v) or float(v) != int(v):
            raise DataError(f"{p} holds the index {v!r}, not a whole number; fix the file")
        out.append(int(v))
    return out


def _check_indices(values: Sequence[int], n_train: int) -> np.ndarray:
    if isinstance(values, (bytes, dict)) or not isinstance(values, Iterable):
        raise DataError(
            f"indices must be a list of positions or a file path, got {type(values).__name__}"
        )
    items = list(values)
    arr = np.asarray([v.item() if isinstance(v, (np.generic, torch.Tensor)) else v for v in items])
    if arr.size == 0:
        raise DataError("the forget set is empty; give at least one index")
    if arr.ndim != 1:
        raise DataError(f"indices must be a flat list of positions, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            bad = arr[~np.isfinite(arr) | (arr != np.round(arr))][:5].tolist()
            raise DataError(f"forget indices must be whole numbers, got {bad}")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise DataError(f"forget indices must be integers, got {arr.dtype}")
    bad = arr[(arr < 0) | (arr >= n_train)]
    if bad.size:
        raise DataError(
            f"forget indices out of range [0, {n_train}): {bad[:5].tolist()}"
            + (" ..." if bad.size > 5 else "")
        )
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"duplicate forget indices: {uniq[counts > 1][:5].tolist()}")
    return uniq.astype(np.int64)


def _whole(value: Any, what: str) -> int:
    """``value`` as an ``int`` if it is a whole number (``3`` or ``3.0``; not ``1.5``, ``"3"``)."""
    if isinstance(value, (np.generic, torch.Tensor)) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DataError(f"{what} must be an integer, got {type(value).__name__} {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not math.isfinite(value) or float(value) != int(value):
        raise DataError(f"{what} must be a whole number, got {value!r}")
    return int(value)


def _whole_list(values: Any, what: str, example: str) -> list[int]:
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Iterable):
        raise DataError(f"{what} must be a list of integers, e.g. {example}, got {values!r}")
    out = [_whole(v, f"each entry of {what}") for v in values]
    if not out:
        raise DataError(f"{what} is empty; give one or more integers, e.g. {example}")
    return out


# which scenario reads which argument (an argument given to another scenario is a mistake)
_SCENARIO_ARGS = {
    "fraction": "random",
    "count": "random",
    "stratified": "random",
    "hardness": "random",
    "classes": "class",
    "indices": "indices",
    "subclasses": "subclass",
}


def check_task_args(scenario: Any, seed: Any = 0, **kwargs: Any) -> dict[str, Any]:
    """Validate ``forget_task`` arguments without a dataset (what a spec can check at load
    time); returns them normalised. Raises DataError like :func:`forget_task`."""
    args = dict.fromkeys(_SCENARIO_ARGS)
    args["stratified"] = False
    unknown = set(kwargs) - set(args)
    if unknown:
        raise DataError(f"unknown forget-task argument(s) {sorted(unknown)}")
    args.update(kwargs)
    return _check_task_args(scenario, args, seed)


def _check_task_args(scenario: Any, args: dict[str, Any], seed: Any) -> dict[str, Any]:
    """Validate forget_task's arguments (types, whole numbers, finiteness, ranges that do not
    depend on the data) and return them normalised: ints, floats, sorted unique classes.

    Raises:
        DataError: the first bad argument, in one line naming it and the fix.
    """
    if not isinstance(scenario, str) or scenario not in SCENARIOS:
        raise DataError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    check_seed(seed)
    for key, value in args.items():
        given = value is not None and not (key == "stratified" and value is False)
        if given and _SCENARIO_ARGS[key] != scenario:
            raise DataError(
                f"{key}= applies to scenario {_SCENARIO_ARGS[key]!r}, not {scenario!r}; pass "
                f"scenario={_SCENARIO_ARGS[key]!r} or drop {key}="
            )
    out = dict(args)
    if not isinstance(args["stratified"], (bool, np.bool_)):
        raise DataError(f"stratified must be True or False, got {args['stratified']!r}")
    out["stratified"] = bool(args["stratified"])
    fraction = args["fraction"]
    if fraction is not None:
        if isinstance(fraction, (np.generic, torch.Tensor)) and getattr(fraction, "ndim", 0) == 0:
            fraction = fraction.item()
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
            raise DataError(
                f"fraction must be a number in (0, 1), got {type(fraction).__name__} {fraction!r}"
            )
        if not (math.isfinite(fraction) and 0.0 < float(fraction) < 1.0):
            raise DataError(
                f"fraction must lie in (0, 1), got {fraction}; e.g. fraction=0.1 forgets 10 %"
            )
        out["fraction"] = float(fraction)
    if args["count"] is not None:
        out["count"] = _whole(args["count"], "count")
        if out["count"] < 1:
            raise DataError(
                f"count must be >= 1, got {out['count']}: the forget set would be empty"
            )
    if args["classes"] is not None:
        cls = _whole_list(args["classes"], "classes", "classes=[3]")
        out["classes"] = sorted(set(cls))
    if args["subclasses"] is not None:
        sub = _whole_list(args["subclasses"], "subclasses", "subclasses=[1]")
        out["subclasses"] = sorted(set(sub))
    return out


def forget_task(
    bundle: DatasetBundle,
    scenario: str = "random",
    *,
    fraction: float | None = None,
    count: int | None = None,
    stratified: bool = False,
    classes: Sequence[int] | None = None,
    indices: Sequence[int] | str | Path | None = None,
    subclasses: Sequence[int] | None = None,
    hardness: np.ndarray | Sequence[float] | None = None,
    seed: int = 0,
) -> ForgetTask:
    """Build and validate a forget task.

    Args:
        bundle: the dataset bundle.
        scenario: ``"random"`` (``fraction`` in (0, 1) or ``count``; ``stratified`` keeps the
            class mix), ``"class"`` (``classes``: one or more whole classes), ``"indices"``
            (``indices``: a list of positions in the training set, or a file path) or
            ``"subclass"`` (``subclasses``: one or more fine classes of a bundle whose splits
            carry fine labels, e.g. CIFAR-100 under its 20 super-classes; the model keeps
            predicting the coarse labels, and the test set splits by fine label).
        hardness: ``random`` only, the ``hard`` modifier (forget the hardest samples): one
            score per training sample (e.g. :func:`unlearnkit.memorisation.memorisation_scores`);
            the forget set is then the ``fraction``/``count`` samples with the highest scores
            (per class when ``stratified``; ties by position) instead of a random draw.
        seed: the split seed (``seed_split``); the forget set does not change with training seeds.

    Returns:
        The task, with ``task.id`` a content hash of the forget set.

    Raises:
        DataError: empty forget set, out-of-range or duplicate indices, the whole training set,
            a class that does not exist, a fraction outside (0, 1) or not a number, a count,
            class or index that is not a whole number, NaN or infinite values, an argument the
            scenario does not use (e.g. ``classes=`` with ``scenario="random"``), or a missing
            indices file.
        ConfigError: a seed that is not a non-negative integer.
    """
    if not isinstance(bundle, DatasetBundle):
        raise DataError(
            f"forget_task needs a dataset bundle (uk.datasets.load(...) or from_arrays(...)), "
            f"got {type(bundle).__name__}"
        )
    args = _check_task_args(
        scenario,
        {
            "fraction": fraction,
            "count": count,
            "stratified": stratified,
            "hardness": hardness,
            "classes": classes,
            "indices": indices,
            "subclasses": subclasses,
        },
        seed,
    )
    fraction, count, stratified = args["fraction"], args["count"], args["stratified"]
    seed = int(seed)
    n = len(bundle.train)
    y = bundle.train.y.numpy()
    params: dict[str, Any] = {"seed": seed}
    forget_classes: tuple[int, ...] = ()
    forget_subclasses: tuple[int, ...] = ()
    if scenario == "random":
        if (fraction is None) == (count is None):
            raise DataError("scenario 'random' needs exactly one of fraction= or count=")
        if fraction is not None:
            k = int(round(fraction * n))
            params["fraction"] = fraction
        else:
            k = count
            params["count"] = k
        if k < 1:
            raise DataError(f"the forget set would be empty ({k} of {n} samples)")
        if k >= n:
            raise DataError(f"cannot forget all {n} training samples; leave a retain set")
        rng = np.random.default_rng(seed)
        if hardness is not None:
            forget = _hardest(hardness, y, k, stratified, params)
        elif stratified:
            params["stratified"] = True
            picks = []
            for c in np.unique(y):
                idx = np.flatnonzero(y == c)
                picks.append(rng.choice(idx, size=int(round(k * len(idx) / n)), replace=False))
            forget = np.concatenate(picks)
            if forget.size == 0:
                raise DataError("stratified sampling gave an empty forget set; raise the fraction")
        else:
            forget = rng.choice(n, size=k, replace=False)
        forget = np.sort(forget.astype(np.int64))
    elif hardness is not None:
        raise DataError(
            f"hardness= (a hard forget set) applies to scenario 'random', not {scenario!r}"
        )
    elif scenario == "class":
        if classes is None:
            raise DataError("scenario 'class' needs classes=[...] (one or more class indices)")
        cls = args["classes"]
        missing = [c for c in cls if c < 0 or c >= bundle.num_classes or not (y == c).any()]
        if missing:
            raise DataError(
                f"class(es) {missing} do not exist in the training set "
                f"(classes are 0..{bundle.num_classes - 1})"
            )
        forget = np.flatnonzero(np.isin(y, cls)).astype(np.int64)
        if forget.size >= n:
            raise DataError("cannot forget every class; leave a retain set")
        forget_classes = tuple(cls)
        params["classes"] = list(cls)
    elif scenario == "indices":
        if indices is None:
            raise DataError("scenario 'indices' needs indices=[...] or indices='path/to/file'")
        if isinstance(indices, (str, Path)):
            params["indices_file"] = str(indices)
            indices = read_indices(indices)
        forget = _check_indices(indices, n)
        if forget.size >= n:
            raise DataError(f"cannot forget all {n} training samples; leave a retain set")
    elif scenario == "subclass":
        fine = bundle.train.fine
        if fine is None:
            raise DataError(
                f"scenario 'subclass' needs fine labels, which dataset {bundle.name!r} does not "
                "carry; use a bundle with fine labels (e.g. load('cifar100', labels='coarse') or "
                "load('synthetic', fine_per_class=2)) or scenario 'indices'"
            )
        if subclasses is None:
            raise DataError("scenario 'subclass' needs subclasses=[...] (fine class indices)")
        sub = args["subclasses"]
        f = fine.numpy()
        missing = [c for c in sub if not (f == c).any()]
        if missing:
            raise DataError(
                f"fine class(es) {missing} do not occur in the training set "
                f"(fine classes present: {int(f.min())}..{int(f.max())})"
            )
        forget = np.flatnonzero(np.isin(f, sub)).astype(np.int64)
        # a whole coarse class gone is the 'class' scenario, not a sub-class
        rest = np.delete(y, forget)
        whole = [int(c) for c in np.unique(y[forget]) if not (rest == c).any()]
        if whole:
            raise DataError(
                f"fine class(es) {sub} make up all of coarse class(es) {whole}; that is the "
                "'class' scenario (use scenario='class'); a sub-class must leave other "
                "members in its super-class"
            )
        forget_subclasses = tuple(sub)
        params["subclasses"] = list(sub)
    else:
        raise DataError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    retain = np.setdiff1d(np.arange(n, dtype=np.int64), forget, assume_unique=True)
    return ForgetTask(
        bundle, scenario, forget, retain, forget_classes, params, True, forget_subclasses
    )

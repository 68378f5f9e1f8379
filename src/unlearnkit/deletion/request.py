"""A deletion request on a user's own model: data in, unlearned model and evidence out.

:func:`forget` reads the training data the model saw and held-out data it never saw, resolves
the IDs to delete, splits the held-out data into a *calibration half* (the only held-out data
the hyperparameter search reads) and a *report half* (the final figures), calibrates the
method(s) against a target that needs no retrained model (:mod:`.calibrate`), runs the chosen
configuration once more on the input model and grades the result on the report half.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..api import run_unlearning
from ..checks import check_device, check_precision
from ..datasets import from_arrays
from ..datasets._bundle import stratified_split
from ..errors import ConfigError, DataError
from ..methods import get_method
from ..tasks import ForgetTask, forget_task
from . import calibrate as cal
from . import chain
from .ids import resolve_ids
from .inputs import LoadedData, read_data
from .model_io import save_model, sha256_ids

__all__ = ["ForgetResult", "forget", "judge"]

#: A held-out half smaller than this cannot say whether the forget set looks unseen.
MIN_HELD_OUT_HALF = 10


@dataclass
class ForgetResult:
    """The outcome of a deletion request.

    Attributes:
        model: the unlearned model (a copy; the input model is never modified).
        evidence: the JSON-able record (hashes, method, config, before/after figures, verdict).
        passed: whether every acceptance criterion holds on the report half.
        leaderboard: the calibration's per-method results.
    """

    model: nn.Module
    evidence: dict[str, Any]
    passed: bool
    leaderboard: Any = None
    figures: dict[str, Any] = field(default_factory=dict)

    def save(self, out_dir: str | Path, *, input_sha256: str | None = None) -> dict[str, Path]:
        """Write ``model.safetensors``, ``evidence.json``, ``report.md`` and ``report.html``."""
        from .report import write_reports

        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise DataError(f"--out {out} is a file, not a folder; give a folder path")
        out.mkdir(parents=True, exist_ok=True)
        model_path = out / "model.safetensors"
        self.evidence["output"] = {
            "file": model_path.name,
            "sha256": save_model(self.model, model_path),
        }
        if input_sha256 is not None:
            self.evidence["input"]["checkpoint_sha256"] = input_sha256
        ids_path = out / chain.IDS_FILE  # every ID deleted so far; its hash is in the evidence
        ids_path.write_text("".join(f"{i}\n" for i in self.figures.get("cumulative_ids", [])))
        ev_path = out / "evidence.json"
        ev_path.write_text(json.dumps(self.evidence, indent=1, default=_json_default) + "\n")
        paths = {"model": model_path, "evidence": ev_path}
        paths.update(write_reports(self, out))
        return paths


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _label_positions(train: LoadedData, classes: Sequence[Any]) -> list[int]:
    """``forget_classes`` (label names or indices) as class indices."""
    names = {n: i for i, n in enumerate(train.label_names)}
    out = []
    for c in classes:
        key = str(c)
        if key in names:
            out.append(names[key])
        elif isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < len(names):
            out.append(int(c))
        else:
            raise DataError(
                f"--forget-class {c!r} is not a label of the training data; its labels are "
                f"{', '.join(train.label_names[:10])}{' ...' if len(names) > 10 else ''}"
            )
    if len(set(out)) != len(out):
        raise DataError(f"--forget-class names a class twice: {list(classes)}")
    present = set(train.y.tolist())
    if set(out) >= present:
        raise DataError(
            "the request forgets every class of the training data; nothing would remain"
        )
    return sorted(out)


def _forget_positions(
    train: LoadedData, forget_ids: Any, ids: Sequence[Any] | None, zero_shot: bool = False
) -> np.ndarray:
    if isinstance(forget_ids, (str, bytes)):
        raise DataError("forget_ids must be a list of IDs or positions, not one string")
    if ids is not None:
        if len(ids) != len(train.y):
            raise DataError(
                f"ids= has {len(ids)} entries but the data has {len(train.y)} rows; give one ID "
                "per row"
            )
        train.ids = [str(i) for i in ids]
        train.id_source = "ids="
        return resolve_ids([str(i) for i in forget_ids], train.ids, allow_all=zero_shot)
    if train.kind in ("dataset", "arrays"):  # the API: positions in ``data``
        vals = list(forget_ids)
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in vals):
            raise DataError(
                "forget_ids are positions in data (integers) unless ids= gives one ID per row"
            )
        return resolve_ids([str(int(v)) for v in vals], train.ids, allow_all=zero_shot)
    return resolve_ids([str(i) for i in forget_ids], train.ids, allow_all=zero_shot)


def _output_width(model: nn.Module, x: torch.Tensor) -> int:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            out = model(x[:2].to(next(model.parameters()).device))
    except Exception as exc:  # noqa: BLE001 - any failure is the data not fitting the model
        dtype = str(x.dtype).replace("torch.", "")
        raise DataError(
            f"the model cannot read the data: {type(exc).__name__}: {' '.join(str(exc).split())} "
            f"(one input has shape {tuple(x.shape[1:])}, dtype {dtype})"
        ) from None
    finally:
        for m, mode in modes:
            m.training = mode
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise DataError("the model must return one (batch, classes) tensor of logits")
    return int(out.shape[1])


def build_task(
    model: nn.Module,
    train: LoadedData,
    held: LoadedData,
    *,
    positions: np.ndarray | None,
    classes: list[int] | None,
    seed: int,
    zero_shot: bool = False,
) -> ForgetTask:
    """The forget task: D_tr = ``train``, D_val = the calibration half, D_te = the report half."""
    k = _output_width(model, train.x)
    labels_max = int(max(train.y.max(), held.y.max()))
    if k <= labels_max:
        raise DataError(
            f"the model outputs {k} classes but the data has label index {labels_max}; the model "
            "and the data do not match"
        )
    y_held = held.y.numpy()
    try:
        halves = stratified_split(y_held, {"cal": 0.5, "report": 0.5}, seed)
    except DataError as exc:
        raise DataError(f"cannot split the held-out data in two: {exc}") from None
    for name, idx in halves.items():
        if len(idx) < MIN_HELD_OUT_HALF:
            raise DataError(
                f"the held-out data has {len(y_held)} rows; each half ({name}) needs at least "
                f"{MIN_HELD_OUT_HALF}: give at least {2 * MIN_HELD_OUT_HALF} held-out rows"
            )
    cal_idx, rep_idx = (torch.as_tensor(np.sort(halves[n])) for n in ("cal", "report"))
    bundle = from_arrays(
        train.x,
        train.y,
        held.x[rep_idx],
        held.y[rep_idx],
        x_val=held.x[cal_idx],
        y_val=held.y[cal_idx],
        num_classes=k,
        image_shape=train.image_shape,
        name=Path(train.source).name or "data",
        keep_dtype=not train.x.is_floating_point(),
    )
    if classes is not None:
        task = forget_task(bundle, "class", classes=classes)
        return task.forget_only() if zero_shot else task
    if zero_shot:  # a forget-only request: the methods see no retain data at all
        n = len(train.y)
        rest = np.setdiff1d(np.arange(n, dtype=np.int64), positions)
        params = {"indices": positions.tolist(), "zero_shot": True}
        return ForgetTask(
            bundle, "indices", np.asarray(positions, np.int64), rest, (), params, False
        )
    return forget_task(bundle, "indices", indices=positions.tolist())


@dataclass
class _Prepared:
    """A request's inputs, read and resolved (what :func:`forget` and :func:`judge` share)."""

    train: LoadedData
    held: LoadedData
    task: ForgetTask
    classes: list[int] | None
    forgotten_ids: list[str]
    prev: Any
    earlier: Any


def _prepare(
    original: nn.Module,
    data: Any,
    held_out: Any,
    forget_ids: Sequence[Any] | None,
    ids: Sequence[Any] | None,
    forget_classes: Sequence[Any] | None,
    zero_shot: bool,
    label_column: str,
    id_column: str,
    previous: str | Path | None,
    seed: int,
) -> _Prepared:
    if (forget_ids is None) == (forget_classes is None):
        raise ConfigError("give either forget_ids (rows to delete) or forget_classes, not both")
    train = read_data(data, label_column=label_column, id_column=id_column, what="--data")
    held = read_data(
        held_out, label_column=label_column, id_column=id_column, like=train, what="--held-out"
    )
    classes = positions = None
    if forget_classes is not None:
        classes = _label_positions(train, list(forget_classes))
        forgotten_ids: list[str] = []
    else:
        positions = _forget_positions(train, forget_ids, ids, zero_shot)
        forgotten_ids = [train.ids[i] for i in positions]
    prev = chain.load_previous(previous) if previous is not None else None
    earlier = None
    if prev is not None:
        if classes is not None:
            raise DataError("a class-level request cannot follow --previous (rows requests only)")
        again = sorted(set(forgotten_ids) & set(prev.ids))
        if again:
            raise DataError(
                f"{len(again)} of the IDs were already deleted by {prev.folder} (first: "
                f"{', '.join(again[:3])}); drop them from --forget-ids"
            )
        train, earlier = chain.without_rows(train, set(prev.ids))  # never trained on again
        positions = resolve_ids(forgotten_ids, train.ids)
    task = build_task(
        original, train, held, positions=positions, classes=classes, seed=seed, zero_shot=zero_shot
    )
    return _Prepared(train, held, task, classes, forgotten_ids, prev, earlier)


def judge(
    model: nn.Module,
    original: nn.Module,
    *,
    data: Any,
    held_out: Any,
    forget_ids: Sequence[Any] | None = None,
    ids: Sequence[Any] | None = None,
    forget_classes: Sequence[Any] | None = None,
    seed: int = 0,
    label_column: str = "y",
    id_column: str = "id",
) -> dict[str, Any]:
    """The acceptance verdict of :func:`forget` for a model unlearned any other way.

    ``model`` is scored against ``original`` on exactly the rows :func:`forget` would report on
    for the same inputs and ``seed`` (the report half of ``held_out``), with the same criteria.
    Scoring a model retrained without the forget rows shows how often the gold standard itself
    passes.

    Returns:
        ``{"passed": bool, "criteria": {name: {...}}, ...}`` as in ``evidence["after"]``.
    """
    for name, m in (("model", model), ("original", original)):
        if not isinstance(m, nn.Module):
            raise ConfigError(f"{name} must be a torch nn.Module, got {type(m).__name__}")
    original = copy.deepcopy(original).eval()
    req = _prepare(
        original, data, held_out, forget_ids, ids, forget_classes, False, label_column,
        id_column, None, seed,
    )  # fmt: skip
    stats = cal.original_stats(original, req.task, split="test")
    out = cal.proxy_score(copy.deepcopy(model).eval(), req.task, original_stats=stats, split="test")
    out.pop("losses", None)
    out.setdefault("passed", all(c["passed"] for c in out["criteria"].values()))
    return out


def forget(
    model: nn.Module,
    *,
    data: Any,
    held_out: Any,
    forget_ids: Sequence[Any] | None = None,
    ids: Sequence[Any] | None = None,
    forget_classes: Sequence[Any] | None = None,
    method: str = "auto",
    budget_s: float = 60.0,
    trials: int | None = None,
    seed: int = 0,
    zero_shot: bool = False,
    label_column: str = "y",
    id_column: str = "id",
    storage: str | Path | None = None,
    recipe: Any = None,
    model_factory: Callable[[int], nn.Module] | None = None,
    reference: str = "none",
    progress: Callable[[dict], None] | None = None,
    previous: str | Path | None = None,
    device: torch.device | str | None = "auto",
    precision: str = "fp32",
) -> ForgetResult:
    """Remove the influence of the given rows (or classes) from ``model``; return the unlearned
    model with the evidence that it now treats them as data it never saw.

    Args:
        model: the trained model (never modified).
        data: the training data the model saw: a path (CSV, Parquet, NPZ, image folder), an
            import path ``pkg.mod:function`` returning a torch ``Dataset``, a ``Dataset`` of
            ``(x, y)`` pairs, or a pair of arrays ``(x, y)``.
        held_out: data from the same distribution the model never saw (its validation or test
            split), in any of the same forms.
        forget_ids: the rows to delete: IDs (the ID column of a file, paths in an image folder,
            or ``ids=``), or positions in ``data`` for a ``Dataset`` / arrays.
        ids: one ID per row of ``data`` (optional, for a ``Dataset`` or arrays).
        forget_classes: a class-level request instead (label names or indices).
        method: ``"auto"`` (calibrate every method the data permits, equal budgets, keep the
            best) or a registered method name (calibrate that one).
        budget_s: wall-clock budget of the calibration, seconds.
        trials: also stop each method's search after this many trials (equal trial budgets;
            with an ample ``budget_s`` the result then does not depend on the machine's speed).
        seed: seeds the held-out split, the search and the final run.
        zero_shot: ``data`` holds only the forget rows: only forget-only methods qualify.
        storage: a SQLite file for the calibration studies (an interrupted request resumes).
        recipe, model_factory: the training recipe and ``seed -> fresh model`` (methods that
            retrain from scratch, and ``reference="retrain"``).
        reference: ``"none"`` or ``"retrain"`` (also retrain without the forget set and add the
            retrain-referenced gaps to the evidence).
        progress: called with a dict after every calibration trial.
        previous: the folder of the earlier request whose output ``model`` is (sequential
            requests): its deleted rows are left out of the training data, IDs it deleted are
            refused, and the evidence checks those rows still look unseen (no relapse).
        device: where to run: ``"auto"`` (CUDA, then MPS, then the CPU), a device name, or
            None (where ``model`` is). The returned model is on the CPU.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only) for every unlearning run.

    Raises:
        DataError / ConfigError: anything about the inputs, in one line naming it and the fix.
    """
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch nn.Module, got {type(model).__name__}")
    if (
        isinstance(budget_s, bool)
        or not isinstance(budget_s, (int, float))
        or not (math.isfinite(budget_s) and budget_s > 0)
    ):
        raise ConfigError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
    if trials is not None and (
        isinstance(trials, bool) or not isinstance(trials, int) or trials < 1
    ):
        raise ConfigError(f"trials must be a positive integer, got {trials!r}")
    if reference not in ("none", "retrain"):
        raise ConfigError(f"reference must be 'none' or 'retrain', got {reference!r}")
    if method != "auto":
        method = get_method(method).name
        if method == "retrain":
            raise ConfigError(
                "method 'retrain' is the reference, not an unlearning method; use "
                "reference='retrain' (CLI: --reference retrain) beside a method"
            )
    dev = check_device(device)
    check_precision(precision, dev)
    original = copy.deepcopy(model).eval()
    req = _prepare(
        original, data, held_out, forget_ids, ids, forget_classes, zero_shot, label_column,
        id_column, previous, seed,
    )  # fmt: skip
    train, held, task, classes = req.train, req.held, req.task, req.classes
    forgotten_ids, prev, earlier = req.forgotten_ids, req.prev, req.earlier
    methods = (
        cal.candidates(task, zero_shot=zero_shot, recipe=recipe) if method == "auto" else [method]
    )
    if not methods:
        raise DataError("no unlearning method can run on this data; give the retain data too")
    board = cal.calibrate(
        original,
        task,
        methods=methods,
        budget_s=float(budget_s),
        seed=seed,
        storage=Path(storage) if storage is not None else None,
        recipe=recipe,
        device=dev,
        precision=precision,
        model_factory=model_factory,
        progress=progress,
        trials=trials,
    )
    if not board.best_method:
        raise DataError(
            f"the calibration finished no trial within --budget-s {budget_s:g}; give a larger "
            "budget"
        )
    outcome = run_unlearning(
        original,
        task,
        board.best_method,
        board.best_config,
        seed=seed,
        recipe=recipe,
        model_factory=model_factory,
        device=dev,
        precision=precision,
    )
    outcome.model.to("cpu")  # the user's checkpoint is written from the CPU
    stats = cal.original_stats(original, task, split="test")
    after = cal.proxy_score(outcome.model, task, original_stats=stats, split="test")
    before_score = cal.proxy_score(original, task, original_stats=stats, split="test")
    losses = {"before": before_score.pop("losses"), "after": after.pop("losses")}
    from .evidence import build_evidence

    evidence = build_evidence(
        train=train,
        held=held,
        task=task,
        forgotten_ids=forgotten_ids,
        classes=classes,
        outcome=outcome,
        board=board,
        before=before_score,
        after=after,
        seed=seed,
        budget_s=float(budget_s),
        seconds=time.perf_counter() - t0,
    )
    if reference == "retrain":
        from .evidence import retrain_reference

        evidence["reference"] = retrain_reference(
            original, outcome.model, task, recipe=recipe, model_factory=model_factory, seed=seed
        )
    evidence["software"].update(device=str(dev) if dev is not None else "cpu", precision=precision)
    passed = bool(after.get("passed", all(c["passed"] for c in after["criteria"].values())))
    evidence["verdict"]["passed"] = passed
    cumulative = sorted(set(forgotten_ids) | set(prev.ids if prev is not None else ()))
    evidence["cumulative"] = {"n_ids": len(cumulative), "ids_sha256": sha256_ids(cumulative)}
    if prev is not None:
        link: dict[str, Any] = {
            "previous": str(prev.folder),
            "previous_output_sha256": prev.output_sha256,
            "previous_cumulative_ids_sha256": prev.evidence["cumulative"]["ids_sha256"],
            "earlier_ids": len(prev.ids),
        }
        if earlier is not None:
            link["relapse"] = chain.relapse_check(outcome.model, earlier, task)
            evidence["verdict"]["criteria"]["no_relapse"] = link["relapse"]["passed"]
            passed = passed and link["relapse"]["passed"]
            evidence["verdict"]["passed"] = passed
        else:
            link["relapse"] = "not checked: --data holds none of the earlier deleted rows"
        evidence["chain"] = link
    figures = {"losses": losses, "scenario": task.scenario, "cumulative_ids": cumulative}
    return ForgetResult(outcome.model, evidence, passed, board, figures)

"""Run a benchmark spec: resumable, one results-store row per finished cell.

The runner only composes the pieces: datasets -> forget tasks -> original model (oracle bank)
-> Retrain and a second Retrain (noise floor) -> each method through the front door -> signals
-> tier A/B metrics -> results store. A replicate's reference models (original, Retrain,
Retrain′) and their signals come from :class:`unlearnkit.bench.refs._Refs`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..api import run_unlearning
from ..audit.bank import OracleBank, bank_key
from ..checks import check_device, check_precision
from ..datasets import load
from ..errors import ConfigError, UnlearnKitError
from ..methods import get_method
from ..metrics.suite import collateral, model_signals, tier_a, tier_b
from ..models import ModelFactory
from ..models.user import CheckpointFactory
from ..tasks import ForgetTask
from ..threads import limit_threads
from .identity import METRICS_VERSION, digest, slot_of, spec_context
from .lock import RunLock
from .refs import _forget_stats, _Refs, seeds_for
from .scenarios import scenario_task
from .spec import BenchSpec, MethodEntry, ScenarioSpec
from .store import CellRow, ResultStore

__all__ = [
    "METRICS_VERSION",
    "RunSummary",
    "provenance",
    "run_benchmark",
    "seeds_for",
    "spec_record",
]

log = logging.getLogger(__name__)


def provenance() -> dict[str, Any]:
    """Library version, hardware and thread count."""
    return {
        "unlearnkit": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


@dataclass
class RunSummary:
    """What a run did: cells computed now, cells found done, failures, time."""

    computed: int = 0
    reused: int = 0
    failures: list[tuple[str, str, int, str]] = field(default_factory=list)
    seconds: float = 0.0
    trained: int = 0


class _Cell:
    """One planned cell: its row (kind, label, method, access), store key, table slot and the
    identity of what produces it (the same for every replicate of the row)."""

    def __init__(
        self,
        kind: str,
        label: str,
        method: str,
        access: str,
        key: str,
        entry: MethodEntry | None = None,
        config: Any = None,
    ) -> None:
        self.kind, self.label, self.method, self.access = kind, label, method, access
        self.key, self.entry, self.config = key, entry, config
        self.slot = ""
        self.identity: dict[str, Any] = {}

    def identify(self, table: str, scenario: str, base: dict[str, Any]) -> _Cell:
        """Set the slot and identity (``base``: the scenario's part, shared by its rows)."""
        self.slot = slot_of(table, scenario, self.label)
        self.identity = {**base, "kind": self.kind, "method": self.method}
        if self.config is not None:
            self.identity["config"] = self.config.to_dict()
            self.identity["preset"] = self.entry.preset if self.entry else None
        return self


def run_benchmark(
    spec: BenchSpec,
    out_dir: str | Path,
    *,
    echo: Callable[[str], None] | None = None,
    device: str | None = None,
    configs: str = "built-in",
    model_factory: Callable[[int], Any] | None = None,
    backend: str = "local",
    address: str | None = None,
    max_retries: int = 2,
    progress: Any = None,
) -> RunSummary:
    """Run every missing cell of ``spec`` and store it in ``out_dir/results.db``.

    Cells already in the store are skipped without any training; trained originals and
    retrains are cached in ``out_dir/bank`` so an interrupted run resumes cheaply.

    ``configs``: where the method configs come from, recorded with the run (``"built-in"``,
    or ``"tuned from DIR/tuned.yaml"``: :func:`unlearnkit.bench.configs.load_configs`).

    ``model_factory``: a function ``seed -> freshly initialised nn.Module`` (or a
    :class:`~unlearnkit.models.ModelFactory`) replacing the spec's model; the spec's
    ``model.checkpoint``, if any, is still the original (:meth:`ModelSpec.factory_for`).

    ``backend="ray"``: the cells run as tasks on the Ray cluster at ``address`` (default: a
    new one on this machine), each retried up to ``max_retries`` times; the rows are the
    local run's (:mod:`unlearnkit.bench.ray_backend`).

    ``progress``: a :class:`unlearnkit.progress.Progress` told the number of cells and each
    stored one (scenario, row label, replicate).
    """
    say = echo or (lambda msg: log.info(msg))
    execute = None
    if backend != "local" or address is not None:
        from .ray_backend import BenchExecutor, check_backend

        check_backend(backend, address)
        execute = BenchExecutor(spec, address, max_retries)
    device = check_device(device if device is not None else spec.device)
    check_precision(spec.recipe.precision, device)
    # Small models run fastest on one thread; several fight over a shared CPU. The setting
    # holds for torch and for the BLAS/OpenMP pools under NumPy, SciPy and scikit-learn.
    with limit_threads(spec.threads):
        return _run(spec, out_dir, say, device, configs, model_factory, execute, progress)


def _run(
    spec: BenchSpec, out_dir, say, device, configs: str, model_factory, execute=None, progress=None
) -> RunSummary:
    t_start = time.perf_counter()
    out = Path(out_dir)
    summary = RunSummary()
    bundle = load(spec.dataset.name, **spec.dataset.options)
    factory = spec.model.factory_for(bundle, model_factory)  # fails early on a bad model
    if isinstance(factory, CheckpointFactory) and spec.retrain_init == "same_init":
        raise ConfigError(
            "retrain_init: same_init needs the original's initial weights, which a "
            "model.checkpoint does not hold; use retrain_init: fresh_seed"
        )
    context = spec_context(spec, bundle, factory)
    with RunLock(out, "bench"), ResultStore(out / "results.db") as store:
        ctx_hash = store.admit(context, {})  # another run's folder: refused before any work
        bank = OracleBank(out / "bank")
        tasks = _resolve_tasks(spec, bundle, factory, bank, device, say)
        plan = [
            (sc, rep, _cells(spec, sc, tasks[sc.name], rep, spec.method_entries(sc), factory))
            for sc in spec.scenarios
            for rep in spec.seeds
        ]
        sweeps = _sweep_plan(spec, tasks, factory)
        every = [c for *_, cells in plan + sweeps for c in cells]
        store.admit(context, {c.slot: c.identity for c in every})
        # The run has started: only now is anything about it written.
        store.begin(
            context,
            spec=spec_record(spec, factory, model_factory is not None),
            dataset=bundle.describe(),
            provenance=provenance(),
            configs=configs,
            **{f"task:{name}": task.describe() for name, task in tasks.items()},
        )
        say(f"configs: {configs}")
        run = _Writer(store, ctx_hash, summary, progress)
        if progress is not None:  # every cell of the plan, those already stored counted done
            progress.start(len(every))
            progress.set(sum(store.has(c.key) for c in every))
        work = plan + sweeps
        if execute is not None:  # another backend computes the cells, written through `run`
            execute(spec, work, tasks, factory, bank, run, say, device)
            work = []
        # One _Refs per (scenario, replicate), shared by its benchmark cells and its sweeps'
        # (built at first need, dropped after the last work item that reads it).
        last_use = {(sc.name, rep): i for i, (sc, rep, _) in enumerate(work)}
        refs: dict[tuple[str, int], _Refs] = {}
        for i, (sc, rep, cells) in enumerate(work):
            task = tasks[sc.name]
            _run_replicate(spec, sc.name, task, rep, factory, bank, run, say, device, cells, refs)
            if last_use[(sc.name, rep)] == i:
                refs.pop((sc.name, rep), None)
        store.set_meta("sweep_cells", [c.key for *_, cells in sweeps for c in cells])
    summary.seconds = time.perf_counter() - t_start
    return summary


def spec_record(spec: BenchSpec, factory: Any, given: bool) -> dict[str, Any]:
    """The spec as a results folder records it (for the report's provenance): every field,
    the method entries resolved, and the model as built (``given``: a ``model_factory=``)."""
    d = dataclasses.asdict(spec)
    d["methods"] = [dataclasses.asdict(e) for e in spec.method_entries()]
    # the model as built: the spec's, or the model_factory= given instead
    d["model"] = factory.describe() if given else spec.model.record()
    if isinstance(factory, CheckpointFactory):
        d["model"]["checkpoint"] = {"path": str(factory.path), "sha256": factory.sha256}
    return d


def _resolve_tasks(spec, bundle, factory, bank, device, say) -> dict[str, ForgetTask]:
    """Every scenario's forget task, cheap ones first: a bad scenario fails before a ``hard``
    one trains its memorisation models."""
    order = sorted(spec.scenarios, key=lambda sc: sc.hard)
    tasks = {
        sc.name: scenario_task(
            spec, sc, bundle, factory=factory, cache_dir=bank.root, device=device, say=say
        )
        for sc in order
    }
    return {sc.name: tasks[sc.name] for sc in spec.scenarios}


class _Writer:
    """Puts finished cells into the store with the run's context, and counts them."""

    def __init__(
        self, store: ResultStore, ctx_hash: str, summary: RunSummary, progress: Any = None
    ) -> None:
        self.store, self.ctx_hash, self.summary = store, ctx_hash, summary
        self.progress = progress  # unlearnkit.progress.Progress, or None

    def put(self, cell: _Cell, scenario: str, rep: int, metrics: dict, record: dict) -> None:
        row = CellRow(
            cell.key,
            cell.kind,
            scenario,
            cell.label,
            cell.method,
            cell.access,
            rep,
            metrics,
            record,
            slot=cell.slot,
            context=self.ctx_hash,
            identity=digest(cell.identity),
        )
        self.store.put(row, identity=cell.identity)
        self.summary.computed += 1
        if self.progress is not None:
            self.progress.update(status=f"[{scenario}] {cell.label}, replicate {rep}")


def _base_key(spec: BenchSpec, task: ForgetTask, factory: ModelFactory, rep: int) -> dict:
    return {
        "dataset": task.bundle.fingerprint,
        "task": task.id,
        "arch": factory.describe(),
        "recipe": spec.recipe.hash,
        "replicate": rep,
        "seeds": seeds_for(rep),
        "seed_attack": spec.seed_attack,
        "zrf_teacher_seed": spec.zrf_teacher_seed,
        "metrics_version": METRICS_VERSION,
        # opt-in readouts change what a cell holds; absent when off, so old keys still match
        **({"relearn": True} if spec.relearn else {}),
        **({"retrain_init": spec.retrain_init} if spec.retrain_init != "fresh_seed" else {}),
    }


def _scenario_identity(spec: BenchSpec, sc: ScenarioSpec, task: ForgetTask) -> dict[str, Any]:
    """The part of a row's identity its scenario gives: the forget set (content hash), how it
    was chosen, and the run settings that change every cell (threads, optional readouts)."""
    definition = {k: v for k, v in dataclasses.asdict(sc).items() if k != "method_config"}
    return {
        "scenario": {"name": sc.name, "task": task.id, "definition": definition},
        "threads": torch.get_num_threads(),
        "relearn": spec.relearn,
    }


def _cells(spec, sc, task, rep, entries, factory, table: str = "bench") -> list[_Cell]:
    base = _base_key(spec, task, factory, rep)
    cells = [
        _Cell("original", "Original", "original", "-", bank_key(kind="original", **base)),
        _Cell(
            "retrain", "Retrain", "retrain", "forget_and_retain", bank_key(kind="retrain", **base)
        ),
        _Cell(
            "retrain_prime",
            "Retrain′ (noise floor)",
            "retrain",
            "forget_and_retain",
            bank_key(kind="retrain_prime", **base),
        ),
    ]
    for e in entries:
        mspec = get_method(e.method)
        cfg = mspec.make_config(e.config, preset=e.preset, scenario=task.scenario)
        key = bank_key(kind="method", method=mspec.name, config=cfg.to_dict(), **base)
        access = mspec.access_for(cfg).label
        cells.append(_Cell("method", e.name, mspec.name, access, key, e, cfg))
    ident = _scenario_identity(spec, sc, task)
    return [c.identify(table, sc.name, ident) for c in cells]


def _run_replicate(
    spec,
    sc_name,
    task,
    rep,
    factory,
    bank,
    run: _Writer,
    say,
    device,
    cells: list[_Cell],
    refs_by_key: dict[tuple[str, int], _Refs] | None = None,
) -> None:
    """Run the replicate's missing ``cells`` (the benchmark's or a sweep's); the reference
    models come from ``refs_by_key`` when an earlier call of the same (scenario, replicate)
    built them (and are put there otherwise)."""
    summary, store = run.summary, run.store
    todo = [c for c in cells if not store.has(c.key)]
    summary.reused += len(cells) - len(todo)
    if not todo:
        return
    say(f"[{sc_name}] replicate {rep}: {len(todo)} of {len(cells)} cells to run")
    refs = refs_by_key.get((sc_name, rep)) if refs_by_key is not None else None
    if refs is None:
        refs = _Refs(spec, task, rep, factory, bank, summary, say, device)
        if refs_by_key is not None:
            refs_by_key[(sc_name, rep)] = refs
    m_r = refs.metrics("retrain")
    sig_r = refs.signals("retrain")
    record_base = {
        "scenario": sc_name,
        "task": task.describe(),
        "seeds": seeds_for(rep),
        "recipe": spec.recipe.to_dict(),
        "recipe_hash": spec.recipe.hash,
        "arch": factory.describe(),
        "provenance": provenance(),
    }
    shared_cache: dict[str, Any] = {}
    for cell in todo:
        try:
            if cell.kind in ("original", "retrain", "retrain_prime"):
                m = dict(refs.metrics(cell.kind))
                m.update(tier_b(m, m_r, refs.signals(cell.kind), sig_r))
                record = {**record_base, "kind": cell.kind}
            else:
                orig, _ = refs.original()
                outcome = run_unlearning(
                    orig,
                    task,
                    cell.method,
                    cell.config,
                    seed=seeds_for(rep)["seed_unlearn"],
                    recipe=spec.recipe,
                    model_factory=factory,
                    cache=shared_cache,
                    device=device,
                )
                sig_u = model_signals(outcome.model, task, device=device)
                m = tier_a(sig_u, teacher=refs.signals("teacher"), seed_attack=spec.seed_attack)
                m.update(_forget_stats(sig_u))
                m["rte_seconds"] = outcome.rte_seconds
                m["diverged"] = float(outcome.diverged)
                m.update(collateral(sig_u, refs.signals("original")))
                if spec.relearn:
                    m.update(refs.relearn(outcome.model))
                m.update(refs.weight_distance(outcome.model))
                m.update(tier_b(m, m_r, sig_u, sig_r))
                record = {
                    **record_base,
                    "kind": cell.kind,
                    "run": outcome.record(),
                    "preset": cell.entry.preset if cell.entry else None,
                    "point": cell.entry.config if cell.kind == "sweep" else None,
                }
        except (UnlearnKitError, RuntimeError, ValueError) as exc:
            summary.failures.append((sc_name, cell.label, rep, f"{type(exc).__name__}: {exc}"))
            say(f"  FAILED {cell.label}: {type(exc).__name__}: {exc}")
            continue
        run.put(cell, sc_name, rep, m, record)


def _sweep_plan(spec, tasks, factory) -> list[tuple[ScenarioSpec, int, list[_Cell]]]:
    """Sensitivity sweeps: each grid point is a method cell of kind ``sweep``."""
    plan = []
    for sw in spec.sweeps:
        names = list(sw.grid)
        points = [dict(zip(names, vals)) for vals in itertools.product(*sw.grid.values())]
        scenarios = [s for s in spec.scenarios if sw.scenarios is None or s.name in sw.scenarios]
        for sc in scenarios:
            for rep in spec.seeds:
                cells = []
                for point in points:
                    label = f"{sw.method}[" + ",".join(f"{k}={v}" for k, v in point.items()) + "]"
                    entry = MethodEntry(
                        sw.method, label=label, preset=sw.preset, config={**sw.config, **point}
                    )
                    cell = _cells(spec, sc, tasks[sc.name], rep, [entry], factory, "sweep")[-1]
                    cell.kind = "sweep"
                    cell.identity["kind"] = "sweep"
                    cell.key = bank_key(kind="sweep", base=cell.key)
                    cells.append(cell)
                plan.append((sc, rep, cells))
    return plan

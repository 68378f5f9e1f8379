"""``--backend ray``: the work of ``bench``, ``audit`` and ``tune`` as tasks on a Ray cluster.

The driver (the process that runs the command) plans the work exactly as a local run does,
sends the tasks out and stays the only writer of the results store:

* **Benchmark.** Per replicate, one task trains the original model; per (scenario,
  replicate), one task trains Retrain and computes the reference signals every cell of that
  replicate reads; then every missing (scenario, replicate, method) cell is a task of its own.
  Each task receives the models and signals it needs through Ray's object store (Ray starts a
  cell once its references exist), so every original and Retrain is trained once, never once
  per cell. Trained models also go into the oracle bank (``OUT/bank``: on a cluster, a folder
  every node sees), so a rerun finds them there.
* **Rows.** Each finished cell comes back to the driver, which writes its row at once; a rerun
  skips every stored row (a killed driver resumes like a local run, with no duplicate). A
  task whose worker died, or that raised an unexpected error, is run again up to
  ``max_retries`` times, then its cell is reported as failed (``RunSummary.failures``), never
  dropped.
* **Same numbers.** Every task runs with the driver's thread settings (torch and the BLAS /
  OpenMP pools) and the same seeds and code path as the local runner, so its rows equal the
  local rows number for number (timings aside).

The audit side lives in :mod:`unlearnkit.audit.ray_backend`, the tuning side in
:mod:`unlearnkit.bench.ray_tune`. Ray is optional: ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..threads import limit_threads

__all__ = [
    "BACKENDS",
    "RAY_INSTALL",
    "BenchExecutor",
    "RayOptions",
    "check_backend",
    "connect",
    "pack",
    "replay",
    "unpack",
]

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
RAY_INSTALL = 'pip install -e ".[ray]"'
#: How often a task is run again after its worker died or it raised an unexpected error.
MAX_RETRIES = 2


def check_backend(backend: str, address: str | None = None) -> None:
    """Raise ConfigError for an unknown backend, an address without Ray, or Ray missing."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "local":
        if address is not None:
            raise ConfigError("--address needs --backend ray; drop it or add --backend ray")
        return
    _host_port(address)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"--backend ray needs Ray, which is not installed: {RAY_INSTALL}"
        ) from None


@dataclass(frozen=True)
class RayOptions:
    """Where to run and what each task asks for."""

    address: str | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    max_retries: int = MAX_RETRIES

    @classmethod
    def for_spec(cls, spec: Any, address: str | None, max_retries: int) -> RayOptions:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        res = spec.resources
        return cls(address, float(res.cpus), float(res.gpus), max_retries)

    def task(self, **extra: Any) -> dict[str, Any]:
        """Options of a retried task (``.options(**...)``)."""
        return {
            "num_cpus": self.cpus,
            "num_gpus": self.gpus,
            "max_retries": self.max_retries,
            "retry_exceptions": True,
            **extra,
        }

    def check_device(self, device: Any) -> None:
        kind = torch.device(device).type if device is not None else "cpu"
        if kind == "cuda" and self.gpus <= 0:
            raise ConfigError(
                "device cuda with --backend ray needs GPUs for each task: add "
                "'resources: {cpus: 1, gpus: 0.25}' (or gpus: 1) to the spec"
            )


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[Any]:
    """The ``ray`` module, connected: to ``address`` (``auto``, ``HOST:PORT``, ``ray://...``),
    or to a new one-machine cluster when ``address`` is None and no ``RAY_ADDRESS`` is set.
    A connection made here is closed on exit; one the caller made stays open."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
        raise ConfigError(
            f"cannot connect to the Ray cluster at {where}: {' '.join(str(exc).split())}; "
            "check --address (start a cluster with 'ray start --head')"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _host_port(address: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` or ``ray://HOST:PORT`` address (None for ``auto``
    or no address); ConfigError for anything else."""
    if not address or address == "auto":
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"--address {address!r} is not auto, HOST:PORT or ray://HOST:PORT; give the "
            "address 'ray start --head' printed"
        )
    return host, int(port)


def _check_reachable(address: str | None, timeout_s: float = 10.0) -> None:
    """An address that takes no connection fails here, at once (Ray would retry for
    minutes)."""
    where = _host_port(address)
    if where is None:
        return
    try:
        socket.create_connection(where, timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check --address "
            "(start a cluster with 'ray start --head')"
        ) from None


def reason(exc: BaseException) -> str:
    """One line naming why a task failed (the error inside Ray's wrapper, when there is one)."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    text = lines[-1].strip() if isinstance(cause, BaseException) and lines else " ".join(lines)
    return f"{type(err).__name__}: {text[:300]}"


class _Messages(logging.Handler):
    """A task's progress lines and the library's warnings, sent back with its result: the
    driver prints the lines and logs the warnings again (:func:`replay`), so a command shows
    them as it does for a local run. Use as ``with say: ...`` around the task's work."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.warnings: list[tuple[str, int, str]] = []

    def __call__(self, msg: str) -> None:
        self.lines.append(msg)

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings.append((record.name, record.levelno, record.getMessage()))

    def __enter__(self) -> _Messages:
        logging.getLogger("unlearnkit").addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        logging.getLogger("unlearnkit").removeHandler(self)

    def record(self) -> dict[str, list]:
        return {"lines": self.lines, "warnings": self.warnings}


def replay(log_record: dict[str, list], say: Callable[[str], None], tag: str = "") -> None:
    """Print a task's lines (``tag`` first) and log its warnings again on the driver."""
    for msg in log_record["lines"]:
        say(tag + msg)
    for name, level, msg in log_record["warnings"]:
        logging.getLogger(name).log(level, "%s", msg)


def warm_imports() -> None:
    """What torch imports on first use, imported before a task times anything: building the
    first optimizer of a process imports ``torch._dynamo`` (seconds), which a local run pays
    while training its first model, but which would inflate a fresh worker's first RTE."""
    import torch._dynamo  # noqa: F401


def pack(obj: Any) -> bytes:
    """``obj`` as bytes for the object store. Unpacked, every array is the task's own
    writable copy, as in a local run (Ray hands out NumPy arrays read-only otherwise)."""
    from ray import cloudpickle

    return cloudpickle.dumps(obj)


def unpack(blob: bytes) -> Any:
    import pickle

    return pickle.loads(blob)


# ---------------------------------------------------------------------------------------------
# Benchmark tasks (run in Ray workers)


class _NoRows:
    """A worker's stand-in for the store: it holds no row, so the cell is computed."""

    def has(self, key: str) -> bool:
        return False


class _Collect:
    """A worker's stand-in for the driver's writer: keeps the finished cell's values."""

    def __init__(self, summary: Any) -> None:
        self.summary, self.store = summary, _NoRows()
        self.rows: list[tuple[dict, dict]] = []

    def put(self, cell: Any, scenario: str, rep: int, metrics: dict, record: dict) -> None:
        self.rows.append((metrics, record))
        self.summary.computed += 1


def _refs(spec, task, rep, factory, bank_root, device, say):
    from ..audit.bank import OracleBank
    from .refs import _Refs
    from .runner import RunSummary

    warm_imports()

    summary = RunSummary()
    return _Refs(spec, task, rep, factory, OracleBank(bank_root), summary, say, device), summary


def _original_task(spec, task, rep, factory, bank_root, device, threads) -> bytes:
    """Replicate ``rep``'s original model (trained, or read from the bank)."""
    say = _Messages()
    spec, task, factory = unpack(spec), unpack(task), unpack(factory)
    with limit_threads(threads), say:
        refs, summary = _refs(spec, task, rep, factory, bank_root, device, say)
        model, meta = refs.original()
    return pack({"model": model, "meta": meta, "trained": summary.trained, "log": say.record()})


def _references_task(spec, task, rep, factory, bank_root, device, threads, original) -> bytes:
    """Retrain of (scenario, replicate) and the signals and metrics every cell reads."""
    say = _Messages()
    spec, task, factory, original = unpack(spec), unpack(task), unpack(factory), unpack(original)
    with limit_threads(threads), say:
        refs, summary = _refs(spec, task, rep, factory, bank_root, device, say)
        refs._cache["original"] = (original["model"], original["meta"])
        refs.metrics("retrain")  # with the Retrain, teacher and original signals
        refs.signals("teacher")
        refs.signals("original")
    return pack({"cache": refs._cache, "trained": summary.trained, "log": say.record()})


def _cell_task(spec, sc_name, task, rep, factory, bank_root, device, threads, refs_out, cell):
    """One cell, by the local runner's own code, with its references given."""
    from .runner import _run_replicate

    say = _Messages()
    spec, task, factory, refs_out = unpack(spec), unpack(task), unpack(factory), unpack(refs_out)
    with limit_threads(threads), say:
        refs, summary = _refs(spec, task, rep, factory, bank_root, device, say)
        refs._cache.update(refs_out["cache"])
        out = _Collect(summary)
        todo = {(sc_name, rep): refs}
        _run_replicate(spec, sc_name, task, rep, factory, refs.bank, out, say, device, [cell], todo)
    # the runner's "[scenario] replicate r: n cells to run" line: the driver said it already
    say.lines = [m for m in say.lines if not m.startswith(f"[{sc_name}] replicate")]
    rows = {"rows": out.rows, "failures": summary.failures, "trained": summary.trained}
    return pack({**rows, "log": say.record()})


# ---------------------------------------------------------------------------------------------
# Benchmark driver


class BenchExecutor:
    """Runs a benchmark's planned work on Ray (the ``execute`` of ``bench.runner._run``)."""

    def __init__(self, spec: Any, address: str | None, max_retries: int = MAX_RETRIES) -> None:
        check_backend("ray")
        self.opts = RayOptions.for_spec(spec, address, max_retries)

    def __call__(self, spec, work, tasks, factory, bank, run, say, device) -> None:
        """Compute every missing cell of ``work`` (``(scenario, replicate, cells)`` items) and
        write each through ``run`` (the driver's writer) as it comes back."""
        self.opts.check_device(device)
        store, summary = run.store, run.summary
        todo: dict[tuple[str, int], list[Any]] = {}
        for sc, rep, cells in work:
            missing = [c for c in cells if not store.has(c.key)]
            summary.reused += len(cells) - len(missing)
            if missing:
                todo.setdefault((sc.name, rep), []).extend(missing)
        if not todo:
            return
        with connect(self.opts.address) as ray:
            self._run(ray, spec, todo, tasks, factory, bank, run, say, device)

    def _run(self, ray, spec, todo, tasks, factory, bank, run, say, device) -> None:
        summary = run.summary
        threads = torch.get_num_threads()  # the driver's setting, kept in every task
        opts = self.opts.task()
        original_r = ray.remote(_original_task).options(**opts)
        references_r = ray.remote(_references_task).options(**opts)
        cell_r = ray.remote(_cell_task).options(**opts)
        spec_ref, factory_ref = ray.put(pack(spec)), ray.put(pack(factory))
        names = dict.fromkeys(n for n, _ in todo)
        task_refs = {name: ray.put(pack(tasks[name])) for name in names}
        root = str(Path(bank.root).resolve())
        common = (factory_ref, root, device, threads)
        originals: dict[int, Any] = {}
        helpers: dict[Any, str] = {}  # the reference tasks, for their messages and counts
        cells: dict[Any, tuple[str, int, Any]] = {}
        for (sc_name, rep), todo_cells in todo.items():
            if rep not in originals:
                ref = original_r.remote(spec_ref, task_refs[sc_name], rep, *common)
                originals[rep] = ref
                helpers[ref] = f"original of replicate {rep}"
            n_cells = len(todo_cells)
            say(f"[{sc_name}] replicate {rep}: {n_cells} cells to run on Ray")
            refs = references_r.remote(spec_ref, task_refs[sc_name], rep, *common, originals[rep])
            helpers[refs] = f"[{sc_name}] references of replicate {rep}"
            for cell in todo_cells:
                ref = cell_r.remote(spec_ref, sc_name, task_refs[sc_name], rep, *common, refs, cell)
                cells[ref] = (sc_name, rep, cell)
        pending = list(helpers) + list(cells)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ref = done[0]
            try:
                out = unpack(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - a task that failed its last try
                if ref in cells:
                    sc_name, rep, cell = cells[ref]
                    summary.failures.append((sc_name, cell.label, rep, reason(exc)))
                    say(f"  FAILED {cell.label} (replicate {rep}): {reason(exc)}")
                else:
                    say(f"  FAILED {helpers[ref]}: {reason(exc)}")
                continue
            replay(out["log"], say)
            summary.trained += out["trained"]
            if ref in cells:
                sc_name, rep, cell = cells[ref]
                for metrics, record in out["rows"]:
                    run.put(cell, sc_name, rep, metrics, record)
                summary.failures.extend(out["failures"])

"""``unlearnkit tune --backend ray``: one tuning run's trials run by Ray workers that share
its studies.

The driver checks the request and the folder before any work. The references train as tasks
into the bank; then K workers run the local tuner on the one Optuna store (``OUT/tune.db``),
where Optuna hands each worker its own trials and a worker that dies leaves its trial to the
heartbeat check, which runs it again. ``unlearnkit tune --backend ray`` calls
:func:`~unlearnkit.bench.tuning.run_tuning` with ``backend="ray"``, which hands the run here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, UnlearnKitError
from ..threads import limit_threads
from .ray_backend import (
    MAX_RETRIES,
    RayOptions,
    _Messages,
    check_backend,
    connect,
    pack,
    reason,
    replay,
    unpack,
    warm_imports,
)

__all__ = ["tune_on_ray"]

log = logging.getLogger(__name__)


def _tune_references(spec, sc_name, rep, bank_dir, device, factory, threads, after) -> dict:
    """Train (or find) replicate ``rep``'s references of one scenario's validation protocol
    (``after``: the task that trained this replicate's original, when another one did)."""
    from .tune import ValidationSetup

    warm_imports()
    say = _Messages()
    spec, factory = unpack(spec), unpack(factory)
    with limit_threads(threads), say:
        setup = ValidationSetup(
            spec, sc_name, seeds=(rep,), bank_dir=bank_dir, echo=say, device=device, factory=factory
        )
    return {"trained": setup.trained, "log": say.record()}


def _tune_worker(spec, out_dir, kwargs, threads: int, studies: list) -> dict[str, Any]:
    """One worker of a shared search: the local tuner on the shared study store, one
    (scenario, method) study after another in the order given."""
    from .tuning import run_tuning

    warm_imports()
    say = _Messages()
    spec, kwargs = unpack(spec), unpack(kwargs)
    with limit_threads(threads), say:
        for scenario, method in studies:
            run_tuning(
                spec, out_dir, echo=say, **{**kwargs, "methods": [method], "scenarios": [scenario]}
            )
    return {"pid": os.getpid(), "log": say.record()}


def tune_on_ray(
    spec: Any,
    out_dir: str | Path,
    *,
    address: str | None,
    workers: int | None,
    max_retries: int = MAX_RETRIES,
    echo: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> list[Any]:
    """``run_tuning`` with its trials run by ``workers`` Ray tasks sharing the studies.

    The driver checks the request and the folder before any work. Then the references train
    as tasks into the bank (``bank_dir``: a folder every node sees): per replicate, one task
    trains the original and the first scenario's Retrain, and one task per other scenario
    its Retrain once that original exists. Then the workers run the local tuner on the one
    study store (``OUT/tune.db``, SQLite: a folder every node sees), each taking the studies in
    the plan's order from its own starting point (spread evenly), so few workers start on
    different studies and many share each one; Optuna hands each its own trials, and a worker
    that dies leaves its trial to the heartbeat check, which runs it again. The driver finally
    reads the studies (running any trial still missing itself). ``workers`` defaults to the
    tasks the cluster fits at once.
    """
    from .tuning import run_tuning

    backend = kwargs.pop("backend", "ray")
    progress = kwargs.pop("progress", None)  # the driver's display: told by the last step
    check_backend(backend, address)
    if backend == "local":
        raise ConfigError("Ray workers need --backend ray; drop --workers or add --backend ray")
    say = echo or log.info
    opts = RayOptions.for_spec(spec, address, max_retries)
    opts.check_device(kwargs.get("device"))
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ConfigError(f"workers must be a whole number >= 1, got {workers!r}")
    plan, seeds, bank, factory = _tune_preflight(spec, out_dir, kwargs, say)
    threads = spec.threads if spec.threads is not None else torch.get_num_threads()
    device = kwargs.get("device")
    with connect(opts.address) as ray:
        if workers is None:
            workers = _fits(ray, opts)
        refs_r = ray.remote(_tune_references).options(**opts.task())
        spec_ref, factory_ref = ray.put(pack(spec)), ray.put(pack(factory))
        common = (str(bank), device, factory_ref, threads)
        jobs = {}
        for rep in seeds:
            first = None
            for name in dict.fromkeys(sc.name for sc, _ in plan):
                ref = refs_r.remote(spec_ref, name, rep, *common, first)
                jobs[ref] = f"{name}, replicate {rep}"
                if first is None:  # the others wait for its original
                    first = ref
        failed = _gather(ray, jobs, say, "references of")
        if failed:
            raise UnlearnKitError(f"tuning references failed on Ray: {failed[0]}; fix and rerun")
        say(f"{workers} Ray worker(s) share the studies in {Path(out_dir) / 'tune.db'}")
        worker_r = ray.remote(_tune_worker).options(**opts.task())
        local = ray.put(pack({**kwargs, "backend": "local", "bank_dir": bank}))
        studies = [(sc.name, method) for sc, method in plan]
        jobs = {}
        for i in range(workers):
            start = i * len(studies) // workers
            order = studies[start:] + studies[:start]
            jobs[worker_r.remote(spec_ref, str(out_dir), local, threads, order)] = f"{i + 1}"
        failed = _gather(ray, jobs, say, "ray worker")
    if failed:
        say(f"{len(failed)} tune worker(s) failed; the driver runs the trials still missing")
    return run_tuning(  # reads the studies back; runs any trial still missing
        spec,
        out_dir,
        echo=say,
        progress=progress,
        **{**kwargs, "backend": "local", "bank_dir": bank},
    )


def _tune_preflight(spec, out_dir, kwargs, say) -> tuple[list, tuple, Path, Any]:
    """What ``run_tuning`` does before any work (same checks, same errors), training nothing:
    it also creates the studies and queues each one's trial 0, so that workers starting
    together find it queued instead of each queuing one of its own."""
    from ..datasets import load
    from ..methods import get_method
    from .tune_space import resolve_search_space
    from .tune_store import (
        check_folder,
        open_storage,
        quiet_optuna,
        study_identity,
        study_name,
        tuning_context,
    )
    from .tuning import _check_request, _open_study, _plan, _Study

    seeds_n = kwargs.get("replicates")
    _check_request(
        kwargs.get("n_trials", 16),
        kwargs.get("budget_s"),
        seeds_n,
        kwargs.get("seed", 0),
        len(spec.seeds),
    )
    seeds = tuple(spec.seeds[:seeds_n] if seeds_n else spec.seeds)
    plan = _plan(spec, kwargs.get("methods"), kwargs.get("scenarios"), say)
    bundle = load(spec.dataset.name, **spec.dataset.options)
    factory = spec.model.factory_for(bundle, kwargs.get("model_factory"))
    context = tuning_context(spec, bundle, factory, seeds, kwargs.get("seed", 0))
    given = {get_method(k).name: v for k, v in (kwargs.get("search_spaces") or {}).items()}
    identities = {
        study_name(m, sc.name): study_identity(spec, sc, m, given.get(m)) for sc, m in plan
    }
    out = Path(out_dir)
    with quiet_optuna() as optuna:
        storage = open_storage(out)
        check_folder(storage, out, context, identities)
        attrs = {"context": context, "spec_name": spec.name}
        for sc, method in plan:
            name = study_name(method, sc.name)
            study = _open_study(optuna, storage, name, {**attrs, "identity": identities[name]})
            space = resolve_search_space(method, given.get(method))[0]
            _Study(optuna, study, spec, sc, method, space, say).enqueue_default()
    bank_dir = kwargs.get("bank_dir")
    bank = Path(bank_dir) if bank_dir is not None else out / "bank"
    return plan, seeds, bank.resolve(), factory


def _fits(ray, opts: RayOptions) -> int:
    """How many tasks of ``opts`` the cluster runs at once."""
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // opts.cpus) if opts.cpus > 0 else 1 << 20
    if opts.gpus > 0:
        n = min(n, int(res.get("GPU", 0) // opts.gpus))
    return max(1, n)


def _gather(ray, jobs: dict[Any, str], say, what: str) -> list[str]:
    """Wait for ``jobs``; print their messages; return the failures' reasons."""
    failed, pending = [], list(jobs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            out = ray.get(done[0])
        except Exception as exc:  # noqa: BLE001 - a task that failed its last try
            failed.append(f"{what} {jobs[done[0]]}: {reason(exc)}")
            say(f"  FAILED {failed[-1]}")
            continue
        tag = f"[{what} {jobs[done[0]]}] " if len(jobs) > 1 else ""
        replay(out["log"], say, tag)
    return failed

"""``unlearnkit audit --backend ray``: an audit's two rows and its model banks as Ray tasks.

An audit has two rows, the method's and its Retrain control's; each missing one is a Ray task
that runs the kind's own computation (:mod:`~unlearnkit.audit.epsilon`, ``ulira``, ``rmia``).
The many models the rows need (Retrains, shadow and reference models) are not trained inside
those tasks: a small coordinating actor hands each missing bank model to one training task
(a group of models trained together, as a local audit groups them), whatever row asks first,
so a model both rows need (the epsilon audit's N Retrains, the RMIA reference bank) is trained
once. Trained models reach the rows through Ray's object store and are kept in the oracle bank
(``OUT/bank``: on a cluster, a folder every node sees). The driver writes both rows.

Every task runs with the driver's thread settings and the local code path, so the rows equal a
local audit's number for number (timings aside); ``timings`` then sum the tasks' seconds.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..bench.ray_backend import (
    MAX_RETRIES,
    RayOptions,
    _Messages,
    check_backend,
    connect,
    pack,
    reason,
    unpack,
    warm_imports,
)
from ..errors import UnlearnKitError
from ..threads import limit_threads
from .bank import OracleBank

__all__ = ["AuditExecutor"]


@dataclasses.dataclass
class _GroupTrainer:
    """What training a group of bank models needs from the audit (no store, no lock)."""

    factory: Callable[[int], Any]
    spec: Any
    device: Any
    chunk: int
    workers: int
    timings: dict[str, float] = dataclasses.field(default_factory=lambda: {"training": 0.0})
    trained: int = 0

    @contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        from .session import _Audit

        with _Audit._timed(self, what):
            yield

    def train(self, datasets: list, seeds: list[int]) -> list[Any]:
        from .session import _Audit

        return _Audit._train_many(self, datasets, seeds)


def _train_and_bank(trainer, datasets, seeds, keys, metas, bank_root, threads) -> list[Any]:
    """Train one group of bank models (as the local audit trains a group) and bank them."""
    with limit_threads(threads):
        models = trainer.train(datasets, seeds)
    bank = OracleBank(bank_root)
    for key, model, meta in zip(keys, models, metas):
        bank.put(key, model, meta)
    return models


def _train_group(trainer, datasets, seeds, keys, metas, bank_root, threads) -> bytes:
    """A group of bank models trained as a task of its own (its models packed)."""
    warm_imports()
    trainer, datasets = unpack(trainer), unpack(datasets)
    models = _train_and_bank(trainer, datasets, seeds, keys, metas, bank_root, threads)
    return pack([m.to("cpu") for m in models])


def _registry_class() -> type:
    """The bank registry's class, built here so Ray ships it by value: the actor then imports
    neither torch nor this library and starts in a moment."""

    class BankRegistry:
        """Which training task holds each missing bank model (one actor per audit call).

        ``claim`` groups the keys no task trains yet (``step`` per group, in the order asked,
        as a local audit groups them) and gives those groups to the caller, who sends them out
        and ``publish``-es their tasks; ``lookup`` finds any group's task.
        """

        def __init__(self) -> None:
            self.place: dict[str, tuple[int, int]] = {}
            self.tasks: dict[int, object] = {}
            self.groups = 0

        def claim(self, keys: list[str], step: int) -> tuple[list[tuple[int, int]], list[int]]:
            new = [k for k in keys if k not in self.place]
            mine = []
            for start in range(0, len(new), step):
                gid, self.groups = self.groups, self.groups + 1
                mine.append(gid)
                for j, k in enumerate(new[start : start + step]):
                    self.place[k] = (gid, j)
            return [self.place[k] for k in keys], mine

        def publish(self, gid: int, boxed: list) -> None:
            self.tasks[gid] = boxed[0]  # boxed: a ref inside a list stays a ref

        def lookup(self, gids: list[int]) -> list[list]:
            return [[self.tasks[g]] if g in self.tasks else [] for g in gids]

        def trained(self) -> int:
            return len(self.place)

    return BankRegistry


class _BankClient:
    """A row task's ``_bank_many``: hits from the bank; each missing model from the task that
    trains it (sent out by this row when the registry gives it the model's group)."""

    def __init__(self, registry: Any, train_group: Any, trainer: Any, root: str, threads: int):
        self.registry, self.train_group, self.trainer = registry, train_group, trainer
        self.root, self.threads = root, threads

    def __call__(self, audit, keys, datasets, seeds, metas) -> list[Any]:
        import ray

        from .session import _BANK_GROUP

        models: list[Any] = [None] * len(keys)
        misses = []
        for i, key in enumerate(keys):
            got = audit.bank.get(key, lambda: audit.factory(0))
            if got is None:
                misses.append(i)
            else:
                models[i] = audit._load(got[0])
        if not misses:
            return models
        audit.say(f"  training {len(misses)} of {len(keys)} {metas[misses[0]]['role']} models")
        step = min(_BANK_GROUP, audit.chunk)
        places, mine = ray.get(self.registry.claim.remote([keys[i] for i in misses], step))
        members = {g: [i for i, (h, _) in zip(misses, places) if h == g] for g in mine}

        def args(gid: int) -> tuple:
            group = members[gid]
            return (
                [datasets[i] for i in group],  # packed for a task, as they are for this row
                [seeds[i] for i in group],
                [keys[i] for i in group],
                [metas[i] for i in group],
                self.root,
                self.threads,
            )

        # This row's groups but the first go out as tasks; the first is trained right here,
        # in a worker already running (a small audit then starts no other process).
        for gid in mine[1:]:
            data, *rest_args = args(gid)
            ref = self.train_group.remote(self.trainer, pack(data), *rest_args)
            ray.get(self.registry.publish.remote(gid, [ref]))
        groups: dict[int, list[Any]] = {}
        if mine:
            trainer = unpack(ray.get(self.trainer))
            with audit._timed("training"):
                groups[mine[0]] = _train_and_bank(trainer, *args(mine[0]))
            packed = ray.put(pack([m.to("cpu") for m in groups[mine[0]]]))
            ray.get(self.registry.publish.remote(mine[0], [packed]))
        gids = list(dict.fromkeys(g for g, _ in places))
        rest = [g for g in gids if g not in groups]
        with audit._timed("training"):
            found = ray.get(self.registry.lookup.remote(rest))
            while not all(found):  # another row has these groups and trains one of them itself
                time.sleep(0.05)
                found = ray.get(self.registry.lookup.remote(rest))
            groups.update(zip(rest, map(unpack, ray.get([box[0] for box in found]))))
        for i, (gid, j) in zip(misses, places):
            models[i] = audit._load(groups[gid][j])
        return models


def _row_task(audit, kind: str, side: str, client: _BankClient, threads: int) -> bytes:
    """One row of the audit (``side``: ``method`` or ``control``), by the kind's own code."""
    from .runner import _KIND_MODULES

    warm_imports()
    audit = unpack(audit)
    say = _Messages()
    audit.say = say
    audit.bank_trainer = client
    with limit_threads(threads):
        m_part, c_part = _KIND_MODULES[kind].compute(audit, side == "method", side == "control")
    return pack(
        {
            "part": m_part if side == "method" else c_part,
            "trained": audit.trained,  # trained here, not through the registry (the original)
            "unlearning_runs": audit.unlearning_runs,
            "timings": dict(audit.timings),
            "log": say.lines,
        }
    )


class AuditExecutor:
    """Computes an audit's missing rows on Ray (the ``execute`` of ``audit.runner._run``)."""

    def __init__(self, spec: Any, address: str | None, max_retries: int = MAX_RETRIES) -> None:
        check_backend("ray")
        self.opts = RayOptions.for_spec(spec, address, max_retries)

    def __call__(self, kind: str, audit, need_method: bool, need_control: bool):
        """``(method part, control part)`` as ``kind.compute`` returns them."""
        self.opts.check_device(audit.device)
        threads = torch.get_num_threads()  # the driver's setting, kept in every task
        root = str(Path(audit.bank.root).resolve())
        blob = copy.copy(audit)  # what a row task needs: no store, no lock, fresh counters
        blob.store = blob.lock = blob.say = None
        blob.timings = {k: 0.0 for k in audit.timings}
        blob.trained = blob.unlearning_runs = 0
        trainer = _GroupTrainer(audit.factory, audit.spec, audit.device, audit.chunk, audit.workers)
        sides = [s for s, need in (("control", need_control), ("method", need_method)) if need]
        with connect(self.opts.address) as ray:
            registry = ray.remote(_registry_class()).options(num_cpus=0).remote()
            train_group = ray.remote(_train_group).options(**self.opts.task())
            client = _BankClient(registry, train_group, ray.put(pack(trainer)), root, threads)
            row_r = ray.remote(_row_task).options(**self.opts.task())
            blob_ref = ray.put(pack(blob))
            jobs = {row_r.remote(blob_ref, kind, side, client, threads): side for side in sides}
            parts: dict[str, Any] = {}
            errors: list[BaseException] = []
            pending = list(jobs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    out = unpack(ray.get(done[0]))
                except Exception as exc:  # noqa: BLE001 - a task that failed its last try
                    errors.append(exc)
                    audit.say(f"  FAILED the {jobs[done[0]]} row: {reason(exc)}")
                    continue
                for msg in out["log"]:
                    audit.say(msg)
                parts[jobs[done[0]]] = out["part"]
                audit.unlearning_runs += out["unlearning_runs"]
                audit.trained += out["trained"]
                for k, v in out["timings"].items():
                    audit.timings[k] = audit.timings.get(k, 0.0) + v
            audit.trained += ray.get(registry.trained.remote())
        if errors:
            raise _as_error(errors[0])
        return parts.get("method"), parts.get("control")


def _as_error(exc: BaseException) -> BaseException:
    """The error a local audit would have raised (the task's own, when Ray kept it)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, UnlearnKitError):
        return cause
    return RuntimeError(f"audit task failed on Ray: {reason(exc)}")

"""``unlearnkit audit --backend ray``: an audit's two rows and its model banks as Ray tasks.

An audit has two rows, the method's and its Retrain control's; each missing one is a Ray task
that runs the kind's own computation (:mod:`~unlearnkit.audit.epsilon`, ``ulira``, ``rmia``).
The many models the rows need (Retrains, shadow and reference models) are grouped as a local
audit groups them, and a small registry actor keeps the groups: the first row to ask for a
group creates it, and a helper task is started for it. Whoever starts a group first trains it,
a helper (in parallel, where the cluster has room) or a row (which trains any waiting group
itself before it waits for one another worker is training). So a model both rows need (the
epsilon audit's N Retrains, the RMIA reference bank) is trained once, and a row never waits for
a group that no running task is training: an audit cannot deadlock on a cluster too small for
its helpers (one GPU, say). Trained models reach the rows through Ray's object store (held by
the registry, so they outlive the task that made them) and are kept in the oracle bank
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
    replay,
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


def _help(registry, gid: int, trainer, root: str, threads: int) -> bytes | None:
    """A helper task's work: group ``gid``'s models (packed), unless a row started it first."""
    import ray

    warm_imports()
    args = ray.get(registry.start.remote(gid, "helper"))
    if not args:
        return None
    datasets, seeds, keys, metas = unpack(ray.get(args[0]))
    models = _train_and_bank(unpack(trainer), datasets, seeds, keys, metas, root, threads)
    return pack([m.to("cpu") for m in models])


def _registry_class() -> type:
    """The bank registry's class, built here so Ray ships it (and its helper) by value: the
    actor then imports neither torch nor this library and starts in a moment."""

    def helper(registry, gid, trainer, root, threads):
        from unlearnkit.audit.ray_backend import _help

        return _help(registry, gid, trainer, root, threads)

    class BankRegistry:
        """The groups of missing bank models of one audit call, and who trains each.

        ``claim`` groups the keys no one has asked for yet (``step`` per group, in the order
        asked, as a local audit groups them); the claimer ``offer``-s each new group's inputs,
        which starts a helper task for each group but its first. A group is trained by
        whoever ``start``-s it first: its helper, or a row that ``pop``-s it. ``lookup`` gives a
        group's models once someone is training them (boxed: a ref inside a list stays a ref).
        """

        def __init__(self, helper_options: dict, trainer: list, root: str, threads: int) -> None:
            import ray

            self.ray, self.me = ray, ray.get_runtime_context().current_actor
            self.helper = ray.remote(helper).options(**helper_options)
            self.trainer, self.root, self.threads = trainer[0], root, threads
            self.place: dict[str, tuple[int, int]] = {}
            self.args: dict[int, object] = {}
            self.by: dict[int, str] = {}  # gid -> "helper" or "row": who started it
            self.done: dict[int, object] = {}  # gid -> models a row trained
            self.helpers: dict[int, object] = {}  # gid -> its helper task
            self.groups = 0

        def claim(self, keys: list[str], step: int) -> tuple[list[tuple[int, int]], list]:
            new = [k for k in keys if k not in self.place]
            mine = []
            for start in range(0, len(new), step):
                gid, self.groups = self.groups, self.groups + 1
                members = new[start : start + step]
                mine.append((gid, members))
                for j, k in enumerate(members):
                    self.place[k] = (gid, j)
            return [self.place[k] for k in keys], mine

        def offer(self, gid: int, args: list, helped: bool) -> None:
            self.args[gid] = args[0]
            if helped:
                self.helpers[gid] = self.helper.remote(
                    self.me, gid, self.trainer, self.root, self.threads
                )

        def start(self, gid: int, who: str) -> list:
            """``[inputs]`` when ``who`` may train ``gid`` (no one else started it), else []."""
            if self.by.get(gid, who) != who:
                return []
            self.by[gid] = who
            return [self.args[gid]]

        def pop(self, among: list[int]) -> tuple[int, list] | None:
            """One of ``among`` that no one started (and whose inputs are here), now the
            caller's to train; None when there is none."""
            pick = [g for g in among if g in self.args and g not in self.by]
            if not pick:
                return None
            self.by[pick[0]] = "row"
            return pick[0], [self.args[pick[0]]]

        def publish(self, gid: int, packed: bytes) -> None:
            self.done[gid] = self.ray.put(packed)  # held here: it outlives the row

        def lookup(self, gids: list[int]) -> list[list]:
            out = []
            for g in gids:
                if g in self.done:
                    out.append([self.done[g]])
                elif self.by.get(g) == "helper":
                    out.append([self.helpers[g]])
                else:
                    out.append([])
            return out

        def helper_tasks(self) -> list[list]:
            return [[ref] for ref in self.helpers.values()]

        def trained(self) -> int:
            return len(self.place)

    return BankRegistry


class _BankClient:
    """A row task's ``_bank_many``: hits from the bank; the misses from the registry's groups,
    training any group no one has started before waiting for one that someone is training."""

    def __init__(self, registry: Any, trainer: Any) -> None:
        self.registry, self.trainer = registry, trainer  # trainer: its packed bytes' ref

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
        registry, index = self.registry, {keys[i]: i for i in misses}
        step = min(_BANK_GROUP, audit.chunk)
        places, mine = ray.get(registry.claim.remote([keys[i] for i in misses], step))
        for n, (gid, members) in enumerate(mine):
            at = [index[k] for k in members]
            group = (
                [datasets[i] for i in at],
                [seeds[i] for i in at],
                members,
                [metas[i] for i in at],
            )
            # the first group is this row's next work: a helper for it would only start a
            # process to find it taken (a small audit then starts no other process)
            ray.get(registry.offer.remote(gid, [ray.put(pack(group))], n > 0))
        gids = list(dict.fromkeys(g for g, _ in places))
        groups: dict[int, list[Any]] = {}
        with audit._timed("training"):
            while True:
                rest = [g for g in gids if g not in groups]
                found = ray.get(registry.lookup.remote(rest))
                if all(found):  # each trained, or in training by a running task
                    break
                got = ray.get(registry.pop.remote(rest))
                if got is None:  # another row has yet to hand in its inputs
                    time.sleep(0.05)
                    continue
                gid, args = got  # no one started it: trained here
                groups[gid] = self._train(audit, args)
                packed = pack([m.to("cpu") for m in groups[gid]])
                ray.get(registry.publish.remote(gid, packed))
            groups.update(zip(rest, map(unpack, ray.get([box[0] for box in found]))))
        for i, (gid, j) in zip(misses, places):
            models[i] = audit._load(groups[gid][j])
        return models

    def _train(self, audit, args: list) -> list[Any]:
        import ray

        datasets, seeds, keys, metas = unpack(ray.get(args[0]))
        trainer = unpack(ray.get(self.trainer))
        root, threads = str(audit.bank.root), torch.get_num_threads()
        return _train_and_bank(trainer, datasets, seeds, keys, metas, root, threads)


def _row_task(audit, kind: str, side: str, client: _BankClient, threads: int) -> bytes:
    """One row of the audit (``side``: ``method`` or ``control``), by the kind's own code."""
    from .runner import _KIND_MODULES

    warm_imports()
    audit = unpack(audit)
    say = _Messages()
    audit.say = say
    audit.bank_trainer = client
    with limit_threads(threads), say:
        m_part, c_part = _KIND_MODULES[kind].compute(audit, side == "method", side == "control")
    return pack(
        {
            "part": m_part if side == "method" else c_part,
            "trained": audit.trained,  # trained here, not through the registry (the original)
            "unlearning_runs": audit.unlearning_runs,
            "timings": dict(audit.timings),
            "log": say.record(),
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
        blob.store = blob.lock = blob.say = blob.progress = None  # the driver's own
        blob.bank = OracleBank(root)
        blob.timings = {k: 0.0 for k in audit.timings}
        blob.trained = blob.unlearning_runs = 0
        trainer = _GroupTrainer(audit.factory, audit.spec, audit.device, audit.chunk, audit.workers)
        sides = [s for s, need in (("control", need_control), ("method", need_method)) if need]
        with connect(self.opts.address) as ray:
            trainer_ref = ray.put(pack(trainer))
            registry = (
                ray.remote(_registry_class())
                .options(num_cpus=0)
                .remote(self.opts.task(), [trainer_ref], root, threads)
            )
            client = _BankClient(registry, trainer_ref)
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
                replay(out["log"], audit.say)
                parts[jobs[done[0]]] = out["part"]
                audit.unlearning_runs += out["unlearning_runs"]
                audit.trained += out["trained"]
                for k, v in out["timings"].items():
                    audit.timings[k] = audit.timings.get(k, 0.0) + v
            audit.trained += ray.get(registry.trained.remote())
            # helpers whose group a row trained end at once; let them, before the registry goes
            helpers = [box[0] for box in ray.get(registry.helper_tasks.remote())]
            if helpers:
                ray.wait(helpers, num_returns=len(helpers), timeout=60)
        if errors:
            raise _as_error(errors[0])
        return parts.get("method"), parts.get("control")


def _as_error(exc: BaseException) -> BaseException:
    """The error a local audit would have raised (the task's own, when Ray kept it)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, UnlearnKitError):
        return cause
    return RuntimeError(f"audit task failed on Ray: {reason(exc)}")

"""The study store of ``unlearnkit tune``: ``OUT/tune.db`` (Optuna, SQLite), the identity
that keeps one run's studies apart from another's, and the studies read back as plain records.

Every study records the run's context (dataset, model, recipe, seed policy, replicates, sampler
seed, protocol) and its own identity (method, scenario, starting point, space). A run whose
context, or whose identity for a study the folder already holds, differs is refused before any
work, like a benchmark results folder (:mod:`unlearnkit.bench.identity`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..methods import get_method
from ..methods.base import Dist
from .identity import RunIdentityError, describe_differences, digest, spec_context
from .spec import BenchSpec, ScenarioSpec
from .tune import (
    OBJECTIVE,
    PROTOCOL_VERSION,
    TIEBREAK,
    VAL_CLASS_SHIFT,
    VAL_SPLIT_SEED_OFFSET,
    Evaluation,
    find_scenario,
)
from .tune_space import resolve_search_space, space_text, starting_point

__all__ = [
    "HEARTBEAT_S",
    "STORE_NAME",
    "StudyResult",
    "TrialRecord",
    "check_folder",
    "open_storage",
    "plain",
    "quiet_optuna",
    "read_studies",
    "retry_callback",
    "study_identity",
    "study_name",
    "tuning_context",
]

#: The study file inside ``OUT``.
STORE_NAME = "tune.db"
#: Seconds between a running trial's signs of life; a trial silent for 3 times this is dead.
HEARTBEAT_S = 10
#: How often a trial killed with its process is run again before it is given up.
MAX_RETRY = 2


@dataclasses.dataclass
class TrialRecord:
    """One stored trial: its number, state, config and scores.

    ``state`` is ``complete``, ``pruned``, ``interrupted`` (its process died or was stopped; run
    again as a later trial), ``running`` or ``waiting``.
    """

    number: int
    state: str
    config: dict[str, Any]
    evaluation: Evaluation
    default: bool = False
    duplicate_of: int | None = None
    retry_of: int | None = None


@dataclasses.dataclass
class StudyResult:
    """A stored study read back from ``tune.db``: what it searched and where it stands.

    ``stale`` marks a study whose starting point or space no longer matches the spec (it is
    left out of ``tuned.yaml``).
    """

    method: str
    scenario: str
    info: dict[str, Any]
    trials: list[TrialRecord]
    stale: bool = False

    def _of(self, state: str) -> list[TrialRecord]:
        return [t for t in self.trials if t.state == state]

    @property
    def finished(self) -> int:
        """Trials that used the budget: completed and pruned."""
        return len(self._of("complete")) + len(self._of("pruned"))

    @property
    def pruned(self) -> int:
        return len(self._of("pruned"))

    @property
    def failed(self) -> int:
        """Completed trials that diverged or raised (scored +inf)."""
        return sum(not math.isfinite(t.evaluation.mean) for t in self._of("complete"))

    @property
    def seconds(self) -> float:
        return sum(t.evaluation.seconds for t in self.trials if t.state in ("complete", "pruned"))

    @property
    def default(self) -> TrialRecord | None:
        return next((t for t in self._of("complete") if t.default), None)

    @property
    def best(self) -> TrialRecord | None:
        """The lowest Avg. Gap among completed trials; ties: the tiebreak Avg. Gap, then the
        earlier trial (trial 0 wins a full tie)."""
        done = [t for t in self._of("complete") if math.isfinite(t.evaluation.mean)]
        return min(done, key=_rank, default=None)


def _rank(t: TrialRecord) -> tuple[float, float, bool, int]:
    return (t.evaluation.mean, t.evaluation.mean_tiebreak, not t.default, t.number)


# ---------------------------------------------------------------------------------------------
# Storage and identity


@contextlib.contextmanager
def quiet_optuna() -> Iterator[Any]:
    """Optuna without its per-trial log lines and experimental-feature warnings."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield optuna
    finally:
        optuna.logging.set_verbosity(before)


def retry_callback() -> Any:
    """Optuna's callback that queues a failed trial again with the same values (renamed in
    Optuna 4.9; the older name is used where the newer one does not exist)."""
    import optuna.storages as storages

    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
    return (cls or storages.RetryFailedTrialCallback)(max_retry=MAX_RETRY)


def open_storage(out_dir: str | Path, heartbeat_s: int | None = None) -> Any:
    """The Optuna storage of ``OUT/tune.db`` (created when missing).

    Raises:
        DataError: the file is not a study store (a folder, or not an Optuna database).
    """
    import inspect

    from optuna.storages import RDBStorage

    path = Path(out_dir) / STORE_NAME
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a tuning study store; use another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {"engine_kwargs": {"connect_args": {"timeout": 60}}}
    if heartbeat_s is not None:
        # Optuna renamed the callback argument; use whichever this version has.
        params = inspect.signature(RDBStorage.__init__).parameters
        name = next(
            n for n in ("heartbeat_stale_trial_callback", "failed_trial_callback") if n in params
        )
        kw.update(heartbeat_interval=int(heartbeat_s), grace_period=3 * int(heartbeat_s))
        kw[name] = retry_callback()
    for attempt in range(3):
        try:
            with quiet_optuna():
                return _serialise_sqlite(RDBStorage(f"sqlite:///{path.resolve()}", **kw))
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy and Optuna raise many kinds here
            why = " ".join(str(exc).split())
            # two processes creating the store at once: the later one finds tables the other
            # just made, or the file locked; it opens the finished store on a second try
            if attempt < 2 and ("already exists" in why or "locked" in why):
                time.sleep(0.5 + attempt)
                continue
            raise DataError(
                f"{path} is not a tuning study store ({why[:200]}); use another --out"
            ) from None
    raise AssertionError("unreachable")


def _serialise_sqlite(storage: Any) -> Any:
    """Make every transaction on ``storage`` take SQLite's write lock when it begins.

    Optuna hands a queued trial to a process by reading it as waiting and then marking it
    running; it asks for a row lock in between, which SQLite does not have, so two processes
    sharing the file could both read "waiting" and run the same trial (trial 0 ran twice on
    two Ray workers). With ``BEGIN IMMEDIATE`` the second reader waits for the first to commit
    and then sees the trial running. New connections get the setting; the pool is emptied.
    """
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the driver's own BEGIN is replaced below

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()
    return storage


def plain(obj: Any) -> Any:
    """``obj`` as JSON would read it back (tuples become lists), for stable comparisons."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def tuning_context(spec: BenchSpec, bundle: Any, factory: Any, seeds, seed: int) -> dict:
    """What every study of one ``OUT`` shares: the benchmark's context (dataset, model,
    recipe, seed policy), the seed replicates, the sampler seed and the protocol."""
    protocol = {
        "version": PROTOCOL_VERSION,
        "val_split_seed_offset": VAL_SPLIT_SEED_OFFSET,
        "val_class_shift": VAL_CLASS_SHIFT,
        "objective": OBJECTIVE,
        "tiebreak": TIEBREAK,
    }
    ctx = spec_context(spec, bundle, factory)
    return plain({**ctx, "replicates": list(seeds), "sampler_seed": seed, "protocol": protocol})


def study_identity(
    spec: BenchSpec, sc: ScenarioSpec, method: str, space: Mapping[str, Dist] | None = None
) -> dict[str, Any]:
    """What one study searches: the method, the scenario, the starting point and the space
    (``space``: a given one, else the library's, :func:`resolve_search_space`).

    Raises:
        ConfigError: the method does not support the scenario, or a bad search space.
    """
    name = get_method(method).name
    space, source = resolve_search_space(name, space)
    preset, base, config = starting_point(spec, sc, name, space)
    definition = {k: v for k, v in dataclasses.asdict(sc).items() if k != "method_config"}
    return plain(
        {
            "method": name,
            "scenario": {"name": sc.name, "definition": definition},
            "preset": preset,
            "base": base,
            "resolved": config.to_dict(),
            "space": space_text(name, space),
            "space_source": source,
        }
    )


def study_name(method: str, scenario: str) -> str:
    return f"{method}@{scenario}"


def check_folder(storage: Any, out: Path, context: dict, identities: dict[str, dict]) -> None:
    """Refuse (before any work) a run that would mix its trials with another run's."""
    for st in storage.get_all_studies():
        stored = st.user_attrs.get("context")
        if stored is None:
            raise RunIdentityError(
                f"{out / STORE_NAME} holds a study ({st.study_name!r}) that 'unlearnkit tune' "
                "did not write; give this run another --out DIR"
            )
        if digest(stored) != digest(context):
            raise RunIdentityError(
                f"{out} holds the tuning studies of another run "
                f"({describe_differences(stored, context)}); give this run another --out DIR"
            )
        ident = identities.get(st.study_name)
        old = st.user_attrs.get("identity")
        if ident is not None and digest(old) != digest(ident):
            method, scenario = ident["method"], ident["scenario"]["name"]
            raise RunIdentityError(
                f"{out} already holds a study of {method} on scenario {scenario} from another "
                f"starting point ({describe_differences(old or {}, ident)}); give this run "
                "another --out DIR"
            )


_STATES = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "interrupted",
    "RUNNING": "running",
    "WAITING": "waiting",
}


def read_studies(
    out_dir: str | Path,
    spec: BenchSpec | None = None,
    search_spaces: Mapping[str, Mapping[str, Dist]] | None = None,
    storage: Any = None,
) -> list[StudyResult]:
    """Every study stored in ``out_dir/tune.db``; with ``spec``, in its scenario order and
    with ``stale`` set where a study's starting point or space (``search_spaces`` per method,
    else the library's) no longer matches it. ``storage``: the folder's open storage, if any."""
    path = Path(out_dir) / STORE_NAME
    if not path.is_file():
        raise DataError(f"no tuning studies at {path}; run 'unlearnkit tune --out {out_dir}'")
    with quiet_optuna() as optuna:
        storage = storage if storage is not None else open_storage(out_dir)
        results = []
        for st in storage.get_all_studies():
            ident = st.user_attrs.get("identity")
            if not ident:
                continue
            method, scenario = ident["method"], ident["scenario"]["name"]
            stale = False
            if spec is not None:
                try:
                    sc = find_scenario(spec, scenario)
                    given = (search_spaces or {}).get(method)
                    now = study_identity(spec, sc, method, given)
                    stale = digest(now) != digest(ident)
                except ConfigError:
                    stale = True
            trials = [
                TrialRecord(
                    number=t.number,
                    state=_STATES.get(t.state.name, t.state.name.lower()),
                    config=dict(t.user_attrs.get("config", {})),
                    evaluation=Evaluation.from_dict(t.user_attrs.get("evaluation", {})),
                    default=bool(t.user_attrs.get("default")),
                    duplicate_of=t.user_attrs.get("duplicate_of"),
                    retry_of=t.system_attrs.get("failed_trial"),
                )
                for t in optuna.load_study(study_name=st.study_name, storage=storage).get_trials()
            ]
            results.append(StudyResult(method, scenario, dict(st.user_attrs), trials, stale))
    order = [sc.name for sc in spec.scenarios] if spec is not None else []
    return sorted(
        results,
        key=lambda r: (
            order.index(r.scenario) if r.scenario in order else len(order),
            r.scenario,
            r.method,
        ),
    )

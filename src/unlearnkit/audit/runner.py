"""Run the strong (tier C) audits, always beside the same audit of Retrain.

>>> from unlearnkit.audit.runner import run_audit
>>> result = run_audit(method="finetune", kind="epsilon", n_models=16, out_dir="runs/audit")
>>> result["metrics"]["F"], result["retrain"]["F"]  # the method and its Retrain ceiling

Three kinds:

* ``"epsilon"`` — the NeurIPS-2023 challenge score. From one original model (replicate 0 of the
  spec) the method runs N times (unlearning seeds ``0..N-1``) and N Retrains are trained on
  ``D_r`` (seeds ``1000+k``). ``φ`` of every forget example under each model gives
  ``U_phi``/``R_phi`` ``[N, n_f]``; :func:`~unlearnkit.metrics.functional.epsilon.neurips23_score`
  gives per-example ε, the H-score ``F`` and the final score. The Retrain control scores N more
  Retrains (seeds ``2000+k``, the benchmark's Retrain′ seeds) against the same N Retrains: the
  practical ceiling at this N (scores are comparable only at equal N).
* ``"ulira"`` — U-LiRA. ``n_models`` shadow models on complementary halves of the pool P,
  ``M`` forget sets per split (default 10, fraction 0.1), ``n_models·M`` unlearning runs,
  :func:`~unlearnkit.metrics.functional.lira.ulira_score`. The Retrain control replaces each
  unlearning run by a Retrain on ``D^k \\ S^{k,m}`` (the estimation floor at this bank size).
* ``"rmia"`` — offline RMIA against Retrain. ``n_models = 2R`` reference models (the same
  complementary-pair bank as U-LiRA), population Z; ``θ_u`` and ``θ_r`` are scored on the
  positives ``D_f`` and the negatives H.

**Audit data plan** [lib], fixed by ``spec.seed_attack`` and recorded with every row:

* ``D_te`` is split (stratified, seeded) into a *TA half*, which no audit ever reads, and an
  *audit half*.
* H (held-out negatives, never trained on by θ_o) = ``D_val``; a bundle without a validation
  split gives half of the audit half instead.
* Z (the RMIA population, non-member of every model) = the rest of the audit half, capped at
  ``population`` (default 5 000) points: disjoint from P and from the TA half.
* P (the pool of the shadow/reference bank) = ``D_tr ∪ H``: pair ``j`` trains
  model ``2j`` on a seeded random half of P and model ``2j+1`` on the complement, so each point is
  IN for exactly half the models. Shadow seeds are ``5000+k``. Banks nest: the first 4 models
  of a 16-model bank are the 4 models of a 4-model bank, and U-LiRA and RMIA share them.
* U-LiRA audits every point of P; its negatives are the (point, model) pairs whose point is
  outside the model's split (``NEV``), subsampled to the number of positives. The unlearning
  run of split ``k``'s forget set ``m`` uses seed ``k·M + m``; its Retrain control seed
  ``1000 + k·M + m``. A split's unlearning task sees Z as its validation data (never P).
* RMIA's negatives are H; in ``class`` scenarios only H's points of the forgotten classes
  (like with like, as the Tier-A loss attack does).

**Attack accuracy** (epsilon) [lib]: for each forget example, the best balanced accuracy
``max_t 1 − (FPR + FNR)/2`` of a single-threshold rule that tells its N unlearned φ values
from its N retrained ones (either orientation), i.e. ``0.5 + KS/2`` with ``KS`` the two-sample
Kolmogorov–Smirnov statistic; ``attack_acc`` is its mean over forget examples. It is an
in-sample (optimistic) reading: two i.i.d. populations give more than 0.5, which is why the
Retrain control is printed beside it. (The ε-maximising rule itself is usually a tail rule
with a balanced accuracy near 0.5, so it says little about accuracy.)

Every trained model (original, Retrains, shadows, U-LiRA retrains) is cached in
``out_dir/bank`` (:class:`~unlearnkit.audit.bank.OracleBank`; keys shared with the benchmark,
so a benchmark's original and Retrains are reused), and every result is a row of kind
``"audit"`` in ``out_dir/results.db``, keyed by a content hash of everything that determines
it. The Retrain control is its own row, keyed without the method, so it is computed once and
shared by every audited method.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..api import run_unlearning
from ..bench.identity import digest, slot_of, spec_context
from ..bench.lock import RunLock
from ..bench.runner import provenance, seeds_for
from ..bench.scenarios import scenario_task
from ..bench.spec import BenchSpec, ScenarioSpec, default_spec
from ..bench.store import CellRow, ResultStore
from ..data import DataView
from ..datasets import DatasetBundle, Split, load
from ..datasets._bundle import stratified_split, tensor_digest
from ..errors import ConfigError, DataError, DegenerateScoresError
from ..methods import get_method
from ..metrics.functional.epsilon import h_score, n_bins, neurips23_score, per_example_epsilon
from ..metrics.functional.lira import Role, ulira_score
from ..metrics.functional.phi import logit_scaled_confidence
from ..metrics.functional.rmia import rmia_scores, rmia_vs_retrain, tune_offline_a
from ..metrics.functional.roc import low_fpr_report
from ..metrics.signals import compute_signals
from ..models import ModelFactory
from ..tasks import ForgetTask, forget_task
from ..training import train
from .bank import OracleBank, bank_key
from .ensemble import check_ensemble_compatible, train_ensemble, usable_cpus

__all__ = ["ALPHAS", "AUDIT_VERSION", "CI_ALPHA", "KINDS", "OPTION_DEFAULTS", "run_audit"]

log = logging.getLogger(__name__)

#: Bumped when an audit's definition changes, so stale rows are recomputed instead of reused.
AUDIT_VERSION = 1
KINDS = ("epsilon", "ulira", "rmia")
#: FPR budgets of every TPR-at-low-FPR reading.
ALPHAS = (0.01, 0.001)
#: Level of every Clopper–Pearson interval (0.05 → 95 %).
CI_ALPHA = 0.05
#: Kind-specific knobs (``options=``) and their defaults; ``None`` means "derived" (see below).
OPTION_DEFAULTS: dict[str, Any] = {
    "forget_sets": 10,  # ulira: M forget sets per split
    "forget_fraction": None,  # ulira: f (default: the scenario's fraction, else 0.1)
    "fixed_variance": None,  # ulira: default True when fewer than 32 UNL observations expected
    "population": 5000,  # rmia: at most this many population points Z
    "a": None,  # rmia: offline coefficient (default: tuned on the references; needed if R = 1)
}
_SHADOW_SEED = 5000
_MAX_EPSILON_MODELS = 1000  # retrain seeds 1000+k and Retrain′ seeds 2000+k must not overlap
_ENSEMBLE_FLOATS = 20_000_000  # bound on members x parameters trained in one ensemble chunk
_BANK_GROUP = 64  # models trained (then banked) per group


def run_audit(
    *,
    method: str,
    kind: str,
    n_models: int,
    scenario: str | None = None,
    config: dict[str, Any] | None = None,
    preset: str | None = "digits",
    spec: BenchSpec | None = None,
    out_dir: str | Path,
    echo: Callable[[str], None] | None = None,
    device: torch.device | str | None = None,
    options: dict[str, Any] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Audit ``method`` with a tier-C audit and the same audit of Retrain; store and return it.

    Args:
        method: registered method name or alias.
        kind: ``"epsilon"`` (NeurIPS-2023 ε / H-score), ``"ulira"`` or ``"rmia"``.
        n_models: N — unlearned and retrained models per side (epsilon), shadow splits
            (ulira, even) or reference models ``2R`` (rmia, even).
        scenario: name of one of the spec's scenarios (default: its first; ulira: random
            forget sets, so only a ``random`` scenario may be named, which sets the fraction).
        config: the method's config overrides, a flat dict of its fields (``--set`` values).
            Precedence: preset < the spec's ``method_config`` < the scenario's < ``config``.
        preset: a preset of the method; the default ``"digits"`` applies only when the method
            has it, any other name must exist.
        spec: the benchmark spec giving dataset, model, recipe, scenarios and seeds (default:
            the built-in digits spec).
        out_dir: run directory: ``results.db`` (rows of kind ``"audit"``) and ``bank/``.
        echo: progress callback (e.g. ``print``); default: the module logger.
        device: where to train and run (default: CPU, or where the factory builds models).
        options: kind-specific knobs, see :data:`OPTION_DEFAULTS`.
        threads: torch intra-op threads while the audit runs (the caller's setting is restored
            afterwards); default: the spec's ``threads`` (the built-in digits spec: 1; a spec
            without one leaves torch's setting). One thread suits the many small models an
            audit trains: on a busy 2-core machine, threads spinning at OpenMP barriers made the
            N = 64 digits epsilon audit take 674 s with 2 threads against 68 s with 1.

    Returns:
        A dict with ``kind``, ``method``, ``label``, ``access``, ``preset``, ``config``,
        ``scenario``, ``n_models``, ``key`` / ``control_key`` (store keys), ``metrics`` (the
        method's scalars), ``retrain`` (the Retrain control's scalars, same keys), ``record``
        / ``retrain_record`` (arrays, quantiles, provenance), ``reused`` (both rows came from
        the store), ``trained`` (models trained by this call), ``unlearning_runs``,
        ``timings`` (seconds: ``training``, ``unlearning``, ``scoring``, ``other``,
        ``total``) and ``out_dir``.

    Raises:
        ConfigError: unknown kind, method, preset, scenario, option or config key; ``n_models``
            below 2 (or odd for ulira/rmia, or 2 for rmia without ``options={"a": ...}``); a
            scenario the method does not support.
        DataError: data that cannot support the audit (e.g. no held-out points of a forgotten
            class for rmia).
    """
    t_start = time.perf_counter()
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1
    ):
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
    audit = _Audit.create(
        method=method,
        kind=kind,
        n_models=n_models,
        scenario=scenario,
        config=config,
        preset=preset,
        spec=spec,
        out_dir=out_dir,
        echo=echo,
        device=device,
        options=options,
    )
    if threads is None:
        threads = getattr(audit.spec, "threads", None)
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        result = audit.run()
    finally:
        torch.set_num_threads(previous)
        audit.close()
    total = time.perf_counter() - t_start
    t = audit.timings
    t["total"] = total
    t["other"] = max(0.0, total - t["training"] - t["unlearning"] - t["scoring"])
    result["timings"] = dict(t)
    return result


# --------------------------------------------------------------------------------------------
# Validation and set-up


def _check_args(kind: Any, n_models: Any, options: dict[str, Any] | None) -> dict[str, Any]:
    if kind not in KINDS:
        raise ConfigError(f"unknown audit kind {kind!r}; use one of {', '.join(KINDS)}")
    if isinstance(n_models, bool) or not isinstance(n_models, (int, np.integer)):
        raise ConfigError(f"the number of models must be an integer, got {n_models!r}")
    n = int(n_models)
    if n < 2:
        raise ConfigError(
            f"an audit needs at least 2 models, got {n}; use --models 16 or more "
            "(the NeurIPS challenge used 512)"
        )
    if kind in ("ulira", "rmia") and n % 2:
        raise ConfigError(
            f"{kind} trains its bank in complementary pairs, so the number of models must be "
            f"even; got {n}, use {n + 1}"
        )
    if kind == "epsilon" and n > _MAX_EPSILON_MODELS:
        raise ConfigError(
            f"epsilon audits support at most {_MAX_EPSILON_MODELS} models per side (Retrain "
            f"seeds 1000+k and Retrain′ seeds 2000+k must not overlap); got {n}"
        )
    if options is not None and not isinstance(options, dict):
        raise ConfigError("options must be a dict of audit knobs")
    unknown = sorted(set(options or {}) - set(OPTION_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown audit option(s) {unknown}; valid: {', '.join(sorted(OPTION_DEFAULTS))}"
        )
    opts = {**OPTION_DEFAULTS, **(options or {})}
    m = opts["forget_sets"]
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ConfigError(f"forget_sets (M) must be a positive integer, got {m!r}")
    f = opts["forget_fraction"]
    if f is not None and not (isinstance(f, (int, float)) and 0.0 < float(f) < 1.0):
        raise ConfigError(f"forget_fraction must lie in (0, 1), got {f!r}")
    pop = opts["population"]
    if isinstance(pop, bool) or not isinstance(pop, (int, np.integer)) or pop < 1:
        raise ConfigError(f"population must be a positive integer, got {pop!r}")
    a = opts["a"]
    if a is not None and not (isinstance(a, (int, float)) and 0.0 <= float(a) <= 1.0):
        raise ConfigError(f"the RMIA coefficient a must lie in [0, 1], got {a!r}")
    fv = opts["fixed_variance"]
    if fv is not None and not isinstance(fv, bool):
        raise ConfigError(f"fixed_variance must be true, false or unset, got {fv!r}")
    if kind == "rmia" and n == 2 and a is None:
        raise ConfigError(
            "RMIA with one reference pair (2 models) cannot tune its offline coefficient a; "
            "use --models 4 or more, or pass options={'a': 1.0}"
        )
    return opts


def _pick_scenario(spec: BenchSpec, name: str | None, kind: str) -> ScenarioSpec | None:
    if name is None:
        if kind == "ulira":
            return None
        if not spec.scenarios:
            raise ConfigError("the spec lists no scenarios; add one or pass a spec that has one")
        return spec.scenarios[0]
    for sc in spec.scenarios:
        if sc.name == name:
            if kind == "ulira" and sc.scenario != "random":
                raise ConfigError(
                    f"U-LiRA audits random forget sets drawn inside each shadow split; scenario "
                    f"{name!r} is {sc.scenario!r}. Omit --scenario or name a random scenario"
                )
            return sc
    names = ", ".join(s.name for s in spec.scenarios) or "none"
    raise ConfigError(f"unknown scenario {name!r}; the spec has: {names}")


def _jsonable(obj: Any) -> Any:
    """Numpy arrays and scalars to lists and Python numbers (the store writes JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def _quantiles(values: np.ndarray, prefix: str) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {f"{prefix}_{q}": math.nan for q in ("q50", "q90", "q99", "mean")}
    q50, q90, q99 = np.quantile(v, [0.5, 0.9, 0.99])
    return {
        f"{prefix}_q50": float(q50),
        f"{prefix}_q90": float(q90),
        f"{prefix}_q99": float(q99),
        f"{prefix}_mean": float(v.mean()),
    }


def _digest(*arrays: Any) -> str:
    return tensor_digest(*[np.asarray(a) for a in arrays])


@dataclasses.dataclass
class _Plan:
    """The audit data plan (see the module docstring): pool P, negatives H, population Z."""

    pool: DataView  # P = D_tr ∪ H, D_tr first (pool position i < n_train is train index i)
    n_train: int
    h_source: str
    z: Split
    ta_size: int
    pool_digest: str
    z_digest: str

    @property
    def h_positions(self) -> np.ndarray:
        return np.arange(self.n_train, len(self.pool))

    def describe(self) -> dict[str, Any]:
        return {
            "pool": "D_tr ∪ H",
            "n_pool": len(self.pool),
            "n_train": self.n_train,
            "H": self.h_source,
            "n_H": len(self.pool) - self.n_train,
            "Z": "D_te audit half" + (" minus H" if self.h_source != "D_val" else ""),
            "n_Z": len(self.z),
            "n_TA_reserved": self.ta_size,
            "pool_digest": self.pool_digest,
            "z_digest": self.z_digest,
        }


def _plan(bundle: DatasetBundle, seed_attack: int, population: int) -> _Plan:
    y_te = bundle.test.y.numpy()
    if bundle.val is not None and len(bundle.val):
        parts = stratified_split(y_te, {"ta": 0.5, "z": 0.5}, seed_attack)
        h = bundle.val
        h_source = "D_val"
    else:
        parts = stratified_split(y_te, {"ta": 0.5, "h": 0.25, "z": 0.25}, seed_attack)
        h = bundle.test.subset(parts["h"])
        h_source = "a quarter of D_te (the bundle has no validation split)"
    z_idx = parts["z"]
    if len(z_idx) > population:
        rng = np.random.default_rng([int(seed_attack), 3])
        z_idx = np.sort(rng.choice(z_idx, size=population, replace=False))
    if len(z_idx) == 0 or len(h) == 0:
        raise DataError(
            "the test split is too small to carve out audit negatives and a population; "
            "use a dataset with more test (or validation) samples"
        )
    z = bundle.test.subset(z_idx)
    x = torch.cat([bundle.train.x, h.x])
    y = torch.cat([bundle.train.y, h.y])
    pool = DataView("pool", x, y, augment=bundle.augment, normalization=bundle.normalization)
    return _Plan(
        pool=pool,
        n_train=len(bundle.train),
        h_source=h_source,
        z=z,
        ta_size=len(parts["ta"]),
        pool_digest=tensor_digest(x, y),
        z_digest=tensor_digest(z.x, z.y),
    )


def _split_members(n_pool: int, n_models: int, seed_attack: int) -> list[np.ndarray]:
    """Complementary pairs: model 2j on a seeded random half of the pool, 2j+1 on the rest.

    Pair ``j``'s half depends only on ``(seed_attack, j)``, so banks of different sizes nest.
    """
    out = []
    for j in range(n_models // 2):
        perm = np.random.default_rng([int(seed_attack), 1, j]).permutation(n_pool)
        half = np.sort(perm[: n_pool // 2])
        out += [half, np.setdiff1d(np.arange(n_pool), half, assume_unique=True)]
    return out


def _ks_balanced_accuracy(u: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per column, ``0.5 + KS/2``: the best single-threshold balanced accuracy (either way)."""
    n_u, n_r = u.shape[0], r.shape[0]
    out = np.empty(u.shape[1])
    for e in range(u.shape[1]):
        su, sr = np.sort(u[:, e]), np.sort(r[:, e])
        pts = np.concatenate([su, sr])
        cu = np.searchsorted(su, pts, "right") / n_u
        cr = np.searchsorted(sr, pts, "right") / n_r
        out[e] = 0.5 + 0.5 * float(np.max(np.abs(cu - cr)))
    return out


# --------------------------------------------------------------------------------------------
# The audit


@dataclasses.dataclass
class _Audit:
    """One audit call: resolved inputs, the bank, the store, counters and timers."""

    kind: str
    n: int
    opts: dict[str, Any]
    spec: BenchSpec
    mspec: Any  # the method's registry entry (MethodSpec)
    cfg: Any  # its resolved config (a BaseConfig)
    preset: str | None
    user_config: dict[str, Any]
    label: str
    sc: ScenarioSpec | None
    bundle: DatasetBundle
    factory: ModelFactory
    chunk: int  # ensemble members trained at once
    workers: int  # ensemble chunks trained at once (threads, one intra-op thread each)
    task: ForgetTask | None  # the audited forget task (epsilon, rmia)
    rep: int  # the spec's replicate whose original model is audited
    out: Path
    bank: OracleBank
    store: ResultStore
    lock: RunLock
    context: dict[str, Any]  # the folder's context (bench.identity)
    context_hash: str
    say: Callable[[str], None]
    device: torch.device | str | None
    timings: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"training": 0.0, "unlearning": 0.0, "scoring": 0.0}
    )
    trained: int = 0
    unlearning_runs: int = 0
    _plan: _Plan | None = None
    _original: nn.Module | None = None

    @classmethod
    def create(
        cls,
        *,
        method: str,
        kind: str,
        n_models: int,
        scenario: str | None,
        config: dict[str, Any] | None,
        preset: str | None,
        spec: BenchSpec | None,
        out_dir: str | Path,
        echo: Callable[[str], None] | None,
        device: torch.device | str | None,
        options: dict[str, Any] | None,
    ) -> _Audit:
        opts = _check_args(kind, n_models, options)
        n = int(n_models)
        if config is not None and not isinstance(config, dict):
            raise ConfigError("config must be a flat dict of the method's config fields")
        spec = spec if spec is not None else default_spec()
        mspec = get_method(method)
        sc = _pick_scenario(spec, scenario, kind)
        if preset is not None and preset not in mspec.presets:
            if preset != "digits":
                raise ConfigError(
                    f"method {mspec.name!r} has no preset {preset!r}; available: "
                    f"{', '.join(sorted(mspec.presets)) or 'none'}"
                )
            preset = None  # the default applies only to methods that have it
        overrides: dict[str, Any] = {}
        for name in dict.fromkeys((method, mspec.name)):
            overrides.update(spec.method_config.get(name, {}))
        if sc is not None:
            for name in dict.fromkeys((method, mspec.name)):
                overrides.update(sc.method_config.get(name, {}))
        overrides.update(config or {})
        task_scenario = "random" if kind == "ulira" else sc.scenario  # type: ignore[union-attr]
        if task_scenario not in mspec.access.scenarios:
            raise ConfigError(
                f"method {mspec.name!r} does not support scenario {task_scenario!r} "
                f"(supported: {', '.join(mspec.access.scenarios)}); pick another --scenario"
            )
        cfg = mspec.make_config(overrides, preset=preset, scenario=task_scenario)
        if kind == "ulira" and opts["forget_fraction"] is None:
            opts["forget_fraction"] = sc.fraction if sc is not None and sc.fraction else 0.1
        bundle = load(spec.dataset.name, **spec.dataset.options)
        factory = ModelFactory.for_bundle(spec.model.arch, bundle, **spec.model.options)
        probe = factory(0)  # fails early on bad model options
        n_params = sum(p.numel() for p in probe.parameters())
        out = Path(out_dir)
        context = spec_context(spec, bundle, factory)
        lock = RunLock(out, "audit").__enter__()  # one writer per folder; released by close()
        store = None
        try:
            store = ResultStore(out / "results.db")
            ctx_hash = store.admit(context, {})  # another run's folder: refused before any work
            task = None
            if sc is not None and kind != "ulira":
                task = scenario_task(
                    spec, sc, bundle, factory=factory, cache_dir=out / "bank", device=device
                )
        except BaseException:
            if store is not None:
                store.close()
            lock.__exit__(None, None, None)
            raise
        say = echo or (lambda msg: log.info(msg))
        label = mspec.name
        if config:
            label += "[" + ",".join(f"{k}={v}" for k, v in sorted(config.items())) + "]"
        return cls(
            kind=kind,
            n=n,
            opts=opts,
            spec=spec,
            mspec=mspec,
            cfg=cfg,
            preset=preset,
            user_config=dict(config or {}),
            label=label,
            sc=sc,
            bundle=bundle,
            factory=factory,
            chunk=max(1, _ENSEMBLE_FLOATS // max(1, n_params)),
            workers=usable_cpus() if torch.device(device or "cpu").type == "cpu" else 1,
            task=task,
            rep=spec.seeds[0] if spec.seeds else 0,
            out=out,
            bank=OracleBank(out / "bank"),
            store=store,
            lock=lock,
            context=context,
            context_hash=ctx_hash,
            say=say,
            device=device,
        )

    def close(self) -> None:
        """Close the store and release the folder."""
        try:
            self.store.close()
        finally:
            self.lock.__exit__(None, None, None)

    # -- small helpers -----------------------------------------------------------------------

    @contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[what] += time.perf_counter() - t0

    @property
    def scenario_name(self) -> str:
        if self.kind == "ulira":
            return f"random f={self.opts['forget_fraction']:g} (U-LiRA forget sets)"
        return self.sc.name

    @property
    def plan(self) -> _Plan:
        if self._plan is None:
            self._plan = _plan(self.bundle, self.spec.seed_attack, int(self.opts["population"]))
        return self._plan

    def _base_key(self) -> dict[str, Any]:
        return {
            "audit": self.kind,
            "version": AUDIT_VERSION,
            "dataset": self.bundle.fingerprint,
            "arch": self.factory.describe(),
            "recipe": self.spec.recipe.hash,
            "n_models": self.n,
            "scenario": self.scenario_name,
            "alphas": list(ALPHAS),
            "ci_alpha": CI_ALPHA,
        }

    def _record_base(self) -> dict[str, Any]:
        return {
            "audit": self.kind,
            "n_models": self.n,
            "scenario": self.scenario_name,
            "task": self.task.describe() if self.task is not None else None,
            "recipe": self.spec.recipe.to_dict(),
            "recipe_hash": self.spec.recipe.hash,
            "arch": self.factory.describe(),
            "spec": self.spec.name,
            "seed_attack": self.spec.seed_attack,
            "ci_level": 1.0 - CI_ALPHA,
            "alphas": list(ALPHAS),
            "provenance": provenance(),
        }

    def _model_key(self, role: str, seed: int) -> str:
        # The benchmark runner's key (bench.runner._Refs), so its models are shared.
        return bank_key(
            role=role,
            dataset=self.bundle.fingerprint,
            task=None if role == "original" else self.task.id,
            arch=self.factory.describe(),
            recipe=self.spec.recipe.hash,
            seed=seed,
        )

    def _load(self, model: nn.Module) -> nn.Module:
        return model.to(self.device) if self.device is not None else model

    def _train_many(self, datasets: list[DataView], seeds: list[int]) -> list[nn.Module]:
        """Train one model per (data, seed): stacked with train_ensemble when the model allows."""
        if not datasets:
            return []
        with self._timed("training"):
            try:
                check_ensemble_compatible([self.factory(seeds[0])], datasets[0].x[:2], seeds[0])
                stacked = True
            except ConfigError as exc:
                log.info("training one at a time: %s", exc)
                stacked = False
            if stacked:
                models = train_ensemble(
                    self.factory,
                    datasets,
                    self.spec.recipe,
                    seeds,
                    device=self.device,
                    chunk_size=self.chunk,
                    workers=self.workers,
                )
            else:
                models = [
                    train(self.factory(s), d, self.spec.recipe, seed=s, device=self.device)
                    for d, s in zip(datasets, seeds)
                ]
        self.trained += len(models)
        return models

    def _bank_many(
        self, keys: list[str], datasets: list[DataView], seeds: list[int], metas: list[dict]
    ) -> list[nn.Module]:
        """Models from the bank; the missing ones are trained together and stored."""
        models: list[nn.Module | None] = [None] * len(keys)
        misses = []
        for i, key in enumerate(keys):
            got = self.bank.get(key, lambda: self.factory(0))
            if got is None:
                misses.append(i)
            else:
                models[i] = self._load(got[0])
        if misses:
            self.say(f"  training {len(misses)} of {len(keys)} {metas[misses[0]]['role']} models")
        # In groups, each banked before the next starts: an interrupted audit keeps its work.
        step = min(_BANK_GROUP, self.chunk)
        for start in range(0, len(misses), step):
            group = misses[start : start + step]
            trained = self._train_many([datasets[i] for i in group], [seeds[i] for i in group])
            for i, model in zip(group, trained):
                self.bank.put(keys[i], model, metas[i])
                models[i] = model
        return models  # type: ignore[return-value]

    def original(self) -> nn.Module:
        if self._original is None:
            seed = seeds_for(self.rep)["seed_train"]

            def fit() -> tuple[nn.Module, dict[str, Any]]:
                self.say(f"  training the original model (seed {seed})")
                with self._timed("training"):
                    m = train(
                        self.factory(seed),
                        self.bundle.train,
                        self.spec.recipe,
                        seed=seed,
                        device=self.device,
                    )
                self.trained += 1
                return m, {"role": "original", "seed": seed}

            model, _, _ = self.bank.get_or_train(
                self._model_key("original", seed), lambda: self.factory(0), fit
            )
            self._original = self._load(model)
        return self._original

    def retrains(self, role: str, seeds: list[int]) -> list[nn.Module]:
        """Retrains of the audited task's ``D_r`` (roles ``retrain`` / ``retrain_prime``)."""
        keys = [self._model_key(role, s) for s in seeds]
        metas = [{"role": role, "seed": s} for s in seeds]
        return self._bank_many(keys, [self.task.retain] * len(seeds), seeds, metas)

    def shadows(self, members: list[np.ndarray]) -> list[nn.Module]:
        plan = self.plan
        seeds = [_SHADOW_SEED + k for k in range(len(members))]
        keys = [
            bank_key(
                role="shadow",
                dataset=self.bundle.fingerprint,
                pool=plan.pool_digest,
                members=_digest(idx),
                arch=self.factory.describe(),
                recipe=self.spec.recipe.hash,
                seed=s,
            )
            for idx, s in zip(members, seeds)
        ]
        metas = [{"role": "shadow", "seed": s, "split": k} for k, s in enumerate(seeds)]
        data = [plan.pool.subset(idx) for idx in members]
        return self._bank_many(keys, data, seeds, metas)

    def unlearn(self, model: nn.Module, task: ForgetTask, seed: int) -> tuple[nn.Module, Any]:
        if self.unlearning_runs and self.unlearning_runs % 16 == 0:
            self.say(f"    {self.unlearning_runs} unlearning runs done")
        with self._timed("unlearning"):
            outcome = run_unlearning(
                model,
                task,
                self.mspec.name,
                self.cfg,
                seed=seed,
                recipe=self.spec.recipe,
                model_factory=self.factory,
                device=self.device,
            )
        self.unlearning_runs += 1
        return outcome.model, outcome

    def logits(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        with self._timed("scoring"):
            return compute_signals(model, x, y, device=self.device)

    # -- rows ----------------------------------------------------------------------------------

    CONTROL_LABEL = "Retrain (control)"

    def _identity(self, control: bool) -> tuple[str, dict[str, Any]]:
        """The table slot and identity of the method's row or the control's (bench.identity)."""
        label = self.CONTROL_LABEL if control else self.label
        slot = slot_of(f"audit:{self.kind}:N={self.n}", self.scenario_name, label)
        ident: dict[str, Any] = {
            "kind": "audit",
            "audit": self.kind,
            "n_models": self.n,
            "scenario": self.scenario_name,
            "task": self.task.id if self.task is not None else None,
            "options": self.opts,
            "threads": torch.get_num_threads(),
            "version": AUDIT_VERSION,
        }
        if control:
            ident["method"] = "retrain"
        else:
            ident.update(method=self.mspec.name, preset=self.preset, config=self.cfg.to_dict())
        return slot, ident

    def _row(self, control: bool, key: str, metrics: dict, record: dict) -> CellRow:
        slot, ident = self._identity(control)
        return CellRow(
            key,
            "audit",
            self.scenario_name,
            self.CONTROL_LABEL if control else self.label,
            "retrain" if control else self.mspec.name,
            (get_method("retrain").access if control else self.mspec.access_for(self.cfg)).label,
            self.rep,
            metrics,
            _jsonable(record),
            slot=slot,
            context=self.context_hash,
            identity=digest(ident),
        )

    def _put(self, control: bool, key: str, metrics: dict, record: dict) -> None:
        self.store.put(
            self._row(control, key, metrics, record), identity=self._identity(control)[1]
        )

    def _find(self, key: str) -> CellRow | None:
        if not self.store.has(key):
            return None
        for row in self.store.rows("audit"):
            if row.key == key:
                return row
        return None  # pragma: no cover - has() said it exists

    def run(self) -> dict[str, Any]:
        base = self._base_key()
        kind_parts = self._kind_key_parts()
        control_key = bank_key(**base, **kind_parts, control="retrain")
        key = bank_key(
            **base,
            **kind_parts,
            method=self.mspec.name,
            config=self.cfg.to_dict(),
            control_key=control_key,
        )
        self.store.admit(self.context, dict(self._identity(c) for c in (False, True)))
        self.store.begin(self.context)
        row, crow = self._find(key), self._find(control_key)
        if row is None or crow is None:
            self.say(
                f"{self.kind} audit of {self.label} with N = {self.n} "
                f"({'the method' if row is None else ''}"
                f"{' and ' if row is None and crow is None else ''}"
                f"{'the Retrain control' if crow is None else ''} to compute)"
            )
            compute = {"epsilon": self._epsilon, "ulira": self._ulira, "rmia": self._rmia}
            m_part, c_part = compute[self.kind](row is None, crow is None)
            if crow is None:
                c_metrics, c_record = c_part
                c_record = {**self._record_base(), **c_record}
                self._put(True, control_key, c_metrics, c_record)
                crow = self._find(control_key)  # as stored (JSON round trip), like a reuse
            if row is None:
                m_metrics, m_record = m_part
                m_record = {
                    **self._record_base(),
                    "method": self.mspec.name,
                    "preset": self.preset,
                    "config": self.cfg.to_dict(),
                    "config_overrides": self.user_config,
                    "access": self.mspec.access_for(self.cfg).label,
                    "control_key": control_key,
                    **m_record,
                }
                self._put(False, key, m_metrics, m_record)
                row = self._find(key)
            reused = False
        else:
            self.say(f"{self.kind} audit of {self.label} (N = {self.n}) found in the store")
            reused = True
        return {
            "kind": self.kind,
            "method": self.mspec.name,
            "label": self.label,
            "access": self.mspec.access_for(self.cfg).label,
            "preset": self.preset,
            "config": self.cfg.to_dict(),
            "scenario": self.scenario_name,
            "n_models": self.n,
            "key": key,
            "control_key": control_key,
            "metrics": dict(row.metrics),
            "retrain": dict(crow.metrics),
            "record": row.record,
            "retrain_record": crow.record,
            "reused": reused,
            "trained": self.trained,
            "unlearning_runs": self.unlearning_runs,
            "out_dir": str(self.out),
        }

    def _kind_key_parts(self) -> dict[str, Any]:
        if self.kind == "epsilon":
            return {
                "task": self.task.id,
                "original_seed": seeds_for(self.rep)["seed_train"],
                "seeds": "unlearn k, retrain 1000+k, retrain' 2000+k",
            }
        plan = self.plan
        parts = {
            "pool": plan.pool_digest,
            "z": plan.z_digest,
            "seed_attack": self.spec.seed_attack,
            "shadow_seed": _SHADOW_SEED,
        }
        if self.kind == "ulira":
            parts.update(
                forget_sets=int(self.opts["forget_sets"]),
                forget_fraction=float(self.opts["forget_fraction"]),
                fixed_variance=self.opts["fixed_variance"],
            )
        else:
            parts.update(
                task=self.task.id,
                negatives=_digest(self._rmia_negatives()),
                a=self.opts["a"],
                replicate=self.rep,
            )
        return parts

    # -- epsilon ---------------------------------------------------------------------------------

    def _eval_eps(self, model: nn.Module) -> tuple[np.ndarray, float, float]:
        """φ of the forget examples, RA and TA of one model."""
        task = self.task
        f = self.logits(model, task.forget.x, task.forget.y)
        r = self.logits(model, task.retain.x, task.retain.y)
        t = self.logits(model, task.test.x, task.test.y)
        with self._timed("scoring"):
            phi = logit_scaled_confidence(f.logits, f.labels)
        return phi, float(r.corr.mean()), float(t.corr.mean())

    def _eval_all(self, models: list[nn.Module]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = [self._eval_eps(m) for m in models]
        return (
            np.stack([r[0] for r in rows]),
            np.array([r[1] for r in rows]),
            np.array([r[2] for r in rows]),
        )

    def _epsilon(self, need_method: bool, need_control: bool):
        n = self.n
        retrain_seeds = [seeds_for(k)["seed_retrain"] for k in range(n)]
        r_phi, ra_r, ta_r = self._eval_all(self.retrains("retrain", retrain_seeds))
        m_part = c_part = None
        if need_control:
            prime_seeds = [seeds_for(k)["seed_retrain_prime"] for k in range(n)]
            p_phi, ra_p, ta_p = self._eval_all(self.retrains("retrain_prime", prime_seeds))
            c_part = self._epsilon_part(p_phi, r_phi, ra_p, ra_r, ta_p, ta_r)
            c_part[1].update(seeds={"retrain": "1000+k", "retrain_prime (scored)": "2000+k"})
        if need_method:
            orig = self.original()
            self.say(f"  {n} unlearning runs of {self.label}")
            phis, ras, tas, rtes, diverged = [], [], [], [], 0
            for k in range(n):
                model, outcome = self.unlearn(orig, self.task, k)
                phi, ra, ta = self._eval_eps(model)
                phis.append(phi)
                ras.append(ra)
                tas.append(ta)
                rtes.append(outcome.rte_seconds)
                diverged += int(outcome.diverged)
            u_phi = np.stack(phis)
            metrics, record = self._epsilon_part(u_phi, r_phi, ras, ra_r, tas, ta_r)
            metrics.update(rte_mean=float(np.mean(rtes)), n_diverged=float(diverged))
            record.update(
                rte_seconds=rtes,
                seeds={
                    "original": seeds_for(self.rep)["seed_train"],
                    "unlearn": "k = 0..N-1",
                    "retrain": "1000+k",
                },
            )
            m_part = (metrics, record)
        return m_part, c_part

    def _epsilon_part(self, u_phi, r_phi, ra_u, ra_r, ta_u, ta_r) -> tuple[dict, dict]:
        with self._timed("scoring"):
            res = _neurips_tolerant(u_phi, r_phi, ra_u, ra_r, ta_u, ta_r)
            acc = _ks_balanced_accuracy(u_phi, r_phi)
        eps = res["eps"]
        families = res["diagnostics"]["family"]
        fam, counts = np.unique(np.asarray(families, dtype=str), return_counts=True)
        metrics = {
            "F": float(res["F"]),
            "final": float(res["final"]),
            **_quantiles(eps, "eps"),
            "attack_acc": float(acc.mean()),
            "attack_acc_q90": float(np.quantile(acc, 0.9)),
            "ra_mean": float(np.mean(ra_u)),
            "ta_mean": float(np.mean(ta_u)),
            "ra_ratio": float(res["ra_ratio"]),
            "ta_ratio": float(res["ta_ratio"]),
            "n_models": float(self.n),
            "n_examples": float(eps.size),
            "n_bins": float(res["n_bins"]),
            "n_valve": float(np.sum(res["diagnostics"]["valve"])),
            "n_degenerate": float(res["n_degenerate"]),
        }
        record = {
            "eps": eps,
            "H": res["H"],
            "attack_acc_per_example": acc,
            "winning_family": dict(zip(fam.tolist(), counts.tolist())),
            "forget_idx": self.task.forget_idx,
            "ra": np.asarray(ra_u, dtype=float),
            "ta": np.asarray(ta_u, dtype=float),
            "ra_reference": np.asarray(ra_r, dtype=float),
            "ta_reference": np.asarray(ta_r, dtype=float),
            "attack_acc_definition": (
                "mean over forget examples of max_t 1-(FPR+FNR)/2 of a single-threshold rule "
                "separating the N unlearned from the N retrained phi values (0.5 + KS/2)"
            ),
            "negatives": f"{self.n} retrained models per forget example",
        }
        return metrics, record

    # -- U-LiRA ----------------------------------------------------------------------------------

    def _split_bundle(self, k: int, members: np.ndarray) -> DatasetBundle:
        """Split ``k``'s training half of the pool as a bundle; Z serves as its validation."""
        plan = self.plan
        idx = torch.as_tensor(members)
        return dataclasses.replace(
            self.bundle,
            name=f"{self.bundle.name}/pool-split{k}",
            train=Split(plan.pool.x[idx], plan.pool.y[idx]),
            val=plan.z,
            split_info={"audit_split": k, "pool": plan.pool_digest},
        )

    def _split_task(self, sub: DatasetBundle, k: int, m: int) -> ForgetTask:
        """Forget set ``S^{k,m}``: a uniformly random fraction f of split ``k``."""
        seq = np.random.SeedSequence([int(self.spec.seed_attack), 2, k, m])
        seed = int(seq.generate_state(1)[0])
        return forget_task(sub, "random", fraction=float(self.opts["forget_fraction"]), seed=seed)

    def _ulira(self, need_method: bool, need_control: bool):
        plan = self.plan
        n_pool = len(plan.pool)
        n_sh, m_sets = self.n, int(self.opts["forget_sets"])
        f = float(self.opts["forget_fraction"])
        members = _split_members(n_pool, n_sh, self.spec.seed_attack)
        tasks, roles, groups = [], [], []
        for k, idx in enumerate(members):
            sub = self._split_bundle(k, idx)
            for m in range(m_sets):
                t = self._split_task(sub, k, m)
                role = np.full(n_pool, Role.NEITHER, dtype=np.int8)
                role[np.setdiff1d(np.arange(n_pool), idx, assume_unique=True)] = Role.NEV
                role[idx[t.forget_idx]] = Role.UNL
                tasks.append((k, m, t))
                roles.append(role)
                groups.append(k)
        role_mat, group = np.stack(roles), np.array(groups)
        expected_unl = (n_sh - 1) * m_sets * f / 2
        fv = self.opts["fixed_variance"]
        fixed = bool(expected_unl < 32) if fv is None else fv
        px, py = plan.pool.x, plan.pool.y
        common = {
            "pool": plan.describe(),
            "forget_sets": m_sets,
            "forget_fraction": f,
            "fixed_variance": fixed,
            "expected_unl_per_example": expected_unl,
            "negatives": "(x, model) pairs with x outside the model's split (NEV), subsampled "
            "to the number of positives",
        }

        def phi_of(model: nn.Module) -> np.ndarray:
            s = self.logits(model, px, py)
            with self._timed("scoring"):
                return logit_scaled_confidence(s.logits, s.labels)

        def score(phi: np.ndarray) -> tuple[dict, dict]:
            with self._timed("scoring"):
                res = ulira_score(
                    phi,
                    role_mat,
                    group,
                    fixed_variance=fixed,
                    seed=self.spec.seed_attack,
                    alphas=ALPHAS,
                    ci_alpha=CI_ALPHA,
                )
            return _ulira_metrics(res, n_sh), {**common, **_ulira_record(res)}

        m_part = c_part = None
        if need_control:
            keys, data, seeds, metas = [], [], [], []
            for j, (k, m, t) in enumerate(tasks):
                seed = 1000 + j
                keys.append(
                    bank_key(
                        role="ulira_retrain",
                        dataset=self.bundle.fingerprint,
                        pool=plan.pool_digest,
                        members=_digest(members[k][t.retain_idx]),
                        arch=self.factory.describe(),
                        recipe=self.spec.recipe.hash,
                        seed=seed,
                    )
                )
                data.append(t.retain)
                seeds.append(seed)
                metas.append({"role": "ulira_retrain", "seed": seed, "split": k, "forget_set": m})
            phi_r = np.stack([phi_of(mod) for mod in self._bank_many(keys, data, seeds, metas)])
            c_part = score(phi_r)
            c_part[1]["seeds"] = {"retrain of split k, forget set m": "1000 + k*M + m"}
        if need_method:
            shadows = self.shadows(members)
            self.say(f"  {len(tasks)} unlearning runs of {self.label}")
            phis, diverged = [], 0
            for j, (k, _m, t) in enumerate(tasks):
                model, outcome = self.unlearn(shadows[k], t, j)
                diverged += int(outcome.diverged)
                phis.append(phi_of(model))
            metrics, record = score(np.stack(phis))
            metrics["n_diverged"] = float(diverged)
            record["seeds"] = {
                "shadow k": f"{_SHADOW_SEED}+k",
                "unlearn split k, forget set m": "k*M + m",
            }
            m_part = (metrics, record)
        return m_part, c_part

    # -- RMIA ------------------------------------------------------------------------------------

    def _rmia_negatives(self) -> np.ndarray:
        """Pool positions of the negatives H (forgotten classes only in class scenarios)."""
        plan = self.plan
        pos = plan.h_positions
        classes = self.task.forget_classes
        if classes:
            y = plan.pool.y.numpy()[pos]
            pos = pos[np.isin(y, np.asarray(classes))]
            if pos.size == 0:
                raise DataError(
                    f"no held-out point of the forgotten class(es) {list(classes)} to serve as "
                    "RMIA negatives; use a dataset with a validation split that has them"
                )
        return pos

    def _rmia(self, need_method: bool, need_control: bool):
        plan = self.plan
        members = _split_members(len(plan.pool), self.n, self.spec.seed_attack)
        refs = self.shadows(members)
        keep = np.zeros((self.n, len(plan.pool)), dtype=bool)
        for k, idx in enumerate(members):
            keep[k, idx] = True
        px, py, z = plan.pool.x, plan.pool.y, plan.z
        ref_p = np.stack([self.logits(m, px, py).conf for m in refs])
        ref_z = np.stack([self.logits(m, z.x, z.y).conf for m in refs])
        a_opt = self.opts["a"]
        with self._timed("scoring"):
            if a_opt is None:
                a, grid_auc = tune_offline_a(ref_p, keep, ref_z)
            else:
                a, grid_auc = float(a_opt), None
        pos = self.task.forget_idx  # pool positions of D_f (D_tr comes first in the pool)
        neg = self._rmia_negatives()
        x_idx = np.concatenate([pos, neg])
        is_forget = np.zeros(x_idx.size, dtype=bool)
        is_forget[: pos.size] = True
        xs, ys = px[torch.as_tensor(x_idx)], py[torch.as_tensor(x_idx)]
        ref_x, out_x = ref_p[:, x_idx], ~keep[:, x_idx]
        theta_r = self.retrains("retrain", [seeds_for(self.rep)["seed_retrain"]])[0]
        r_x, r_z = self.logits(theta_r, xs, ys).conf, self.logits(theta_r, z.x, z.y).conf
        common = {
            "pool": plan.describe(),
            "a": a,
            "a_grid_mean_auc": grid_auc,
            "n_references": self.n,
            "negatives": f"H = {plan.h_source}"
            + (" (forgotten classes only)" if self.task.forget_classes else ""),
        }
        m_part = c_part = None
        if need_method:
            model, outcome = self.unlearn(
                self.original(), self.task, seeds_for(self.rep)["seed_unlearn"]
            )
            u_x, u_z = self.logits(model, xs, ys).conf, self.logits(model, z.x, z.y).conf
            with self._timed("scoring"):
                res = rmia_vs_retrain(
                    u_x, r_x, ref_x, out_x, is_forget, u_z, r_z, ref_z, a, alphas=ALPHAS
                )
            metrics = _roc_metrics(res["report_u"], self.n)
            metrics.update(a=a, delta_auc=float(res["delta_auc"]))
            for al in ALPHAS:
                metrics[f"delta_tpr_at_fpr_{al:g}"] = float(res[f"delta_tpr_at_fpr_{al:g}"])
            metrics["diverged"] = float(outcome.diverged)
            m_part = (
                metrics,
                {
                    **common,
                    "roc": _roc_record(res["report_u"]),
                    "seeds": {
                        "original": seeds_for(self.rep)["seed_train"],
                        "unlearn": seeds_for(self.rep)["seed_unlearn"],
                        "references": f"{_SHADOW_SEED}+k",
                    },
                },
            )
            report_r = res["report_r"]
        elif need_control:
            with self._timed("scoring"):
                s_r = rmia_scores(r_x, ref_x, out_x, r_z, ref_z, a)
                report_r = low_fpr_report(
                    s_r[is_forget], s_r[~is_forget], ALPHAS, ci_alpha=CI_ALPHA
                )
        if need_control:
            c_metrics = _roc_metrics(report_r, self.n)
            c_metrics["a"] = a
            c_part = (
                c_metrics,
                {
                    **common,
                    "roc": _roc_record(report_r),
                    "seeds": {"retrain": seeds_for(self.rep)["seed_retrain"]},
                },
            )
        return m_part, c_part


# --------------------------------------------------------------------------------------------
# Scoring helpers


def _neurips_tolerant(u_phi, r_phi, ra_u, ra_r, ta_u, ta_r) -> dict[str, Any]:
    """``neurips23_score``; an example with no surviving rule gets ε = 0 and is counted.

    Both φ populations constant and equal (the only way no rule survives) means the two sides
    are indistinguishable for that example, so ε = 0 [lib]; the reference fails an assertion.
    """
    try:
        res = neurips23_score(u_phi, r_phi, ra_u, ra_r, ta_u, ta_r)
        res["n_degenerate"] = 0
        return res
    except DegenerateScoresError:
        pass
    n = u_phi.shape[0]
    eps = np.empty(u_phi.shape[1])
    diags = []
    for e in range(u_phi.shape[1]):
        try:
            eps[e], d = per_example_epsilon(u_phi[:, e], r_phi[:, e])
        except DegenerateScoresError:
            eps[e], d = 0.0, {"family": "degenerate", "valve": False}
        diags.append(d)
    h = h_score(eps, n)
    f = sum(float(x) for x in h) / eps.size
    ra_ratio = float(np.mean(ra_u)) / float(np.mean(ra_r))
    ta_ratio = float(np.mean(ta_u)) / float(np.mean(ta_r))
    return {
        "F": f,
        "final": f * ra_ratio * ta_ratio,
        "eps": eps,
        "H": h,
        "n_bins": n_bins(n),
        "ra_ratio": ra_ratio,
        "ta_ratio": ta_ratio,
        "diagnostics": {
            "family": np.array([d["family"] for d in diags]),
            "valve": np.array([bool(d.get("valve", False)) for d in diags]),
        },
        "n_degenerate": int(sum(d["family"] == "degenerate" for d in diags)),
    }


def _ci_metrics(prefix: str, ci: tuple[float, float]) -> dict[str, float]:
    return {f"{prefix}_ci_lo": float(ci[0]), f"{prefix}_ci_hi": float(ci[1])}


def _ulira_metrics(res: dict[str, Any], n_models: int) -> dict[str, float]:
    out = {
        "ulira_acc": float(res["ulira_acc"]),
        **_ci_metrics("ulira_acc", res["ulira_acc_ci"]),
        "auc": float(res["auc"]),
    }
    for al in ALPHAS:
        key = f"tpr_at_fpr_{al:g}"
        out[key] = float(res[key])
        out.update(_ci_metrics(key, res[f"{key}_ci"]))
    out.update(
        underpowered=float(res["underpowered"]),
        vulnerability_q50=float(res["vulnerability_q50"]),
        vulnerability_q90=float(res["vulnerability_q90"]),
        vulnerability_q99=float(res["vulnerability_q99"]),
        n_pos=float(res["n_pos"]),
        n_neg=float(res["n_neg"]),
        n_skipped=float(res["n_skipped"]),
        n_models=float(n_models),
    )
    return out


def _ulira_record(res: dict[str, Any]) -> dict[str, Any]:
    counts, edges = res["vulnerability_hist"]
    return {
        "vulnerability": res["vulnerability"],
        "vulnerability_hist": {"counts": counts, "edges": edges},
        "roc": _roc_record(res["roc_report"]),
        "n_targets": res["n_targets"],
    }


def _roc_metrics(report: dict[str, Any], n_models: int) -> dict[str, float]:
    out = {
        "auc": float(report["auc"]),
        "balanced_acc": float(report["balanced_acc"]),
        "tpr_at_fpr_0": float(report["tpr_at_fpr_0"]),
    }
    for lv in report["levels"]:
        key = f"tpr_at_fpr_{lv['alpha']:g}"
        out[key] = float(lv["tpr"])
        out.update(_ci_metrics(key, lv["tpr_ci"]))
        out[f"fpr_at_{lv['alpha']:g}"] = float(lv["fpr"])
    out.update(
        underpowered=float(report["underpowered"]),
        n_pos=float(report["n_pos"]),
        n_neg=float(report["n_neg"]),
        n_models=float(n_models),
    )
    return out


def _roc_record(report: dict[str, Any]) -> dict[str, Any]:
    return {
        k: report[k]
        for k in ("n_pos", "n_neg", "auc", "balanced_acc", "tpr_at_fpr_0", "underpowered", "levels")
    }

"""One audit call's state: its resolved inputs, the models it needs and its two store rows.

:class:`_Audit` resolves the method, config, scenario, dataset and model factory, takes the run
folder's lock and store, and gives the audit kinds their models: the original, Retrains,
shadow/reference models (all cached in the oracle bank, missing ones trained many at once, or
one at a time when the data are read from disk) and unlearning runs, with counters and timers.
It also builds the store rows of the method and of its Retrain control.
"""

from __future__ import annotations

import dataclasses
import logging
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
from ..bench.refs import original_from_checkpoint
from ..bench.runner import provenance, seeds_for
from ..bench.scenarios import scenario_task
from ..bench.spec import BenchSpec, ScenarioSpec, default_spec
from ..bench.store import CellRow, ResultStore
from ..data import DataView
from ..datasets import DatasetBundle, load
from ..errors import ConfigError
from ..methods import get_method
from ..metrics.signals import compute_signals
from ..models.user import CheckpointFactory
from ..tasks import ForgetTask
from ..training import train
from .bank import OracleBank, bank_key
from .ensemble import (
    check_ensemble_compatible,
    check_in_memory,
    train_ensemble,
    usable_cpus,
)
from .plan import (
    _SHADOW_SEED,
    ALPHAS,
    AUDIT_VERSION,
    CI_ALPHA,
    _check_args,
    _digest,
    _pick_scenario,
    _Plan,
    _plan,
)
from .readouts import _jsonable

# Progress and notes are logged under the runner's name, the audit's entry point.
log = logging.getLogger("unlearnkit.audit.runner")

#: One side's result (the method's or the Retrain control's): row metrics and its record.
Part = tuple[dict[str, Any], dict[str, Any]]

_ENSEMBLE_FLOATS = 20_000_000  # bound on members x parameters trained in one ensemble chunk
_BANK_GROUP = 64  # models trained (then banked) per group


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
    factory: Callable[[int], nn.Module]  # seed -> fresh model (bench.spec.ModelSpec.factory_for)
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
    #: trains missing bank models elsewhere, e.g. on Ray (:mod:`unlearnkit.audit.ray_backend`)
    bank_trainer: Callable[..., list[nn.Module]] | None = None
    #: the command's display (:class:`unlearnkit.progress.Progress`): one unit per model the
    #: audit needs, counted as it is trained, found in the bank, or unlearned
    progress: Any = None
    model_given: bool = False  # built by a model_factory= rather than the spec's model

    def tick(self, n: int = 1, status: str = "") -> None:
        """``n`` more models of the audit's plan are ready."""
        if self.progress is not None and n:
            self.progress.update(n, status=status or None)

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
        model_factory: Callable[[int], nn.Module] | None = None,
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
        factory = spec.model.factory_for(bundle, model_factory)  # fails early on a bad model
        probe = factory(0)
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
        # The benchmark runner's key (bench.refs._Refs), so its models are shared.
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
                for d in datasets:
                    check_in_memory(d.x)
                check_ensemble_compatible([self.factory(seeds[0])], datasets[0].x[:2], seeds[0])
                # the stacked trainer runs in fp32 only: mixed precision trains one at a time
                stacked = self.spec.recipe.precision == "fp32"
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
        role = metas[0]["role"] if metas else ""
        if self.bank_trainer is not None:
            got_all = self.bank_trainer(self, keys, datasets, seeds, metas)
            self.tick(len(keys), f"{role} models")
            return got_all
        models: list[nn.Module | None] = [None] * len(keys)
        misses = []
        for i, key in enumerate(keys):
            got = self.bank.get(key, lambda: self.factory(0))
            if got is None:
                misses.append(i)
            else:
                models[i] = self._load(got[0])
        self.tick(len(keys) - len(misses), f"{role} models (from the bank)")
        if misses:
            self.say(f"  training {len(misses)} of {len(keys)} {role} models")
        # In groups, each banked before the next starts: an interrupted audit keeps its work.
        step = min(_BANK_GROUP, self.chunk)
        for start in range(0, len(misses), step):
            group = misses[start : start + step]
            trained = self._train_many([datasets[i] for i in group], [seeds[i] for i in group])
            for i, model in zip(group, trained):
                self.bank.put(keys[i], model, metas[i])
                models[i] = model
            self.tick(len(group), f"training {role} models")
        return models  # type: ignore[return-value]

    def original(self) -> nn.Module:
        if self._original is None:
            self._original = self._load(self._find_original())
            self.tick(1, "the original model")
        return self._original

    def _find_original(self) -> nn.Module:
        """The audited original: from the user's checkpoint, the bank, or trained (banked)."""
        if isinstance(self.factory, CheckpointFactory):
            return original_from_checkpoint(self.factory, self.bundle.fingerprint, self.bank)[0]
        seed = seeds_for(self.rep)["seed_train"]

        def fit() -> tuple[nn.Module, dict[str, Any]]:
            self.say(f"  training the original model (seed {seed})")
            with self._timed("training"):
                m = train(
                    self.factory(seed), self.bundle.train, self.spec.recipe, seed=seed,
                    device=self.device,
                )  # fmt: skip
            self.trained += 1
            return m, {"role": "original", "seed": seed}

        model, _, _ = self.bank.get_or_train(
            self._model_key("original", seed), lambda: self.factory(0), fit
        )
        return model

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
        self.tick(1, f"unlearning run {self.unlearning_runs} of {self.label}")
        return outcome.model, outcome

    def logits(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        with self._timed("scoring"):
            return compute_signals(model, x, y, device=self.device)

    def pool_key_parts(self) -> dict[str, Any]:
        """Store-key parts of the shadow/reference bank's data plan (U-LiRA and RMIA)."""
        plan = self.plan
        return {
            "pool": plan.pool_digest,
            "z": plan.z_digest,
            "seed_attack": self.spec.seed_attack,
            "shadow_seed": _SHADOW_SEED,
        }

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

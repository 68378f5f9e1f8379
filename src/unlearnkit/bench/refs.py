"""The reference models of one benchmark replicate, trained once and cached.

A (scenario, replicate) needs the original model θ_o, Retrain θ_r and a second Retrain θ_r′
(the noise floor), their signals and tier A metrics; :class:`_Refs` builds each at first need
(through the oracle bank, so runs share them) and keeps it for every cell of the replicate.
The seed policy (:func:`seeds_for`) and the checkpoint original live here too.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..api import run_unlearning
from ..audit.bank import OracleBank, bank_key
from ..metrics.functional.distances import weight_distance
from ..metrics.relearn import anamnesis_index, mean_loss, relearn_time
from ..metrics.suite import ModelSignals, collateral, model_signals, tier_a
from ..models.user import CheckpointFactory
from ..training import train

__all__ = ["original_from_checkpoint", "seeds_for"]


def seeds_for(replicate: int) -> dict[str, int]:
    """Seed policy: one replicate varies train, retrain and unlearn seeds."""
    return {
        "seed_train": replicate,
        "seed_retrain": 1000 + replicate,
        "seed_retrain_prime": 2000 + replicate,
        "seed_unlearn": replicate,
    }


def _forget_stats(sig: ModelSignals) -> dict[str, float]:
    """Descriptive forget-set statistics: means of conf, loss, entropy."""
    f = sig.forget
    return {
        "forget_conf_mean": float(np.mean(f.conf)),
        "forget_loss_mean": float(np.mean(f.loss)),
        "forget_entropy_mean": float(np.mean(f.entropy)),
    }


def original_from_checkpoint(factory: Any, dataset: str, bank: OracleBank) -> tuple[Any, dict]:
    """The original of every replicate when the spec gives ``model.checkpoint``: the file's
    weights, put in the bank once (keyed by its SHA-256), never trained."""
    key = bank_key(role="original", dataset=dataset, arch=factory.describe())

    def load_it():
        meta = {
            "role": "original",
            "checkpoint": str(factory.path),
            "checkpoint_sha256": factory.sha256,
        }
        return factory.original(), meta

    model, meta, _ = bank.get_or_train(key, lambda: factory(0), load_it)
    return model, meta


class _Refs:
    """The trained reference models of one (scenario, replicate), loaded lazily."""

    def __init__(self, spec, task, rep, factory, bank, summary, say, device):
        self.spec, self.task, self.rep, self.factory = spec, task, rep, factory
        self.bank, self.summary, self.say, self.device = bank, summary, say, device
        self._cache: dict[str, Any] = {}

    @property
    def same_init(self) -> bool:
        """Whether Retrain starts from θ_o's initial weights (``retrain_init: same_init``)."""
        return self.spec.retrain_init == "same_init"

    def _model_key(self, role: str, seed: int) -> str:
        extra = {"init": "same_init"} if self.same_init and role != "original" else {}
        return bank_key(
            **extra,
            role=role,
            dataset=self.task.bundle.fingerprint,
            task=None if role == "original" else self.task.id,
            arch=self.factory.describe(),
            recipe=self.spec.recipe.hash,
            seed=seed,
        )

    def original(self):
        if "original" not in self._cache and isinstance(self.factory, CheckpointFactory):
            fp = self.task.bundle.fingerprint
            self._cache["original"] = original_from_checkpoint(self.factory, fp, self.bank)
        if "original" not in self._cache:
            seed = seeds_for(self.rep)["seed_train"]

            def fit():
                self.say(f"  training the original model (seed {seed})")
                t0 = time.perf_counter()
                m = train(
                    self.factory(seed),
                    self.task.bundle.train,
                    self.spec.recipe,
                    seed=seed,
                    device=self.device,
                )
                self.summary.trained += 1
                return m, {
                    "role": "original",
                    "seed": seed,
                    "train_seconds": time.perf_counter() - t0,
                }

            m, meta, _ = self.bank.get_or_train(
                self._model_key("original", seed), lambda: self.factory(0), fit
            )
            self._cache["original"] = (m, meta)
        return self._cache["original"]

    def retrain(self, which: str):
        if which not in self._cache:
            seed = seeds_for(self.rep)[
                "seed_retrain" if which == "retrain" else "seed_retrain_prime"
            ]

            def fit():
                self.say(f"  retraining without the forget set (seed {seed})")
                orig, _ = self.original()
                cache = {}
                if self.same_init:  # θ_o's initial weights: the factory at its training seed
                    init = self.factory(seeds_for(self.rep)["seed_train"]).state_dict()
                    cache["initial_state"] = init
                o = run_unlearning(
                    orig,
                    self.task,
                    "retrain",
                    {"init": self.spec.retrain_init},
                    seed=seed,
                    recipe=self.spec.recipe,
                    model_factory=self.factory,
                    cache=cache,
                    device=self.device,
                )
                self.summary.trained += 1
                return o.model, {"role": which, "seed": seed, "rte_seconds": o.rte_seconds}

            m, meta, _ = self.bank.get_or_train(
                self._model_key(which, seed), lambda: self.factory(0), fit
            )
            self._cache[which] = (m, meta)
        return self._cache[which]

    def signals(self, which: str) -> ModelSignals:
        key = f"sig:{which}"
        if key not in self._cache:
            if which == "teacher":
                model = self.factory(self.spec.zrf_teacher_seed)
            elif which == "original":
                model = self.original()[0]
            else:
                model = self.retrain(which)[0]
            self._cache[key] = model_signals(model, self.task, device=self.device)
        return self._cache[key]

    def metrics(self, which: str) -> dict[str, float]:
        key = f"m:{which}"
        if key not in self._cache:
            sig = self.signals(which)
            m = tier_a(sig, teacher=self.signals("teacher"), seed_attack=self.spec.seed_attack)
            m.update(_forget_stats(sig))
            if which != "original":
                m["rte_seconds"] = float(self.retrain(which)[1].get("rte_seconds", float("nan")))
            m.update(collateral(sig, self.signals("original")))
            model = self.original()[0] if which == "original" else self.retrain(which)[0]
            if self.spec.relearn:
                m.update(self.relearn(model))
            m.update(self.weight_distance(model))
            self._cache[key] = m
        return self._cache[key]

    def weight_distance(self, model) -> dict[str, float]:
        """``wdist_rel`` / ``wdist_l2`` to Retrain, only when Retrain shares
        θ_o's initialisation (otherwise the distance means nothing and is not reported)."""
        if not self.same_init:
            return {}
        d = weight_distance(model, self.retrain("retrain")[0], shared_init=True)
        return {"wdist_rel": float(d["wdist_rel"]), "wdist_l2": float(d["wdist_l2"])}

    def relearn(self, model) -> dict[str, float]:
        """The relearn readouts of ``model``: relearn time and AIN against Retrain."""
        orig = self.original()[0]
        if "relearn_target" not in self._cache:
            self._cache["relearn_target"] = mean_loss(orig, self.task.forget, device=self.device)
        res = relearn_time(
            model,
            self.task.train_full,
            self.task.forget,
            self._cache["relearn_target"],
            device=self.device,
        )
        out = {"relearn_steps": float(res.steps), "relearn_censored": float(res.censored)}
        out.update(
            anamnesis_index(
                model, self.retrain("retrain")[0], orig, self.task.forget, device=self.device
            )
        )
        return out

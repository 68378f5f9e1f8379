"""What an audit trains on and with which seeds: options, the audit data plan, the bank's splits.

**Audit data plan** (this library's choice), fixed by ``spec.seed_attack`` and recorded with
every row:

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

How each audit kind uses P, H and Z is described in its own module
(:mod:`~unlearnkit.audit.epsilon`, :mod:`~unlearnkit.audit.ulira`,
:mod:`~unlearnkit.audit.rmia`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..bench.spec import BenchSpec, ScenarioSpec
from ..data import DataView
from ..datasets import DatasetBundle, Split
from ..datasets._bundle import stratified_split, tensor_digest
from ..datasets._lazy import concat_rows
from ..errors import ConfigError, DataError

#: Bumped when an audit's definition changes, so stale rows are recomputed instead of reused.
AUDIT_VERSION = 1
KINDS = ("epsilon", "ulira", "rmia")
#: FPR budgets of every TPR-at-low-FPR reading.
ALPHAS = (0.01, 0.001)
#: Level of every Clopper–Pearson interval (0.05 → 95 %).
CI_ALPHA = 0.05
#: Kind-specific knobs (``options=``) and their defaults; ``None`` means derived (see comments).
OPTION_DEFAULTS: dict[str, Any] = {
    "forget_sets": 10,  # ulira: M forget sets per split
    "forget_fraction": None,  # ulira: f (default: the scenario's fraction, else 0.1)
    "fixed_variance": None,  # ulira: default True when fewer than 32 UNL observations expected
    "population": 5000,  # rmia: at most this many population points Z
    "a": None,  # rmia: offline coefficient (default: tuned on the references; needed if R = 1)
}
_SHADOW_SEED = 5000
_MAX_EPSILON_MODELS = 1000  # retrain seeds 1000+k and Retrain′ seeds 2000+k must not overlap


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
    # Disk-backed inputs (image_folder) stay on disk: the pool is a list of files, read batch
    # by batch when its models are trained and scored.
    x = concat_rows([bundle.train.x, h.x])
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

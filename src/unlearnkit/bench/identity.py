"""Run identity: what produced each stored row, and the one rule that keeps runs apart.

A results folder holds the rows of one **context**: the dataset (name, options, content
fingerprint), the model, the training recipe, the seed policy and the metric definitions. Every
table **slot** in it (a scenario and a row label of the benchmark tables, a sweep point, an audit
of one kind and size) has exactly one **identity**: the scenario's forget set (its content hash),
the method with its full resolved config and preset, the thread count and the optional readouts.
Replicates of one identity are averaged; nothing else ever is.

The rule, applied by ``bench``, ``audit`` and ``report`` alike: a run whose context, or whose
identity for a slot the folder already holds, differs from what is stored is **refused** before
anything is computed or written, with a message naming the differences and the fix (another
``--out``). Adding replicates, scenarios or methods to a folder is fine: those are new slots or
more rows of the same identity.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..errors import ConfigError

__all__ = [
    "IDENTITY_VERSION",
    "METRICS_VERSION",
    "SEED_POLICY",
    "RunIdentityError",
    "describe_differences",
    "digest",
    "slot_of",
    "spec_context",
]

#: Bumped when the meaning of an identity changes (stores of another version are refused).
IDENTITY_VERSION = 1


#: Bumped when metric definitions change: rows of another version belong to another context.
METRICS_VERSION = 4  # 2: collateral accuracy on neighbour classes; 3: SVC attack capped at 5,000;
# 4: SVC attack capped at 2,000 per side

#: How a replicate's seeds are derived (``bench.runner.seeds_for``); part of every context.
SEED_POLICY = "replicate s: train s, retrain 1000+s, retrain-prime 2000+s, unlearn s"


def spec_context(spec: Any, bundle: Any, factory: Any) -> dict[str, Any]:
    """The context of a benchmark spec: what every row of one results folder shares.

    Its ``model`` is ``factory.describe()``: a built-in architecture and its options, or a
    user's factory (import path or function name, kwargs, and a digest of the parameter names
    and shapes it builds), plus the SHA-256 of the checkpoint the original came from, if any
    (:mod:`unlearnkit.models.user`). Another model or another checkpoint is another folder.
    """
    return {
        "identity_version": IDENTITY_VERSION,
        "dataset": {
            "name": spec.dataset.name,
            "options": spec.dataset.options,
            "fingerprint": bundle.fingerprint,
        },
        "model": factory.describe(),
        "recipe": spec.recipe.to_dict(),
        "seed_policy": SEED_POLICY,
        "seed_attack": spec.seed_attack,
        "zrf_teacher_seed": spec.zrf_teacher_seed,
        "retrain_init": spec.retrain_init,
        "metrics_version": METRICS_VERSION,
    }


class RunIdentityError(ConfigError):
    """This run would mix its rows with rows of another run in one results folder."""


def digest(obj: Any) -> str:
    """Content hash of a JSON-able object (sorted keys), 20 hex digits."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def slot_of(table: str, scenario: str, label: str) -> str:
    """The table slot of a row: which table (``bench``, ``sweep``, ``audit:<kind>:N=<n>``),
    which scenario, which row label."""
    return json.dumps([table, scenario, label], ensure_ascii=False)


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _short(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def describe_differences(stored: dict[str, Any], new: dict[str, Any], limit: int = 4) -> str:
    """``"recipe.epochs 80 -> 15, threads 1 -> 2"``: the fields that differ, stored first."""
    a, b = _flatten(stored), _flatten(new)
    diffs = [
        f"{k} {_short(a.get(k, '(absent)'))} -> {_short(b.get(k, '(absent)'))}"
        for k in sorted(set(a) | set(b))
        if a.get(k, "(absent)") != b.get(k, "(absent)")
    ]
    if not diffs:
        return "(no visible difference)"
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return ", ".join(diffs[:limit]) + more

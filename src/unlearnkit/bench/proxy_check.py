"""How good is the retrain-free calibration? Its choices scored against the benchmark's Retrain.

For each scenario, seed replicate and method, three configs run on the benchmark's original
model (the same trained model the benchmark's rows use, read from the folder's model bank):

* ``default``: the method's registered defaults (what a user gets with no tuning);
* ``proxy``: the config :func:`unlearnkit.deletion.calibrate.calibrate` picks with the
  retrain-free target, reading only the training data and the ``val`` split;
* ``tuned``: the benchmark's own config (preset plus the scenario's overrides), tuned against a
  retrained model on a validation forget set.

Each is scored by Avg. Gap (the ``salun`` preset: UA, RA, TA, MIA-efficacy; test split; in
percentage points) to the real Retrain, beside the noise floor (a second Retrain's Avg. Gap)
and the original model's own gap, with the retrain-free verdict on the report half (``test``).

The result is written to ``DIR/proxy-check.json``; the report renders it as the section
"Retrain-free calibration check". A second call with the same settings on the same folder
returns the stored result.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..api import run_unlearning
from ..audit.bank import OracleBank
from ..datasets import load
from ..errors import ConfigError
from ..methods import get_method
from ..metrics.suite import evaluate
from .identity import digest, spec_context
from .lock import RunLock
from .refs import _Refs, seeds_for
from .runner import RunSummary
from .scenarios import scenario_task
from .spec import BenchSpec

__all__ = ["FILE", "KINDS", "ProxyCheck", "run_proxy_check"]

FILE = "proxy-check.json"
KINDS = ("default", "proxy", "tuned")
_VERSION = 1


class ProxyCheck(dict):
    """The stored result: ``rows`` (per scenario, seed, method and kind), ``noise_floor`` and
    ``original_gap`` per scenario (points, mean over seeds), ``settings`` and ``key``."""


def _check(methods: Sequence[str], trials: int, budget_s: float, spec: BenchSpec) -> list[str]:
    if isinstance(methods, str) or not methods:
        raise ConfigError("proxy check: methods must be a non-empty list of method names")
    names = [get_method(m).name for m in methods]
    if "retrain" in names:
        raise ConfigError("proxy check: retrain is the reference, not a method to calibrate")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"proxy check: trials must be a positive integer, got {trials!r}")
    if not (isinstance(budget_s, (int, float)) and math.isfinite(budget_s) and budget_s > 0):
        raise ConfigError(f"proxy check: budget_s must be a positive number, got {budget_s!r}")
    if not spec.scenarios:
        raise ConfigError("proxy check: the spec has no scenarios")
    return names


def _points(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else 100.0 * float(v)


def run_proxy_check(
    spec: BenchSpec,
    out_dir: str | Path,
    *,
    methods: Sequence[str],
    trials: int = 6,
    budget_s: float = 60.0,
    scenarios: Sequence[str] | None = None,
    replicates: int | None = None,
    say: Callable[[str], None] | None = None,
    device: str | None = None,
) -> ProxyCheck:
    """Score default, retrain-free-calibrated and retrain-tuned configs against Retrain.

    Args:
        spec: the benchmark spec (its dataset, model, recipe, seeds and scenarios).
        out_dir: the benchmark's folder: trained models come from (and go to) ``out_dir/bank``,
            the result to ``out_dir/proxy-check.json``.
        methods: the methods to calibrate.
        trials: each calibration's trial cap (equal for every method, so the result does not
            depend on the machine's speed while ``budget_s`` is ample).
        budget_s: each calibration's wall-clock cap, seconds.
        scenarios: scenario names (default: every scenario whose kind the target covers).
        replicates: check only the first N of the spec's seeds (default: all).
        say: progress lines.

    Raises:
        ConfigError: bad methods, trials, budget or scenario names.
    """
    from ..deletion.calibrate import calibrate, original_stats, proxy_score
    from .tune_space import current_config

    say = say or (lambda _msg: None)
    names = _check(methods, trials, budget_s, spec)
    known = {sc.name: sc for sc in spec.scenarios}
    if scenarios is not None:
        unknown = [s for s in scenarios if s not in known]
        if unknown:
            raise ConfigError(
                f"proxy check: unknown scenario(s) {unknown}; the spec has {sorted(known)}"
            )
    wanted = [
        sc
        for sc in spec.scenarios
        if (scenarios is None or sc.name in scenarios)
        and sc.scenario in ("random", "class", "indices")
    ]
    seeds = spec.seeds[:replicates] if replicates else spec.seeds
    out = Path(out_dir)
    bundle = load(spec.dataset.name, **spec.dataset.options)
    factory = spec.model.factory_for(bundle)
    settings = {
        "methods": names,
        "trials": trials,
        "budget_s": float(budget_s),
        "scenarios": [sc.name for sc in wanted],
        "seeds": list(seeds),
        "version": _VERSION,
    }
    key = digest({"context": spec_context(spec, bundle, factory), "settings": settings})
    path = out / FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        if stored.get("key") == key:
            say(f"proxy check: reusing {path}")
            return ProxyCheck(stored)
    rows: list[dict[str, Any]] = []
    floors: dict[str, list[float]] = {}
    originals: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    with RunLock(out, "proxy-check"):
        bank = OracleBank(out / "bank")
        for sc in wanted:
            task = scenario_task(
                spec, sc, bundle, factory=factory, cache_dir=bank.root, device=device, say=say
            )
            for rep in seeds:
                refs = _Refs(spec, task, rep, factory, bank, RunSummary(), say, device)
                orig, _ = refs.original()
                r1, _ = refs.retrain("retrain")
                r2, _ = refs.retrain("retrain_prime")
                seed_u = seeds_for(rep)["seed_unlearn"]
                kw = {"seed": seed_u, "recipe": spec.recipe, "model_factory": factory}

                def gap(model, task=task, r1=r1, r2=r2) -> dict[str, float]:
                    return evaluate(
                        model,
                        task,
                        reference=r1,
                        reference_prime=r2,
                        model_factory=factory,
                        zrf_teacher_seed=spec.zrf_teacher_seed,
                        seed_attack=spec.seed_attack,
                    )

                e_orig = gap(orig)
                floors.setdefault(sc.name, []).append(e_orig["floor_avg_gap_salun"])
                originals.setdefault(sc.name, []).append(e_orig["avg_gap_salun"])
                st_val = original_stats(orig, task, split="val", seed=seed_u)
                st_test = original_stats(orig, task, split="test", seed=seed_u)
                for name in names:
                    board = calibrate(
                        orig,
                        task,
                        methods=[name],
                        budget_s=budget_s,
                        trials=trials,
                        stats=st_val,
                        device=device,
                        **kw,
                    )
                    preset, tuned_cfg = current_config(spec, sc, name)
                    runs = {
                        "default": (None, None),
                        "proxy": (board.best_config, None),
                        "tuned": (tuned_cfg, preset),
                    }
                    for kind, (cfg, pre) in runs.items():
                        model = run_unlearning(orig, task, name, cfg, preset=pre, **kw).model
                        verdict = proxy_score(
                            model, task, original_stats=st_test, split="test", seed=seed_u
                        )
                        rows.append(
                            {
                                "scenario": sc.name,
                                "seed": rep,
                                "method": name,
                                "kind": kind,
                                "avg_gap_pp": _points(gap(model)["avg_gap_salun"]),
                                "passed": bool(verdict["passed"]),
                                "config": cfg or {},
                                "trials": board.rows[0]["trials"] if kind == "proxy" else None,
                            }
                        )
                    say(
                        f"proxy check [{sc.name} seed {rep}] {name}: "
                        + ", ".join(f"{r['kind']} {r['avg_gap_pp']:.2f}" for r in rows[-3:])
                    )
    result = ProxyCheck(
        key=key,
        settings=settings,
        rows=rows,
        noise_floor={k: _points(sum(v) / len(v)) for k, v in floors.items()},
        original_gap={k: _points(sum(v) / len(v)) for k, v in originals.items()},
        seconds=time.perf_counter() - t0,
        threads=torch.get_num_threads(),
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    return result


def summary_rows(check: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (scenario, method): the mean Avg. Gap (points) of each kind over seeds, the
    verdicts, the noise floor and the original's gap."""
    out = []
    keys = sorted({(r["scenario"], r["method"]) for r in check.get("rows", [])})
    for sc, m in keys:
        rs = [r for r in check["rows"] if r["scenario"] == sc and r["method"] == m]
        row: dict[str, Any] = {"scenario": sc, "method": m}
        for kind in KINDS:
            vals = [r["avg_gap_pp"] for r in rs if r["kind"] == kind]
            vals = [v for v in vals if v is not None]
            row[kind] = sum(vals) / len(vals) if vals else None
            row[f"{kind}_passed"] = [r["passed"] for r in rs if r["kind"] == kind]
        row["noise_floor"] = check.get("noise_floor", {}).get(sc)
        row["original"] = check.get("original_gap", {}).get(sc)
        out.append(row)
    return out


def markdown(check: dict[str, Any]) -> str:
    """The check as a Markdown table (Avg. Gap to Retrain in points; lower is better)."""
    s = check.get("settings", {})
    lines = [
        f"Avg. Gap to Retrain (points, test split, mean over seeds {s.get('seeds')}), for the "
        f"method's defaults, the retrain-free calibration ({s.get('trials')} trials each) and "
        "the benchmark's retrain-tuned config; *verdict* = the retrain-free verdict on the "
        "report half (default / calibrated / tuned).",
        "",
        "| scenario | method | default | calibrated (no retrain) | retrain-tuned | original | "
        "noise floor | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def f(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"

    for r in summary_rows(check):
        verdict = " / ".join(
            "".join("✓" if p else "✗" for p in r[f"{k}_passed"]) or "—" for k in KINDS
        )
        lines.append(
            f"| {r['scenario']} | {r['method']} | {f(r['default'])} | {f(r['proxy'])} | "
            f"{f(r['tuned'])} | {f(r['original'])} | {f(r['noise_floor'])} | {verdict} |"
        )
    return "\n".join(lines) + "\n"

"""How good is the retrain-free calibration? Score its choices against a real Retrain on digits.

For each scenario of the built-in digits spec (random-10pct, class-3, hard-10pct), each seed
replicate and each method, three configs are run on the benchmark's original model:

* **default** — the method's registered defaults (what a user gets with no tuning);
* **proxy** — the config :func:`unlearnkit.deletion.calibrate.calibrate` picks with the
  retrain-free target, reading only the training data and the ``val`` split;
* **retrain-tuned** — the spec's existing config (the ``digits`` preset plus the scenario's
  ``method_config``, tuned against a retrained model on a validation forget set).

Each is scored by Avg. Gap (SalUn's four metrics, test split) to the real Retrain, beside the
noise floor (a second Retrain's Avg. Gap) and the original model's own gap. The table also
shows whether the proxy's verdict on the untouched report half (``test``) passes.

    python benchmarks/proxy_validation.py [--methods natmu,salun,gradient_ascent,finetune]
        [--scenarios random-10pct,class-3,hard-10pct] [--seeds 0] [--budget-s 20]
        [--cache runs/proxy-validation] [--out FILE.md]

Trained models (originals, retrains, memorisation scores) live in ``<cache>/bank`` and are
reused by later runs.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from unlearnkit.api import run_unlearning
from unlearnkit.audit.bank import OracleBank
from unlearnkit.bench.runner import RunSummary, _Refs, seeds_for
from unlearnkit.bench.scenarios import scenario_task
from unlearnkit.bench.spec import default_spec
from unlearnkit.bench.tune import current_config
from unlearnkit.datasets import load
from unlearnkit.deletion.calibrate import calibrate, original_stats, proxy_score
from unlearnkit.methods import get_method
from unlearnkit.metrics.suite import evaluate
from unlearnkit.models import ModelFactory

KINDS = ("default", "proxy", "tuned")


def _fmt(v: float) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{100 * v:.2f}"


def _mean(vals: list[float]) -> float:
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else float("nan")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    spec = default_spec()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    bundle = load(spec.dataset.name, **spec.dataset.options)
    factory = ModelFactory.for_bundle(spec.model.arch, bundle, **spec.model.options)
    bank_dir = Path(args.cache) / "bank"
    bank_dir.mkdir(parents=True, exist_ok=True)
    bank = OracleBank(bank_dir)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    wanted = args.scenarios.split(",")
    rows = []
    for sc in [s for s in spec.scenarios if s.name in wanted]:
        task = scenario_task(spec, sc, bundle, factory=factory, cache_dir=bank_dir, say=say)
        for rep in args.seeds:
            refs = _Refs(spec, task, rep, factory, bank, RunSummary(), say, None)
            orig, _ = refs.original()
            r1, _ = refs.retrain("retrain")
            r2, _ = refs.retrain("retrain_prime")
            seed_u = seeds_for(rep)["seed_unlearn"]

            def score(model, task=task, r1=r1, r2=r2):
                return evaluate(
                    model,
                    task,
                    reference=r1,
                    reference_prime=r2,
                    model_factory=factory,
                    zrf_teacher_seed=spec.zrf_teacher_seed,
                    seed_attack=spec.seed_attack,
                )

            e_orig = score(orig)
            st_val = original_stats(orig, task, split="val", seed=seed_u)
            st_test = original_stats(orig, task, split="test", seed=seed_u)
            for method in args.methods.split(","):
                name = get_method(method).name
                row: dict[str, Any] = {
                    "scenario": sc.name,
                    "seed": rep,
                    "method": name,
                    "original": e_orig["avg_gap_salun"],
                    "floor": e_orig["floor_avg_gap_salun"],
                }
                kw = {"seed": seed_u, "recipe": spec.recipe, "model_factory": factory}
                t0 = time.perf_counter()
                lb = calibrate(
                    orig, task, methods=[name], budget_s=args.budget_s, stats=st_val, **kw
                )
                row["calib_seconds"] = time.perf_counter() - t0
                row["trials"] = lb.rows[0]["trials"]
                row["proxy_config"] = lb.best_config
                preset, tuned_cfg = current_config(spec, sc, name)
                models = {
                    "default": run_unlearning(orig, task, name, None, **kw).model,
                    "proxy": lb.best_model
                    if lb.best_model is not None
                    else run_unlearning(orig, task, name, lb.best_config, **kw).model,
                    "tuned": run_unlearning(orig, task, name, tuned_cfg, preset=preset, **kw).model,
                }
                for kind, model in models.items():
                    row[kind] = score(model)["avg_gap_salun"]
                    pv = proxy_score(model, task, original_stats=st_val, seed=seed_u)
                    pt = proxy_score(model, task, original_stats=st_test, split="test", seed=seed_u)
                    row[f"{kind}_obj_val"] = pv["objective"]
                    row[f"{kind}_pass_test"] = pt["passed"]
                say(
                    f"[{sc.name} seed {rep}] {name}: default {_fmt(row['default'])}, proxy "
                    f"{_fmt(row['proxy'])} ({row['trials']} trials), tuned {_fmt(row['tuned'])}, "
                    f"floor {_fmt(row['floor'])}"
                )
                rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    seeds = " ".join(str(s) for s in args.seeds)
    lines = [
        f"Avg. Gap to Retrain (SalUn preset, test split, pp; mean over seeds {seeds}); "
        f"calibration budget {args.budget_s:g} s per method. `pass` = the proxy's verdict on "
        "the report half (test) for default / proxy / tuned.",
        "",
        "| scenario | method | default | proxy-calibrated | retrain-tuned | original | noise "
        "floor | trials | pass (d/p/t) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["scenario"], r["method"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for sc, m in keys:
        rs = [r for r in rows if r["scenario"] == sc and r["method"] == m]
        cell = {k: _fmt(_mean([r[k] for r in rs])) for k in (*KINDS, "original", "floor")}
        trials = "/".join(str(r["trials"]) for r in rs)
        passes = "; ".join("/".join("y" if r[f"{k}_pass_test"] else "n" for k in KINDS) for r in rs)
        lines.append(
            f"| {sc} | {m} | {cell['default']} | {cell['proxy']} | {cell['tuned']} | "
            f"{cell['original']} | {cell['floor']} | {trials} | {passes} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="natmu,salun,gradient_ascent,finetune")
    p.add_argument("--scenarios", default="random-10pct,class-3,hard-10pct")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--budget-s", type=float, default=20.0)
    p.add_argument("--cache", default="runs/proxy-validation")
    p.add_argument("--out", default=None, help="also write the Markdown table to this file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    rows = run(args)
    text = markdown(rows, args)
    text += f"\n{len(rows)} rows in {time.perf_counter() - t0:.0f} s.\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

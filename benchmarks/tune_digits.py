"""Tune the digits benchmark's method defaults on the validation split (never the test split).

For every method and every scenario of the benchmark spec, run the seeded random search of
:func:`unlearnkit.bench.tune.tune_method` (trial 0 = the current default) and write

* ``<out>/tuning-digits.md``: the documentation of the search (protocol, objective, spaces,
  trial counts, default vs chosen validation Avg. Gap side by side, the chosen configs);
* ``<out>/tuning-digits.yaml``: the chosen overrides as a ``scenarios:`` block in the shape of
  ``digits.yaml`` (each scenario's ``method_config``), ready to paste into the spec.

    python benchmarks/tune_digits.py [--methods finetune,ssd] [--trials 16] [--seeds 0 1]
                                     [--out docs] [--cache runs/tune-digits]

Resumable: trained models live in the oracle bank (``<cache>/bank``) and each finished
(method, scenario) search is stored as JSON under ``<cache>/results``; a re-run with the same
request reuses both, and the documents list every stored search of the same spec.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

import unlearnkit as uk
from unlearnkit.bench.identity import METRICS_VERSION
from unlearnkit.bench.spec import BenchSpec, ScenarioSpec, default_spec, load_spec, spec_from_dict
from unlearnkit.bench.tune import (
    VAL_CLASS_SHIFT,
    VAL_SPLIT_SEED_OFFSET,
    TuneResult,
    current_config,
    original_gap,
    resolve_search_space,
    tune_method,
)
from unlearnkit.errors import UnlearnKitError

_BUILTIN_YAML = Path(uk.bench.spec.__file__).with_name("digits.yaml")

METRIC_LABELS = (
    ("gap_ua", "UA"),
    ("gap_acc_retain", "RA"),
    ("gap_acc_test", "TA (val)"),
    ("gap_mia_svc_conf_nonmember_rate", "MIA-Eff"),
)


def spec_hash(spec: BenchSpec) -> str:
    """Hash of what determines theta_o, theta_r and the tasks (not the method overrides): a
    stored search is reused only under the same run identity (unlearnkit.bench.identity)."""
    scenarios = [
        {k: v for k, v in dataclasses.asdict(s).items() if k != "method_config"}
        for s in spec.scenarios
    ]
    d = {
        "dataset": dataclasses.asdict(spec.dataset),
        "model": dataclasses.asdict(spec.model),
        "recipe": spec.recipe.to_dict(),
        "scenarios": scenarios,
        "seed_attack": spec.seed_attack,
        "default_preset": spec.default_preset,
        "threads": spec.threads,
        "metrics_version": METRICS_VERSION,
        "protocol": {"seed_offset": VAL_SPLIT_SEED_OFFSET, "class_shift": VAL_CLASS_SHIFT},
    }
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def request_of(spec, method, sc, trials, seeds, seed) -> dict[str, Any]:
    preset, base = current_config(spec, sc, method)
    space, source = resolve_search_space(method)
    return {
        "method": method,
        "scenario": sc.name,
        "trials": trials,
        "seeds": list(seeds),
        "seed": seed,
        "preset": preset,
        "base": base,
        # trial 0 as it runs: a preset whose values changed makes this another search
        "resolved": uk.get_method(method)
        .make_config(base, preset=preset, scenario=sc.scenario)
        .to_dict(),
        "space": {k: str(v) for k, v in space.items()},
        "source": source,
    }


def _fmt_pp(v: float, std: float | None = None) -> str:
    if v is None or not math.isfinite(v):
        return "inf (diverged/failed)"
    s = f"{100 * v:.2f}"
    if std is not None and math.isfinite(std):
        s += f" ± {100 * std:.2f}"
    return s


def _fmt_cfg(d: dict[str, Any]) -> str:
    if not d:
        return "(the digits preset, unchanged)"
    return ", ".join(f"`{k}={v}`" for k, v in sorted(d.items()))


def _scenario_line(sc: ScenarioSpec, res: TuneResult | None) -> str:
    bench = sc.task_kwargs()
    if res is None:
        return f"- `{sc.name}`: benchmark task {bench}"
    t = res.task
    if sc.scenario == "class":
        rule = (
            f"class {t['forget_classes']} instead of the benchmark's {list(sc.classes or [])} "
            f"(rule: class + {VAL_CLASS_SHIFT} mod K, skipping forgotten classes)"
        )
    elif sc.scenario == "random" and sc.hard:
        rule = (
            f"the next most memorised samples ({sc.hard_models} half-split models; the "
            "benchmark's own hard forget set excluded), same fraction/count"
        )
    elif sc.scenario == "subclass":
        rule = (
            f"fine class(es) {t.get('forget_subclasses')} instead of the benchmark's "
            f"{list(sc.subclasses or [])} (rule: the next fine class of the same super-class)"
        )
    elif sc.scenario == "random":
        rule = (
            f"the same fraction/count with split seed {t['params'].get('seed')} instead of "
            f"{sc.seed} (rule: seed + {VAL_SPLIT_SEED_OFFSET})"
        )
    else:
        rule = f"as many random retained positions (seed {sc.seed} + {VAL_SPLIT_SEED_OFFSET})"
    return (
        f"- `{sc.name}` (benchmark: {bench}): validation forget set = {rule}; "
        f"n_forget = {t['n_forget']}, n_retain = {t['n_retain']}, task id `{t['id']}`."
    )


def _mean_std(rows: list[dict[str, float]], key: str) -> tuple[float, float]:
    vals = [r[key] for r in rows]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def write_markdown(
    path: Path,
    spec: BenchSpec,
    results: list[TuneResult],
    argv: str,
    originals: dict[str, list[dict[str, float]]],
) -> None:
    by_sc = {sc.name: [r for r in results if r.scenario == sc.name] for sc in spec.scenarios}
    bundle = uk.datasets.load(spec.dataset.name, **spec.dataset.options)
    n_val = len(bundle.val) if bundle.val is not None else 0
    n_reps = len(results[0].seeds) if results else 0
    lines = [
        "# Tuning the digits benchmark's method defaults",
        "",
        "Generated by `benchmarks/tune_digits.py` (do not edit by hand; re-run it). Command: "
        f"`{argv}`. unlearnkit {uk.__version__}, torch {torch.__version__}.",
        "",
        "Project issue 3, item 5: the defaults of the digits benchmark are chosen by a "
        "documented search on the validation split, never on the test set. The chosen "
        "overrides are in [`tuning-digits.yaml`](tuning-digits.yaml), in the shape of "
        "`scenarios[i].method_config` of `src/unlearnkit/bench/digits.yaml`.",
        "",
        "## Protocol",
        "",
        f"- **Spec**: `{spec.name}`; dataset `{spec.dataset.name}` {spec.dataset.options}; "
        f"model `{spec.model.arch}` {spec.model.options}; recipe {spec.recipe.to_dict()}.",
        "- **Validation view** (`unlearnkit.bench.tune.validation_bundle`): the bundle's test "
        "split is replaced by its validation split. Test accuracy (TA) and the non-member side "
        "of every attack (the SVC MIA-Efficacy's shadow and the entropy-LR attack) read "
        "`D_val` only; `D_te` is never loaded into a metric, so selection cannot leak the "
        "test set. `D_val` stays available as `val` (only SCRUB+R "
        "reads it, for its rewind; its objective therefore reads the split it rewinds on).",
        "- **Validation forget sets** (`unlearnkit.bench.tune.validation_task`), which differ "
        "from the benchmark's:",
    ]
    for sc in spec.scenarios:
        res = by_sc[sc.name][0] if by_sc[sc.name] else None
        lines.append("  " + _scenario_line(sc, res))
    lines += [
        "- **References**: θ_o is the benchmark's original model of each seed replicate "
        "(same recipe, model and training seed, trained on the full training split; shared "
        "with the benchmark through the oracle bank). θ_r is retrained with the same recipe "
        "and the replicate's retrain seed on the validation task's retain set. Seeds follow "
        "`unlearnkit.bench.runner.seeds_for` (train = r, retrain = 1000 + r, unlearn = r).",
        "- **Objective** (minimised): the paired Avg. Gap (preset `salun`: "
        "|ΔUA|, |ΔRA|, |ΔTA|, |ΔMIA-Efficacy| to θ_r) on the validation task, averaged over "
        "the seed replicates. Ties are broken by the `natmu`-preset Avg. Gap (entropy-LR "
        "member rate instead of MIA-Efficacy), then by trial order (the default wins a full "
        "tie). A run that diverges (non-finite loss or weights) or fails scores +inf.",
        "- **Search**: trial 0 is the configuration the benchmark runs now (the method's "
        "`digits` preset plus any `method_config` of the spec); trials 1..n−1 are seeded "
        "random draws (`numpy.random.default_rng(seed)`, keys in sorted order) from the "
        "search space, laid over the trial-0 configuration. Continuous draws are rounded to 3 "
        "significant digits, so the stored value is the evaluated one. The space is the "
        "library's digits search space (`DIGITS_SEARCH_SPACES`) where given, else the method's "
        "registered `search_space`.",
        f"- **Caveat**: the numbers below are validation numbers on a {n_val}-sample `D_val`, a "
        f"different forget set and {n_reps} replicate(s); the benchmark's test-set numbers "
        "(with the "
        "noise floor) are the report. Random forgetting on digits is weak (Retrain's forget "
        "accuracy ≈ its test accuracy), so small differences there are noise.",
        "",
    ]
    if results:
        first = results[0]
        lines += [
            f"Seeds (replicates): {list(first.seeds)}; draw seed: {first.seed}.",
            "",
            "### Retrain on the validation tasks (per replicate, %)",
            "",
            "| scenario | replicate | UA | RA | TA (val) | MIA-Eff | MIA-LR (member) |",
            "|---|---|---|---|---|---|---|",
        ]
        for sc in spec.scenarios:
            if not by_sc[sc.name]:
                continue
            for rep, ref in zip(by_sc[sc.name][0].seeds, by_sc[sc.name][0].reference):
                lines.append(
                    f"| {sc.name} | {rep} | {100 * ref['ua']:.2f} | {100 * ref['acc_retain']:.2f}"
                    f" | {100 * ref['acc_test']:.2f} | "
                    f"{100 * ref['mia_svc_conf_nonmember_rate']:.2f} | "
                    f"{100 * ref['mia_lr_entropy_member_rate']:.2f} |"
                )
        lines.append("")
    lines += [
        "## Results: default vs tuned (validation Avg. Gap, pp; mean ± std over replicates)",
        "",
        'Δ = default − tuned; "(≤ std)" marks a gain no larger than the replicate std of '
        "either point (within noise: the lead may prefer to keep the default there). "
        '"θ_o (no-op)" is the original model\'s own validation Avg. Gap: a point near it '
        "changed (almost) nothing. "
        '"failed" counts trials scored +inf.',
        "",
        "| method | scenario | trials | θ_o (no-op) | default | tuned | Δ | failed | chosen "
        "overrides |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r.method, r.scenario)):
        d, t = r.default, r.best
        delta = d.mean - t.mean if math.isfinite(d.mean) else math.inf
        failed = sum(1 for tr in r.trials if not math.isfinite(tr.mean))
        chosen = _fmt_cfg(r.best_overrides) if r.improved else "default kept"
        spread = max((v for v in (d.std, t.std) if math.isfinite(v)), default=math.nan)
        noise = " (≤ std)" if r.improved and math.isfinite(spread) and delta <= spread else ""
        noop = _fmt_pp(*_mean_std(originals[r.scenario], "avg_gap_salun"))
        lines.append(
            f"| {r.method} | {r.scenario} | {len(r.trials)} | {noop} | {_fmt_pp(d.mean, d.std)} | "
            f"{_fmt_pp(t.mean, t.std)} | {_fmt_pp(delta)}{noise} | {failed} | {chosen} |"
        )
    lines += ["", "## Per method", ""]
    for method in sorted({r.method for r in results}):
        rs = sorted((r for r in results if r.method == method), key=lambda r: r.scenario)
        spec_m = uk.get_method(method)
        lines += [
            f"### `{method}`",
            "",
            f"Preset: `{rs[0].preset}` = `{spec_m.presets.get(rs[0].preset or '', {})}`. "
            f"Search space ({rs[0].space_source}):",
            "",
            "| key | distribution |",
            "|---|---|",
        ]
        lines += [f"| `{k}` | `{v}` |" for k, v in sorted(rs[0].search_space.items())]
        lines += [
            "",
            "| scenario | point | trial | Avg. Gap | "
            + " | ".join(f"Δ{lab}" for _, lab in METRIC_LABELS)
            + " | Avg. Gap (natmu) | config |",
            "|---|---|---|---|" + "---|" * len(METRIC_LABELS) + "---|---|",
        ]
        for r in rs:
            points = [("default", r.default)]
            if r.improved:
                points.append(("tuned", r.best))
            for label, tr in points:
                s = tr.summary()
                comps = " | ".join(_fmt_pp(s.get(k, math.nan)) for k, _ in METRIC_LABELS)
                lines.append(
                    f"| {r.scenario} | {label} | {tr.index} | {_fmt_pp(tr.mean, tr.std)} | "
                    f"{comps} | {_fmt_pp(tr.mean_tiebreak)} | {_fmt_cfg(tr.overrides)} |"
                )
            if not r.improved:
                lines.append(
                    f"| {r.scenario} | tuned | 0 | no draw beat the default | "
                    + " | ".join("" for _ in METRIC_LABELS)
                    + " | | |"
                )
        errors = [(r.scenario, tr) for r in rs for tr in r.trials if tr.error]
        if errors:
            lines += ["", "Failed or diverged trials (scored +inf):", ""]
            lines += [f"- {sc} trial {tr.index}: {tr.error}" for sc, tr in errors[:8]]
            if len(errors) > 8:
                lines.append(f"- ... and {len(errors) - 8} more")
        secs = sum(r.seconds for r in rs)
        lines += ["", f"Search time: {secs:.0f} s for {sum(len(r.trials) for r in rs)} trials.", ""]
    path.write_text("\n".join(lines) + "\n")


def _flow(value: Any) -> str:
    """One YAML flow value (floats as PyYAML reads them back: ``1.0e-05``, not ``1e-05``)."""
    return yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]


def yaml_fragment(spec: BenchSpec, results: list[TuneResult]) -> tuple[str, list[dict]]:
    scenarios = []
    for sc in spec.scenarios:
        mc = {k: dict(v) for k, v in sc.method_config.items()}
        for r in sorted((r for r in results if r.scenario == sc.name), key=lambda r: r.method):
            if r.best_overrides:
                mc[r.method] = r.best_overrides
        entry: dict[str, Any] = {"name": sc.name, "scenario": sc.scenario}
        for key in ("fraction", "count", "classes", "indices"):
            val = getattr(sc, key)
            if val is not None:
                entry[key] = list(val) if isinstance(val, tuple) else val
        if sc.stratified:
            entry["stratified"] = True
        if sc.scenario != "class" or sc.seed != 0:
            entry["seed"] = sc.seed
        entry["method_config"] = mc
        scenarios.append(entry)
    out = [
        "# Chosen defaults of the digits benchmark (benchmarks/tune_digits.py; see",
        "# docs/tuning-digits.md). Paste this `scenarios:` block over the one in",
        "# src/unlearnkit/bench/digits.yaml: every scenario's `method_config` holds the chosen",
        "# overrides per method, laid over the method's `digits` preset.",
        "scenarios:",
    ]
    for entry in scenarios:
        keys = [k for k in entry if k != "method_config"]
        for i, k in enumerate(keys):
            out.append(f"  {'- ' if i == 0 else '  '}{k}: {_flow(entry[k])}")
        out.append("    method_config:" + ("" if entry["method_config"] else " {}"))
        for m, cfg in entry["method_config"].items():
            out.append(f"      {m}: {_flow(cfg)}")
    text = "\n".join(out) + "\n"
    return text, scenarios


def _base_yaml(spec_path: Path | None) -> dict[str, Any]:
    return yaml.safe_load((spec_path or _BUILTIN_YAML).read_text()) or {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--methods", default=None, help="comma-separated (default: all but retrain)")
    ap.add_argument("--scenarios", default=None, help="comma-separated scenario names")
    ap.add_argument("--trials", type=int, default=16, help="trials per method and scenario")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seed replicates")
    ap.add_argument("--search-seed", type=int, default=0, help="seed of the random draws")
    ap.add_argument("--out", default="docs", help="directory of the two documents")
    ap.add_argument("--cache", default="runs/tune-digits", help="bank and stored searches")
    ap.add_argument("--bank", default=None, help="oracle bank (default <cache>/bank)")
    ap.add_argument("--spec", default=None, help="a benchmark YAML (default: built-in digits)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1)")
    ap.add_argument("--force", action="store_true", help="ignore stored searches")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    spec_path = Path(args.spec) if args.spec else None
    spec = load_spec(spec_path) if spec_path else default_spec()
    methods = (
        [m.strip() for m in args.methods.split(",") if m.strip()]
        if args.methods
        else [m for m in uk.list_methods() if m != "retrain"]
    )
    methods = [uk.get_method(m).name for m in methods]
    scenarios = [
        sc
        for sc in spec.scenarios
        if args.scenarios is None or sc.name in args.scenarios.split(",")
    ]
    cache = Path(args.cache)
    store = cache / "results" / spec_hash(spec)
    store.mkdir(parents=True, exist_ok=True)
    bank = args.bank or str(cache / "bank")
    t0 = time.perf_counter()
    failures = []
    for method in methods:
        for sc in scenarios:
            file = store / f"{method}__{sc.name}.json"
            try:
                req = request_of(spec, method, sc, args.trials, args.seeds, args.search_seed)
            except UnlearnKitError as exc:
                failures.append((method, sc.name, str(exc)))
                print(f"[{method}/{sc.name}] skipped: {exc}", flush=True)
                continue
            if file.is_file() and not args.force:
                stored = json.loads(file.read_text())
                if stored.get("request") == req:
                    print(f"[{method}/{sc.name}] stored search reused", flush=True)
                    continue
            try:
                res = tune_method(
                    spec,
                    method,
                    sc.name,
                    n_trials=args.trials,
                    seeds=tuple(args.seeds),
                    seed=args.search_seed,
                    bank_dir=bank,
                    echo=lambda msg: print(msg, flush=True),
                )
            except UnlearnKitError as exc:
                failures.append((method, sc.name, str(exc)))
                print(f"[{method}/{sc.name}] FAILED: {exc}", flush=True)
                continue
            file.write_text(json.dumps({"request": req, "result": res.to_dict()}, default=str))
            print(
                f"[{method}/{sc.name}] done in {res.seconds:.0f} s: default "
                f"{_fmt_pp(res.default.mean)} pp -> tuned {_fmt_pp(res.best.mean)} pp "
                f"{res.best_overrides}",
                flush=True,
            )
    # Every stored search of this spec (earlier runs included), current settings first.
    results: dict[tuple[str, str], TuneResult] = {}
    for file in sorted(store.glob("*.json")):
        stored = json.loads(file.read_text())
        res = TuneResult.from_dict(stored["result"])
        if res.scenario in {s.name for s in spec.scenarios}:
            results[(res.method, res.scenario)] = res
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/tune_digits.py " + " ".join(argv if argv is not None else sys.argv[1:])
    all_results = list(results.values())
    originals = {
        sc.name: original_gap(spec, sc.name, seeds=tuple(args.seeds), bank_dir=bank)
        for sc in spec.scenarios
        if any(r.scenario == sc.name for r in all_results)
    }
    write_markdown(out / "tuning-digits.md", spec, all_results, cmd.strip(), originals)
    text, scen = yaml_fragment(spec, all_results)
    check = _base_yaml(spec_path)
    check["scenarios"] = yaml.safe_load(text)["scenarios"]
    if yaml.safe_load(text)["scenarios"] != scen:
        raise RuntimeError("the YAML fragment does not round-trip; please report")
    spec_from_dict(check)  # the fragment must make a valid spec
    (out / "tuning-digits.yaml").write_text(text)
    print(
        f"wrote {out / 'tuning-digits.md'} and {out / 'tuning-digits.yaml'} "
        f"({len(all_results)} searches, {time.perf_counter() - t0:.0f} s)"
    )
    for f in failures:
        print("not tuned:", *f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

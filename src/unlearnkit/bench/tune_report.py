"""What ``unlearnkit tune`` writes: ``OUT/tuned.yaml`` (the chosen configs as a spec fragment),
``OUT/tuning.md`` (protocol, default vs tuned per method and scenario) and the closing table.

Everything is read back from the stored studies (:func:`~unlearnkit.bench.tune_store.
read_studies`), so the documents always cover every study of the folder, earlier runs
included, and any process sharing the folder can rewrite them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..methods import get_method
from .configs import apply_tuned
from .spec import BenchSpec, ScenarioSpec
from .tune import VAL_CLASS_SHIFT, VAL_SPLIT_SEED_OFFSET
from .tune_store import StudyResult

__all__ = ["pruning_note", "summary_table", "tuned_yaml", "tuning_markdown", "write_outputs"]

METRIC_LABELS = (
    ("gap_ua", "UA"),
    ("gap_acc_retain", "RA"),
    ("gap_acc_test", "TA (val)"),
    ("gap_mia_svc_conf_nonmember_rate", "MIA-Eff"),
)


def _pp(v: float | None, std: float | None = None) -> str:
    if v is None or not math.isfinite(v):
        return "inf (diverged/failed)"
    text = f"{100 * v:.2f}"
    if std is not None and math.isfinite(std):
        text += f" ± {100 * std:.2f}"
    return text


def _cfg(d: dict[str, Any]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in sorted(d.items())) or "(the preset, unchanged)"


def _mean_std(rows: list[dict[str, float]], key: str) -> tuple[float, float]:
    vals = [float(r[key]) for r in rows]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def _current(results: list[StudyResult]) -> list[StudyResult]:
    return [r for r in results if not r.stale]


def pruning_note(results: list[StudyResult]) -> str:
    """One line on pruning: how many trials were pruned, or why none could be."""
    res = _current(results)
    reps = max((len(r.info.get("context", {}).get("replicates", [])) for r in res), default=0)
    if reps < 2:
        return (
            "Pruning: none (one seed replicate, so a trial has no intermediate score to compare; "
            "the methods report no per-epoch scores)."
        )
    pruned, total = sum(r.pruned for r in res), sum(r.finished for r in res)
    return (
        f"Pruning: median rule after each seed replicate but the last; {pruned} of {total} "
        "trials pruned (the methods report no per-epoch scores, so a replicate runs whole)."
    )


def summary_table(results: list[StudyResult]) -> str:
    """Default vs tuned per method and scenario: trials used, time, validation Avg. Gap (pp)."""
    lines = [
        "| method | scenario | trials | pruned | failed | time (s) | θ_o (no-op) | default | tuned "
        "| Δ | chosen overrides |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in _current(results):
        d, b = r.default, r.best
        noop = _pp(*_mean_std(r.info.get("noop", []), "avg_gap_salun"))
        dtext = _pp(d.evaluation.mean, d.evaluation.std) if d else "not run yet"
        btext = _pp(b.evaluation.mean, b.evaluation.std) if b else "no finite trial"
        if d and b and math.isfinite(d.evaluation.mean):
            delta = d.evaluation.mean - b.evaluation.mean
            spread = max(
                (v for v in (d.evaluation.std, b.evaluation.std) if math.isfinite(v)),
                default=math.nan,
            )
            noise = " (≤ std)" if b is not d and math.isfinite(spread) and delta <= spread else ""
            dl = _pp(delta) + noise
        else:
            dl = "–"
        chosen = "default kept" if b is None or b.default else _cfg(b.config)
        lines.append(
            f"| {r.method} | {r.scenario} | {r.finished} | {r.pruned} | {r.failed} | "
            f"{r.seconds:.0f} | {noop} | {dtext} | {btext} | {dl} | {chosen} |"
        )
    stale = [f"{r.method}/{r.scenario}" for r in results if r.stale]
    if stale:
        lines += [
            "",
            f"Left out (the spec's starting point or space changed since): {', '.join(stale)}.",
        ]
    return "\n".join(lines)


def _flow(value: Any) -> str:
    """One YAML flow value (floats as PyYAML reads them back: ``1.0e-05``, not ``1e-05``)."""
    return yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]


def _scenario_entry(sc: ScenarioSpec, method_config: dict[str, Any]) -> dict[str, Any]:
    """A scenario as a spec lists it: its name, kind and every field not at its default."""
    entry: dict[str, Any] = {"name": sc.name, "scenario": sc.scenario}
    for f in dataclasses.fields(ScenarioSpec):
        if f.name in entry or f.name == "method_config":
            continue
        value = getattr(sc, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if value != default:
            entry[f.name] = list(value) if isinstance(value, tuple) else value
    entry["method_config"] = method_config
    return entry


def tuned_yaml(spec: BenchSpec, results: list[StudyResult], source: str = "tuning.md") -> str:
    """The chosen configs as a ``scenarios:`` block of ``spec``: each scenario's
    ``method_config`` holds the spec's own entries with every tuned method's chosen overrides
    (laid over the method's preset). ``unlearnkit bench --configs`` reads it; pasted over a
    spec's ``scenarios:`` it makes the tuned configs the spec's."""
    chosen: dict[str, dict[str, dict[str, Any]]] = {}
    for r in _current(results):
        if r.best is not None:
            chosen.setdefault(r.scenario, {})[r.method] = dict(r.best.config)
    out = [
        f"# Tuned method configs of spec {spec.name!r} (unlearnkit tune; see {source}).",
        "# Run them with 'unlearnkit bench SPEC --configs <this file>', or paste this",
        "# scenarios: block over the spec's. Each scenario's method_config holds the chosen",
        "# overrides per method, laid over the method's preset.",
        "scenarios:",
    ]
    for sc in spec.scenarios:
        mc = {k: dict(v) for k, v in sc.method_config.items()}
        for method, config in sorted(chosen.get(sc.name, {}).items()):
            if config:
                mc[method] = config
            else:
                mc.pop(method, None)  # the preset alone was best
        entry = _scenario_entry(sc, mc)
        keys = [k for k in entry if k != "method_config"]
        for i, k in enumerate(keys):
            out.append(f"  {'- ' if i == 0 else '  '}{k}: {_flow(entry[k])}")
        out.append("    method_config:" + ("" if mc else " {}"))
        out += [f"      {m}: {_flow(cfg)}" for m, cfg in mc.items()]
    text = "\n".join(out) + "\n"
    apply_tuned(spec, yaml.safe_load(text), "the tuned configs")  # reads back into the spec
    return text


def _rule(sc: ScenarioSpec, task: dict[str, Any]) -> str:
    if sc.scenario == "class":
        return (
            f"class {task.get('forget_classes')} instead of the benchmark's "
            f"{list(sc.classes or [])} (rule: class + {VAL_CLASS_SHIFT} mod K, skipping "
            "forgotten classes)"
        )
    if sc.scenario == "random" and sc.hard:
        return (
            f"the next most memorised samples ({sc.hard_models} half-split models; the "
            "benchmark's own hard forget set excluded), same fraction/count"
        )
    if sc.scenario == "subclass":
        return (
            f"fine class(es) {task.get('forget_subclasses')} instead of the benchmark's "
            f"{list(sc.subclasses or [])} (rule: the next fine class of the same super-class)"
        )
    if sc.scenario == "random":
        return (
            f"the same fraction/count with split seed {task.get('params', {}).get('seed')} "
            f"instead of {sc.seed} (rule: seed + {VAL_SPLIT_SEED_OFFSET})"
        )
    return f"as many random retained positions (seed {sc.seed} + {VAL_SPLIT_SEED_OFFSET})"


def _protocol(spec: BenchSpec, res: list[StudyResult]) -> list[str]:
    by_sc = {r.scenario: r for r in res}
    ctx = res[0].info.get("context", {}) if res else {}
    lines = [
        "## Protocol",
        "",
        f"- **Spec**: `{spec.name}`; dataset `{spec.dataset.name}` {spec.dataset.options}; "
        f"model `{json.dumps(ctx.get('model', spec.model.record()))}`; "
        f"recipe {spec.recipe.to_dict()}.",
        "- **Validation view** (`unlearnkit.bench.tune.validation_bundle`): the test split is "
        "replaced by the validation split, so test accuracy (TA) and the non-member side of "
        "every attack read `D_val` only; the test set is never scored, so selection cannot "
        "leak it. SCRUB+R's rewind also reads `D_val`.",
        "- **Validation forget sets** (`unlearnkit.bench.tune.validation_task`), which differ "
        "from the benchmark's:",
    ]
    for sc in spec.scenarios:
        r = by_sc.get(sc.name)
        if r is None or "task" not in r.info:
            lines.append(f"  - `{sc.name}`: not tuned here.")
            continue
        t = r.info["task"]
        lines.append(
            f"  - `{sc.name}` (benchmark: {sc.task_kwargs()}): {_rule(sc, t)}; n_forget = "
            f"{t['n_forget']}, n_retain = {t['n_retain']}, task id `{t['id']}`."
        )
    lines += [
        "- **References**: θ_o is the benchmark's original model of each seed replicate, "
        "shared with the benchmark through the oracle bank; θ_r is retrained with the same "
        "recipe on the validation task's retain set (seeds: `unlearnkit.bench.runner.seeds_for`).",
        "- **Objective** (minimised): the paired Avg. Gap (preset `salun`: |ΔUA|, |ΔRA|, |ΔTA|, "
        "|ΔMIA-Efficacy| to θ_r) on the validation task, averaged over the seed replicates "
        f"{ctx.get('replicates')}; ties go to the `natmu`-preset Avg. Gap, then to the default. "
        "A run that diverges or fails scores +inf.",
        "- **Search**: one Optuna study per method and scenario (TPE sampler, seed "
        f"{ctx.get('sampler_seed')}; studies in `tune.db`). Trial 0 is the configuration the "
        "benchmark runs now (the preset plus the spec's `method_config`); sampled values are "
        "laid over it, continuous ones rounded to 3 significant digits. The space is the "
        "library's digits search space where it has one, else the method's registered space.",
        "- **Budgets**: every method gets the same number of trials per scenario (pruned ones "
        "count); the table says how many each used. " + pruning_note(res),
        "",
    ]
    return lines


def tuning_markdown(
    spec: BenchSpec, results: list[StudyResult], command: str, yaml_name: str = "tuned.yaml"
) -> str:
    """``tuning.md``: protocol, references, default vs tuned, per-method detail."""
    res = _current(results)
    lines = [
        f"# Tuning the method configs of `{spec.name}`",
        "",
        f"Generated by `{command}` (unlearnkit {__version__}); do not edit by hand. The chosen "
        f"configs are in [`{yaml_name}`]({yaml_name}) beside this file.",
        "",
        *_protocol(spec, res),
        "### θ_r on the validation tasks (per replicate, %)",
        "",
        "| scenario | replicate | UA | RA | TA (val) | MIA-Eff | MIA-LR (member) |",
        "|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for r in res:
        if r.scenario in seen:
            continue
        seen.add(r.scenario)
        reps = r.info.get("context", {}).get("replicates", [])
        for rep, ref in zip(reps, r.info.get("reference", [])):
            vals = (
                "ua",
                "acc_retain",
                "acc_test",
                "mia_svc_conf_nonmember_rate",
                "mia_lr_entropy_member_rate",
            )
            lines.append(
                f"| {r.scenario} | {rep} | "
                + " | ".join(f"{100 * ref[k]:.2f}" for k in vals)
                + " |"
            )
    lines += [
        "",
        "## Default vs tuned (validation Avg. Gap, pp; mean ± std over replicates)",
        "",
        'Δ = default − tuned; "(≤ std)" marks a gain within the replicate std. "θ_o (no-op)" is '
        "the original model's own Avg. Gap: a point near it changed (almost) nothing. "
        '"failed" counts trials scored +inf; "time" is the trials\' own seconds.',
        "",
        summary_table(results),
        "",
    ]
    for method in sorted({r.method for r in res}):
        lines += _method_section(method, [r for r in res if r.method == method])
    return "\n".join(lines) + "\n"


def _method_section(method: str, rs: list[StudyResult]) -> list[str]:
    ident = rs[0].info.get("identity", {})
    preset = ident.get("preset")
    lines = [
        f"### `{method}`",
        "",
        f"Preset `{preset}` = `{get_method(method).presets.get(preset or '', {})}`; search space "
        f"({ident.get('space_source')}): "
        + (", ".join(f"`{k}`: `{v}`" for k, v in sorted(ident.get("space", {}).items())) or "none")
        + ".",
        "",
        "| scenario | point | trial | Avg. Gap | "
        + " | ".join(f"Δ{lab}" for _, lab in METRIC_LABELS)
        + " | Avg. Gap (natmu) | config |",
        "|---|---|---|---|" + "---|" * len(METRIC_LABELS) + "---|---|",
    ]
    for r in rs:
        points = [("default", r.default), ("tuned", r.best)]
        for label, t in points:
            if t is None or (label == "tuned" and t.default):
                why = "not run yet" if t is None else "default kept"
                blanks = "| " * (len(METRIC_LABELS) + 4)
                lines.append(f"| {r.scenario} | {label} | {why} " + blanks)
                continue
            s = t.evaluation.summary()
            comps = " | ".join(_pp(s.get(k, math.nan)) for k, _ in METRIC_LABELS)
            lines.append(
                f"| {r.scenario} | {label} | {t.number} | "
                f"{_pp(t.evaluation.mean, t.evaluation.std)} | {comps} | "
                f"{_pp(t.evaluation.mean_tiebreak)} | {_cfg(t.config)} |"
            )
    errors = [(r.scenario, t) for r in rs for t in r.trials if t.evaluation.error]
    if errors:
        lines += ["", "Failed or diverged trials (scored +inf):", ""]
        lines += [f"- {sc} trial {t.number}: {t.evaluation.error}" for sc, t in errors[:8]]
        if len(errors) > 8:
            lines.append(f"- ... and {len(errors) - 8} more")
    return [*lines, ""]


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_outputs(
    out_dir: str | Path,
    spec: BenchSpec,
    results: list[StudyResult],
    command: str,
    *,
    markdown_name: str = "tuning.md",
    yaml_name: str = "tuned.yaml",
) -> tuple[Path, Path]:
    """Write ``tuning.md`` and ``tuned.yaml`` into ``out_dir`` (each atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, ym = out / markdown_name, out / yaml_name
    _write_atomic(ym, tuned_yaml(spec, results, source=markdown_name))
    _write_atomic(md, tuning_markdown(spec, results, command, yaml_name))
    return md, ym

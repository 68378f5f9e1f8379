"""Write the generated parts of docs/methods.md and docs/metrics.md from the code.

The prose of both pages is written by hand. The parts that the code already knows (every
method's access level, config fields with their defaults, presets, search space; the metric
keys, Avg. Gap presets, report columns and audit options) sit between marker lines

    <!-- BEGIN GENERATED name -->
    ...
    <!-- END GENERATED name -->

and are rewritten by this script, so they cannot drift from the code:

    python docs/_gen_reference.py          # rewrite the generated blocks in place
    python docs/_gen_reference.py --check  # exit 1 and name the stale blocks

``tests/unit/test_docs_reference.py`` runs the check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
METHODS_MD = DOCS / "methods.md"
METRICS_MD = DOCS / "metrics.md"

BLOCK_RE = re.compile(
    r"(<!-- BEGIN GENERATED (?P<name>[\w.-]+) -->\n)"
    r"(?P<body>.*?)"
    r"(<!-- END GENERATED (?P=name) -->)",
    re.DOTALL,
)

#: Fields every method config shares (``BaseConfig``); they are described once, by hand, in the
#: "Common config fields" section of methods.md.
COMMON_FIELDS = (
    "batch_size",
    "epochs",
    "optimizer",
    "scheduler",
    "max_grad_norm",
    "freeze_bn_stats",
    "augment_retain",
    "max_steps",
)

_SPLITS = (
    ("uses_forget", "forget_labels", "forget set `D_f`"),
    ("uses_retain", "retain_labels", "retain set `D_r`"),
)


# ---------------------------------------------------------------------------------------------
# Formatting helpers


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _json(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text.replace("-Infinity", "-inf").replace("Infinity", "inf")


def _code(value: Any) -> str:
    return f"`{_cell(_json(value))}`"


def _type(hint: Any) -> str:
    """A type annotation written the same way on every Python version (``X | None``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type(a) for a in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is tuple:
        return f"tuple[{', '.join('...' if a is Ellipsis else _type(a) for a in args)}]"
    if hint is type(None):
        return "None"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# ---------------------------------------------------------------------------------------------
# methods.md


def _access_lines(spec: Any) -> list[str]:
    acc = spec.access
    lines = [f"- Access level: `{acc.label}`"]
    for uses, labels, what in _SPLITS:
        if uses == "uses_retain" and acc.level == "full_train":
            continue
        if not getattr(acc, uses):
            lines.append(f"- Reads the {what}: no")
            continue
        part = "with labels" if getattr(acc, labels) else "without labels"
        share = ""
        if uses == "uses_retain" and acc.retain_fraction < 1:
            share = f"; uses a random {100 * acc.retain_fraction:g} % of it"
        lines.append(f"- Reads the {what}: yes, {part}{share}")
    if acc.level == "full_train":
        part = "labels used" if acc.retain_labels else "labels declared unused"
        lines.append(f"- Reads the whole training set `D_tr` (forget and retain): yes, {part}")
    extra = [
        ("needs_val", "the validation split `D_val`"),
        ("needs_recipe", "the original training recipe"),
        ("needs_model_factory", "a model factory (freshly initialised models)"),
    ]
    for flag, what in extra:
        lines.append(f"- Needs {what}: {'yes' if getattr(acc, flag) else 'no'}")
    if spec.access_rule is not None:
        lines.append("- Some config values raise the access level (see the text)")
    lines.append(f"- Scenarios: {', '.join(f'`{s}`' for s in acc.scenarios)}")
    return lines


def _field_rows(spec: Any, d: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """Table rows of a method's own fields and of the common fields it changes or explains;
    the names of the common fields left at their shared defaults."""
    from unlearnkit.methods import BaseConfig

    base = {f["name"]: f["default"] for f in BaseConfig.describe_fields()}
    hints = typing.get_type_hints(spec.config_cls)
    rows, plain = [], []
    for f in d["fields"]:
        name = f["name"]
        common = name in COMMON_FIELDS
        if common and not f["help"] and f["default"] == base[name]:
            plain.append(name)
            continue
        meaning = f["help"] or ("common field, default changed" if common else "")
        kind = _cell(_type(hints[name]))
        rows.append([f"`{name}`", f"`{kind}`", _code(f["default"]), _cell(meaning)])
    return rows, plain


def render_method(name: str) -> str:
    """The generated block of one method: registry facts, config table, presets, space."""
    from unlearnkit.methods import get_method

    spec = get_method(name)
    d = spec.describe()
    aliases = ", ".join(f"`{a}`" for a in d["aliases"]) or "none"
    lines = [
        f"Registered name `{d['name']}`; aliases: {aliases}; config class `{d['config']}`.",
        "",
        *_access_lines(spec),
        "",
    ]
    rows, plain = _field_rows(spec, d)
    lines += _table(["field", "type", "default", "meaning"], rows)
    if plain:
        names = ", ".join(f"`{n}`" for n in plain)
        lines.append("")
        lines.append(
            f"Common fields at their shared defaults ([common fields](#common-config-fields)): "
            f"{names}."
        )
    lines.append("")
    if d["presets"]:
        notes = any(d["preset_help"].get(p) for p in d["presets"])
        head = ["preset", "settings", *(["note"] if notes else [])]
        rows = [
            [
                f"`{p}`",
                _code(vals) if vals else "the defaults",
                *([_cell(d["preset_help"].get(p, ""))] if notes else []),
            ]
            for p, vals in d["presets"].items()
        ]
        lines += ["Presets:", "", *_table(head, rows), ""]
    else:
        lines += ["Presets: none.", ""]
    if d["search_space"]:
        rows = [[f"`{k}`", f"`{_cell(v)}`"] for k, v in d["search_space"].items()]
        lines += ["Search space:", "", *_table(["field", "distribution"], rows), ""]
    else:
        lines += ["Search space: none (not tuned).", ""]
    if d["scenario_defaults"]:
        items = "; ".join(f"`{s}`: {_code(v)}" for s, v in d["scenario_defaults"].items())
        lines += [f"Scenario defaults (applied before presets and your values): {items}.", ""]
    if spec.identity_config is None:
        lines.append("Identity setting: none (the method never returns the input model).")
    else:
        lines.append(f"Identity setting (no change to the model): {_code(spec.identity_config)}.")
    return "\n".join(lines) + "\n"


def builtin_methods() -> list[str]:
    """The methods unlearnkit itself registers, in registration order (plugins left out)."""
    from unlearnkit.methods import get_method, list_methods

    return [
        n for n in list_methods() if get_method(n).fn.__module__.startswith("unlearnkit.methods.")
    ]


def render_methods_index() -> str:
    """The table of every built-in method."""
    from unlearnkit.methods import get_method

    rows = []
    for name in builtin_methods():
        spec = get_method(name)
        aliases = ", ".join(f"`{a}`" for a in spec.aliases) or "–"
        rows.append(
            [f"[`{name}`](#{name})", aliases, f"`{spec.access.label}`", _cell(spec.summary)]
        )
    return "\n".join(_table(["method", "aliases", "access", "what it does"], rows)) + "\n"


def method_blocks() -> dict[str, Callable[[], str]]:
    blocks: dict[str, Callable[[], str]] = {"methods-index": render_methods_index}
    for name in builtin_methods():
        blocks[f"method.{name}"] = lambda name=name: render_method(name)
    return blocks


# ---------------------------------------------------------------------------------------------
# metrics.md


def render_metric_keys() -> str:
    from unlearnkit.metrics.suite import METRIC_INFO

    rows = [
        [f"`{k}`", _cell(v["label"]), v["kind"], _cell(v["better"])] for k, v in METRIC_INFO.items()
    ]
    return "\n".join(_table(["key", "label in tables", "kind", "better"], rows)) + "\n"


def render_tier_a_keys() -> str:
    from unlearnkit.metrics.suite import TIER_A_KEYS

    return ", ".join(f"`{k}`" for k in TIER_A_KEYS) + "\n"


def render_avg_gap_presets() -> str:
    from unlearnkit.metrics.functional.gaps import AVG_GAP_PRESETS

    rows = [
        [f"`{p}`", f"`avg_gap_{p}`", ", ".join(f"`{k}`" for k in keys)]
        for p, keys in AVG_GAP_PRESETS.items()
    ]
    return "\n".join(_table(["preset", "key", "metrics averaged"], rows)) + "\n"


def render_report_columns() -> str:
    from unlearnkit.bench import report

    units = {
        "rate": "×100 (percent; gaps and changes in percentage points)",
        "seconds": "seconds",
        "score": "as stored",
        "milli": "×1000",
        "count": "count",
    }
    rows = []
    for table, keys in (
        ("headline", report.SUMMARY_KEYS),
        ("detail", report.DETAIL_KEYS),
        ("optional", report.OPTIONAL_KEYS),
    ):
        rows += [
            [table, f"`{k}`", _cell(header), units.get(kind, kind)] for k, header, kind in keys
        ]
    return "\n".join(_table(["table", "key", "column", "shown as"], rows)) + "\n"


def render_audit_options() -> str:
    from unlearnkit.audit.plan import ALPHAS, CI_ALPHA, KINDS, OPTION_DEFAULTS
    from unlearnkit.metrics.functional import epsilon

    rows = [[f"`{k}`", _code(v)] for k, v in OPTION_DEFAULTS.items()]
    lines = [
        f"Audit kinds: {', '.join(f'`{k}`' for k in KINDS)}. TPR is read at FPR "
        f"{', '.join(f'{a:g}' for a in ALPHAS)}; every Clopper–Pearson interval is at "
        f"{100 * (1 - CI_ALPHA):g} %. ε audit constants: δ = {epsilon.DELTA:g}, cap "
        f"{epsilon.EPSILON_CAP:g}, {epsilon.THRESHOLDS_PER_UNIT} thresholds per unit of φ, "
        f"buffer {epsilon.BUFFER:g}, range valve {epsilon.VALVE_RATIO:g}.",
        "",
        "Audit options (`options=` / the audit's knobs; `null` means derived, see the text):",
        "",
        *_table(["option", "default"], rows),
    ]
    return "\n".join(lines) + "\n"


def metric_blocks() -> dict[str, Callable[[], str]]:
    return {
        "metric-keys": render_metric_keys,
        "tier-a-keys": render_tier_a_keys,
        "avg-gap-presets": render_avg_gap_presets,
        "report-columns": render_report_columns,
        "audit-options": render_audit_options,
    }


# ---------------------------------------------------------------------------------------------
# Rewriting and checking


def _pages() -> dict[Path, dict[str, Callable[[], str]]]:
    return {METHODS_MD: method_blocks(), METRICS_MD: metric_blocks()}


def refresh(text: str, blocks: dict[str, Callable[[], str]]) -> tuple[str, list[str]]:
    """``text`` with every generated block rewritten, and the problems found.

    Problems: a block the page lacks, or a block in the page that nothing generates.
    """
    found: list[str] = []
    problems: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        found.append(name)
        if name not in blocks:
            problems.append(f"block {name!r} is generated by nothing; remove its markers")
            return m.group(0)
        return m.group(1) + blocks[name]() + m.group(4)

    new = BLOCK_RE.sub(sub, text)
    problems += [f"block {n!r} is missing; add its markers" for n in blocks if n not in found]
    return new, problems


def check() -> list[str]:
    """Names of the stale or missing generated blocks of both pages (empty: up to date)."""
    out = []
    for path, blocks in _pages().items():
        text = path.read_text(encoding="utf-8")
        new, problems = refresh(text, blocks)
        out += [f"{path.name}: {p}" for p in problems]
        for m_old, m_new in zip(BLOCK_RE.finditer(text), BLOCK_RE.finditer(new)):
            if m_old.group("body") != m_new.group("body"):
                out.append(f"{path.name}: block {m_old.group('name')!r} is stale")
    return out


def write() -> list[str]:
    """Rewrite the generated blocks of both pages; returns the problems left (missing blocks)."""
    out = []
    for path, blocks in _pages().items():
        text = path.read_text(encoding="utf-8")
        new, problems = refresh(text, blocks)
        out += [f"{path.name}: {p}" for p in problems]
        if new != text:
            path.write_text(new, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale blocks")
    args = parser.parse_args(argv)
    problems = check() if args.check else write()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The per-replicate export: every table of the report can be recomputed from it."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from unlearnkit.bench.report import SUMMARY_KEYS, render
from unlearnkit.bench.store import open_existing
from unlearnkit.cli import app
from unlearnkit.report.long import ID_COLUMNS, export

from ._store import build

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("run"), proxy=False)


@pytest.fixture(scope="module")
def rows(run) -> list[dict[str, str]]:
    with open_existing(run) as store:
        text = export(store, "csv")
    return list(csv.DictReader(io.StringIO(text)))


def _cell(values: list[float], kind: str) -> str:
    """The report's cell, written independently: rates ×100 with one decimal, seconds two."""
    scale, digits = (100.0, 1) if kind == "rate" else (1.0, 2)
    vals = [v * scale for v in values if not math.isnan(v)]
    if not vals:
        return "–"
    m = float(np.mean(vals))
    return (
        f"{m:.{digits}f}"
        if len(vals) < 2
        else f"{m:.{digits}f} ± {np.std(vals, ddof=1):.{digits}f}"
    )


def _md_headline(md: str) -> dict[tuple[str, str], list[str]]:
    """(scenario, label) -> the headline table's metric cells, read back from report.md."""
    out, scenario, in_headline = {}, None, False
    for line in md.splitlines():
        if line.startswith("### Scenario `"):
            scenario, in_headline = line.split("`")[1], True
        elif line.startswith("Detail") or line.startswith("## "):
            in_headline = False
        elif in_headline and line.startswith("| ") and not line.startswith("| Method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[(scenario, cells[0].split(" ⚠")[0])] = cells[2:]
    return out


def test_one_row_per_cell_with_identity_and_every_metric(rows):
    # 2 scenarios x 3 seeds x (5 table rows + 3 sweep points); audit rows are not replicates
    assert len(rows) == 2 * 3 * (5 + 3)
    assert list(rows[0])[: len(ID_COLUMNS)] == list(ID_COLUMNS)
    assert {"zrf", "tow", "js_to_retrain_forget", "avg_gap_natmu", "diverged"} <= set(rows[0])
    assert {r["kind"] for r in rows} == {"original", "retrain", "retrain_prime", "method", "sweep"}
    ga = [r for r in rows if r["label"] == "gradient_ascent"]
    assert {r["access_level"] for r in ga} == {"forget_only"} and len(
        {r["config_id"] for r in ga}
    ) == 2
    sweep = next(r for r in rows if r["kind"] == "sweep" and r["label"] == "finetune[lr=0.1]")
    assert json.loads(sweep["config"]) == {"epochs": 1, "lr": 0.1}


def test_the_report_tables_are_recomputed_from_the_long_csv(run, rows):
    """Round trip: group the long rows, take mean and std, and get the report's cells."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] != "sweep":
            groups[(r["scenario"], r["label"], r["config_id"])].append(r)
    with open_existing(run) as store:
        table = _md_headline(render(store, "md"))
    assert len(table) == len(groups) == 10
    for (sc, label, _), rs in groups.items():
        want = [
            _cell([float(r[key]) if r[key] else math.nan for r in rs], kind)
            for key, _, kind in SUMMARY_KEYS
        ]
        assert table[(sc, label)] == want, (sc, label)


def test_json_parquet_and_csv_hold_the_same_values(run, rows):
    import pyarrow.parquet as pq

    with open_existing(run) as store:
        js = json.loads(export(store, "json"))
        table = pq.read_table(io.BytesIO(export(store, "parquet"))).to_pylist()
        summary = json.loads(render(store, "json"))
    assert len(js) == len(table) == len(rows)
    for c, j, p in zip(rows, js, table):
        assert c["key"] == j["key"] == p["key"] and int(c["seed"]) == j["seed"] == p["seed"]
        for k in ("avg_gap_salun", "zrf", "rte_seconds"):
            if c[k] == "":
                assert j[k] is None and math.isnan(p[k])
            else:
                assert float(c[k]) == j[k] == p[k]
    # one unit everywhere: the summary's Avg. Gap is the mean of the long rows' fractions
    ft = next(s for s in summary if s["scenario"] == "rnd" and s["method"] == "finetune")
    vals = [
        float(r["avg_gap_salun"])
        for r in rows
        if r["scenario"] == "rnd" and r["label"] == "finetune"
    ]
    assert ft["avg_gap_mean"] == pytest.approx(np.mean(vals)) and 0 < ft["avg_gap_mean"] < 1


def test_report_command_exports_and_writes_html(run, tmp_path):
    got = runner.invoke(app, ["report", str(run), "--format", "csv", "--long"])
    assert got.exit_code == 0, got.output
    assert len(list(csv.DictReader(io.StringIO(got.stdout)))) == 48
    pq_out = runner.invoke(app, ["report", str(run), "--format", "parquet", "--long"])
    assert pq_out.exit_code == 0 and (run / "results-long.parquet").stat().st_size > 0
    html_file = tmp_path / "page.html"
    got = runner.invoke(app, ["report", str(run), "--format", "html", "-o", str(html_file)])
    assert got.exit_code == 0 and f"wrote {html_file}" in got.stderr
    assert html_file.read_text().count("data:image/png") == 8  # 2 x (Pareto, bars, sweep) + 2
    for args, msg in (
        (["--format", "md", "--long"], "--long exports rows, not a md report"),
        (["--format", "xml"], "unknown format 'xml'; use md, html, json, csv, parquet"),
    ):
        bad = runner.invoke(app, ["report", str(run), *args])
        assert bad.exit_code == 2 and msg in bad.stderr and len(bad.stderr.splitlines()) == 1

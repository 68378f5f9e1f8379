"""The benchmark report in HTML and Markdown, on a hand-built store with known numbers."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from unlearnkit.bench.report import render, render_markdown
from unlearnkit.bench.store import open_existing
from unlearnkit.report.bench import write_reports

from ._store import PROXY_GAPS, build


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def written(run) -> dict[str, Path]:
    return write_reports(run)


@pytest.fixture(scope="module")
def page(written) -> str:
    return written["report_html"].read_text(encoding="utf-8")


def _section(page: str, title: str) -> str:
    start = page.index(f">{title}</h3>") if f">{title}</h3>" in page else page.index(title)
    end = page.find("<h3", start + 1)
    return page[start : end if end > 0 else None]


def test_rows_are_grouped_by_access_level_with_retrain_and_floor_marked(page):
    rnd = _section(page, "Scenario <code>rnd</code> (3 replicates)")
    headline = rnd[: rnd.index("</table>")]
    order = [
        headline.index("Reference models"),
        headline.index("Retrain</td>"),
        headline.index("forget_only: methods that read only the forget set"),
        headline.index("gradient_ascent ⚠ diverged in 1/3"),
        headline.index("forget_and_retain: methods that also read the retain set"),
        headline.index("finetune</td>"),
    ]
    assert order == sorted(order)
    assert '<tr class="ref"><td>Retrain</td>' in headline
    assert '<tr class="floor"><td>Retrain′ (noise floor)</td>' in headline
    assert '<tr class="diverged"><td>gradient_ascent ⚠ diverged in 1/3</td>' in headline
    assert '<tr class="orig"><td>Original</td>' in headline


def test_cells_carry_the_95_percent_t_interval(run, page):
    with open_existing(run) as store:
        vals = [
            r.metrics["avg_gap_salun"]
            for r in store.rows("method")
            if r.scenario == "rnd" and r.label == "finetune"
        ]
    m, s = float(np.mean(vals)), float(np.std(vals, ddof=1))
    half = stats.t.ppf(0.975, len(vals) - 1) * s / math.sqrt(len(vals))
    want = (
        f"{100 * m:.1f} ± {100 * s:.1f}"
        f'<span class="sub">[{100 * (m - half):.1f}, {100 * (m + half):.1f}]</span>'
    )
    rnd = _section(page, "Scenario <code>rnd</code> (3 replicates)")
    row = rnd[rnd.index("<td>finetune</td>") :]
    assert want in row[: row.index("</tr>")]


def _images(page: str) -> list[np.ndarray]:
    out = []
    for png in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        img = Image.open(io.BytesIO(base64.b64decode(png))).convert("L")
        out.append(np.asarray(img, dtype=float))
    return out


def test_every_plot_is_drawn_inline(page):
    alts = re.findall(r'<img alt="([^"]+)"', page)
    for sc in ("rnd", "cls"):
        assert f"Avg. Gap to Retrain against run time, scenario {sc}" in alts
        assert f"UA, RA, TA and MIA-Eff per method against Retrain, scenario {sc}" in alts
        assert f"Avg. Gap of finetune over its sweep grid in scenario {sc}" in alts
    assert "histogram of per-example ε: finetune ε and its Retrain control" in alts
    assert "ROC curves of finetune and its Retrain control (log-log)" in alts
    assert any(a.startswith("Avg. Gap to Retrain of default, calibrated") for a in alts)
    # the epsilon audit keeps no ROC points: no ROC plot is made up for it
    assert len(alts) == 9 and not any("ROC" in a and "ε" in a for a in alts)
    images = _images(page)
    assert len(images) == 9 and all(img.std() > 10 for img in images)
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_markdown_keeps_tables_narrow_and_numbers_readable(run):
    with open_existing(run) as store:
        md = render_markdown(store)
    heads = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert heads and max(h.count(" | ") + 1 for h in heads) <= 10
    assert "Detail, forgetting and attacks:" in md and "Detail, agreement with Retrain:" in md
    # the floor of the confidence signal is ~1e-9: a ratio shown as a bound, not 9 digits
    conf = next(line for line in md.splitlines() if "mean confidence p_y on D_f | 0.9900" in line)
    assert conf.endswith("| > 1000× |")
    assert not re.search(r"\d{6,}\.\d×", md) and "data:image" not in md


def test_proxy_check_table_and_plot(page):
    sec = page[page.index('id="retrain-free-calibration-check"') :]
    sec = sec[: sec.index("</section>")]
    cells = {}
    for kind in ("default", "proxy", "tuned"):
        vals = PROXY_GAPS[("rnd", "finetune", kind)]
        cells[kind] = f"{np.mean(vals):.2f} ± {np.std(vals, ddof=1):.2f}"
        assert cells[kind] in sec
    # the calibrated gap (4.00) is within the noise floor (4.50): marked; the default is not
    assert f'<td class="good num" title="within the noise floor">{cells["proxy"]}' in sec
    assert f'<td class="num">{cells["default"]}' in sec
    assert "✗✗✗ / ✓✓✓ / ✓✓✓" in sec and '<td class="num">4.50</td>' in sec


def test_an_unreadable_proxy_check_is_a_note_not_a_crash(tmp_path):
    run = build(tmp_path, proxy=False)
    (run / "proxy-check.json").write_text(json.dumps({"rows": [{"scenario": "rnd"}]}))
    with open_existing(run) as store:
        md = render_markdown(store)
    assert "> `proxy-check.json` cannot be read (a row lacks its scenario, method or kind)" in md
    assert "## Results" in md and "## Provenance" in md


def test_write_reports_writes_both_files_from_one_document(run, written, page):
    with open_existing(run) as store:
        assert written["report_md"].read_text(encoding="utf-8") == render(store, "md")
        assert render_markdown(store) == render(store, "md")
    assert page.count("data:image/png") == 9
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temp files

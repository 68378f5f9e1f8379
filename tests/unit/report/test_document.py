"""The shared document model: one document, Markdown and self-contained HTML."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from unlearnkit.deletion import report as deletion
from unlearnkit.report import (
    BulletList,
    Cell,
    Document,
    Figure,
    GroupRow,
    Note,
    Paragraph,
    Row,
    Section,
    Table,
    to_html,
    to_markdown,
)
from unlearnkit.report.figures import histograms


def _doc(make=lambda: histograms({"a": np.arange(10.0)}, "x", "t")) -> Document:
    table = Table(
        ["name", "value"],
        [GroupRow("group <one>"), Row(["Retrain", Cell("1.0 ± 0.1", sub="[0.8, 1.2]")], "ref")],
        caption="Caption:",
        footer="N = 3.",
    )
    return Document("A *test* report").add(
        Note("careful: `x < 1`", kind="warn"),
        Section("First").add(Paragraph("**bold** and <b>not a tag</b>"), table),
        Section("Only plots").add(Figure(make, alt="a plot")),
        Section("Third").add(BulletList(["one", "two"])),
        Section("Fourth").add(Paragraph("markdown only", only="md")),
    )


def test_markdown_leaves_out_figures_group_rows_and_second_lines():
    md = to_markdown(_doc())
    assert md.startswith("# A *test* report\n\n> careful: `x < 1`\n\n## First\n")
    assert "| Retrain | 1.0 ± 0.1 |" in md and "[0.8, 1.2]" not in md
    assert "group" not in md and "Only plots" not in md and "a plot" not in md
    assert "Caption:\n\n| name | value |" in md and "|\n\nN = 3." in md
    assert "- one\n- two" in md and "markdown only" in md


def test_html_is_one_self_contained_page():
    page = to_html(_doc())
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "<strong>bold</strong>" in page and "&lt;b&gt;not a tag&lt;/b&gt;" in page
    assert "<code>x &lt; 1</code>" in page and "A <em>test</em> report" in page
    assert '<tr class="group"><td colspan="2">group &lt;one&gt;</td></tr>' in page
    assert '<tr class="ref">' in page and '<span class="sub">[0.8, 1.2]</span>' in page
    assert "markdown only" not in page and "Fourth" not in page  # nothing left in HTML
    # three or more level-2 sections: a table of contents linking to each
    assert page.count('<a href="#') == 3 and 'id="only-plots"' in page
    (png,) = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("L"), dtype=float)
    assert img.shape[0] > 100 and img.std() > 10  # a drawn plot, not a blank image


def test_a_figure_with_nothing_to_draw_leaves_its_section_out():
    page = to_html(_doc(make=lambda: None))
    assert "data:image" not in page and "Only plots" not in page


EVIDENCE = {
    "verdict": {"passed": False, "criteria": {"mia_auc": True, "acc_gap": False}},
    "request": {"kind": "rows", "n_ids": 12},
    "method": {
        "name": "finetune",
        "access": "forget_and_retain",
        "seed": 0,
        "rte_seconds": 1.234,
        "diverged": False,
        "config": {"lr": 0.01},
    },
    "after": {
        "criteria": {
            "mia_auc": {"value": 0.51, "target": [0.45, 0.55], "passed": True},
            "acc_gap": {"value": 0.12, "target": 0.05, "passed": False},
        }
    },
    "before": {"criteria": {"mia_auc": {"value": 0.7}, "acc_gap": {"value": 0.3}}},
    "calibration": {
        "rows": [
            {
                "method": "finetune",
                "best_objective": 0.1,
                "trials": 4,
                "failed": 0,
                "seconds": 3.2,
                "best_config": {"lr": 0.01},
            }
        ]
    },
    "budget": {"budget_s": 60.0, "calibration_s": 12.3},
    "input": {"data": "train.csv", "held_out": "held.csv", "checkpoint_sha256": "abc"},
    "output": {"sha256": "def"},
    "software": {"unlearnkit": "0.1.0"},
}


def test_deletion_report_says_the_same_in_both_formats():
    md = deletion.markdown(EVIDENCE)
    assert md.startswith("# unlearnkit deletion report\n\n**NOT PASSED: after finetune")
    assert "| acc_gap | 0.3 | 0.12 | 0.05 | **no** |" in md
    assert "What to try:\n\n- `acc_gap`: a larger --budget-s" in md
    assert "| finetune | 0.1 | 4 | 0 | 3.2 | lr=0.01 |" in md
    assert "- checkpoint in: abc; out: def" in md
    rng = np.random.default_rng(0)
    losses = {w: {"forget": rng.exponential(1, 20), "heldout": rng.exponential(2, 30)}
              for w in ("before", "after")}  # fmt: skip
    page = deletion.html_report(EVIDENCE, losses)
    assert page.count("data:image/png;base64,") == 1 and "<script" not in page
    assert '<div class="note fail">' in page and '<td class="bad"><strong>no</strong>' in page
    assert "checkpoint in: abc; out: def" in page and "Calibration leaderboard" in page

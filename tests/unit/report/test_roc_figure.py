"""The audit report's ROC figure: stored staircase curves drawn, older rows still drawn."""

from __future__ import annotations

import numpy as np

from unlearnkit.report.figures import roc_points

LEVELS = [{"alpha": 0.01, "fpr": 0.01, "tpr": 0.2, "tpr_ci": [0.1, 0.3]}]
CURVE = {"fpr": [0.0, 0.01, 0.1, 1.0], "tpr": [0.05, 0.2, 0.5, 1.0]}


def _steps(fig):
    return [ln for ln in fig.axes[0].get_lines() if ln.get_drawstyle() == "steps-post"]


def test_a_stored_curve_is_drawn_as_a_staircase_through_its_points():
    fig = roc_points({"method": {"levels": LEVELS, "curve": CURVE}}, "t")
    (line,) = _steps(fig)
    x, y = line.get_xdata(), line.get_ydata()
    # FPR 0 sits on the axis edge of the log scale; the other points are the stored ones.
    assert x[0] == 1e-4 and list(x[1:4]) == [0.01, 0.1, 1.0]
    assert list(y[:4]) == [0.05, 0.2, 0.5, 1.0]
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)


def test_rows_without_a_curve_still_get_their_points_and_no_line():
    fig = roc_points({"old row": {"levels": LEVELS}}, "t")
    assert not _steps(fig)
    assert fig.axes[0].containers  # the operating point with its interval


def test_nothing_to_draw_gives_no_figure():
    assert roc_points({"eps": {}}, "t") is None

"""The plots of the HTML reports, drawn with matplotlib's object API (no pyplot, no display).

Every function takes plain numbers (already aggregated by the caller) and returns a
:class:`matplotlib.figure.Figure`, or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "grouped_bars",
    "histograms",
    "metric_bars",
    "pareto",
    "roc_points",
    "sweep_plot",
]

#: One colour per access level (and the reference rows), the same in every plot.
ACCESS_COLOURS = {
    "forget_only": "#c0392b",
    "forget_and_retain": "#2471a3",
    "full_train": "#7d3c98",
    "reference": "#1e8449",
    "original": "#95a5a6",
}
_LEGEND = {"reference": "Retrain (the target)", "original": "original model"}
_FLOOR = "#95a5a6"
_PALETTE = ("#2471a3", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d")


def _figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _err(half: float | None) -> float:
    return half if half is not None and math.isfinite(half) else 0.0


def pareto(points: Sequence[dict[str, Any]], floor: dict[str, float] | None, title: str) -> Any:
    """Avg. Gap to Retrain (points) against run time (log x), one point per row.

    ``points``: ``label``, ``access``, ``x`` (seconds), ``y`` (pp), ``y_half`` (95 % interval
    half-width, pp), ``diverged``. ``floor``: the noise floor's ``mean`` and ``half`` (pp),
    drawn as a band.
    """
    pts = [p for p in points if _finite(p.get("x"), p.get("y")) and p["x"] > 0]
    if not pts:
        return None
    fig = _figure(7.5, 4.6)
    ax = fig.add_subplot()
    if floor and _finite(floor.get("mean")):
        m, h = floor["mean"], _err(floor.get("half"))
        ax.axhspan(0, m, color=_FLOOR, alpha=0.15, lw=0)
        if h > 0:
            ax.axhspan(max(0.0, m - h), m + h, color=_FLOOR, alpha=0.3, lw=0)
        ax.axhline(m, color=_FLOOR, ls="--", lw=1.2, label="noise floor (Retrain′ vs Retrain)")
    seen: set[str] = set()
    for i, p in enumerate(sorted(pts, key=lambda p: p["x"])):
        colour = ACCESS_COLOURS.get(p["access"], "#34495e")
        legend = _LEGEND.get(p["access"], p["access"]) if p["access"] not in seen else None
        seen.add(p["access"])
        marker = "*" if p["access"] == "reference" else ("X" if p.get("diverged") else "o")
        ax.errorbar(
            p["x"], p["y"], yerr=_err(p.get("y_half")), fmt=marker, color=colour,
            ms=11 if marker == "*" else 7, capsize=3, label=legend,
        )  # fmt: skip
        ax.annotate(  # labels of neighbouring points alternate above and below
            p["label"], (p["x"], p["y"]), textcoords="offset points", fontsize=8,
            xytext=(6, 4 if i % 2 == 0 else -11),
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("run time of the method call (s, log scale)")
    ax.set_ylabel("Avg. Gap to Retrain (pp) ↓")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="best")
    return fig


def metric_bars(
    rows: Sequence[dict[str, Any]],
    metrics: Sequence[tuple[str, str]],
    reference: dict[str, dict[str, float]],
    title: str,
) -> Any:
    """Horizontal bars per metric (one panel each), every row's mean with its 95 % interval.

    ``rows``: ``label``, ``access`` and per metric key ``{"mean", "half"}`` (%). ``reference``:
    per metric key, Retrain's ``value`` and the noise ``floor`` (%), drawn as a line and band.
    """
    rows = [r for r in rows if any(_finite(r.get(k, {}).get("mean")) for k, _ in metrics)]
    if not rows:
        return None
    fig = _figure(3.0 * len(metrics) + 1.5, 0.32 * len(rows) + 1.4)
    axes = fig.subplots(1, len(metrics), sharey=True)
    y = np.arange(len(rows))[::-1]
    for ax, (key, name) in zip(np.atleast_1d(axes), metrics):
        means = [r.get(key, {}).get("mean", math.nan) for r in rows]
        halves = [_err(r.get(key, {}).get("half")) for r in rows]
        colours = [ACCESS_COLOURS.get(r["access"], "#34495e") for r in rows]
        ax.barh(y, np.nan_to_num(means), xerr=halves, color=colours, alpha=0.8, capsize=2)
        ref = reference.get(key, {})
        if _finite(ref.get("value")):
            v, fl = ref["value"], ref.get("floor", 0.0) or 0.0
            if fl > 0:
                ax.axvspan(v - fl, v + fl, color=_FLOOR, alpha=0.3, lw=0)
            ax.axvline(v, color=ACCESS_COLOURS["reference"], lw=1.5)
        ax.set_title(name, fontsize=10)
        ax.set_xlim(0, 100)
        ax.grid(True, axis="x", alpha=0.25)
    first = np.atleast_1d(axes)[0]
    first.set_yticks(y, [r["label"] for r in rows], fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


def histograms(
    series: dict[str, np.ndarray], xlabel: str, title: str, bins: int = 30, log: bool = False
) -> Any:
    """Overlaid density histograms of per-example values, shared bins."""
    data = {k: np.asarray(v, dtype=float) for k, v in series.items()}
    data = {k: v[np.isfinite(v)] for k, v in data.items()}
    data = {k: v for k, v in data.items() if v.size}
    if not data:
        return None
    every = np.concatenate(list(data.values()))
    lo, hi = float(every.min()), float(every.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig = _figure(6.5, 3.4)
    ax = fig.add_subplot()
    for (name, v), colour in zip(data.items(), _PALETTE):
        ax.hist(v, bins=edges, alpha=0.55, color=colour, label=f"{name} (n = {v.size})")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def roc_points(models: dict[str, dict[str, Any]], title: str) -> Any:
    """Log-log ROC curves with each model's stored operating points and their intervals.

    ``models``: name -> ``{"levels": [{"alpha", "fpr", "tpr", "tpr_ci"}], "n_pos", "n_neg",
    "curve": {"fpr": [...], "tpr": [...]}}`` as the audit rows keep them (rows stored before
    the curve was kept have only the points). Curves are drawn as staircases; points at TPR or
    FPR 0 sit on the axis edge (open markers).
    """
    if not any(m.get("levels") for m in models.values()):
        return None
    fig = _figure(5.4, 4.4)
    ax = fig.add_subplot()
    lo = 1e-4
    grid = np.logspace(-4, 0, 50)
    ax.plot(grid, grid, color=_FLOOR, ls=":", lw=1, label="chance (TPR = FPR)")
    for a, name in ((1e-3, "FPR 0.1 %"), (1e-2, "FPR 1 %")):
        ax.axvline(a, color="#bbb", lw=0.8)
        ax.text(a * 1.15, 0.5, name, fontsize=7, rotation=90, color="#777", va="center",
                transform=ax.get_xaxis_transform())  # fmt: skip
    for (name, m), colour in zip(models.items(), _PALETTE):
        curve = m.get("curve") or {}
        if curve.get("fpr"):
            xs = np.maximum(np.asarray(curve["fpr"], dtype=float), lo)
            ys = np.maximum(np.asarray(curve["tpr"], dtype=float), lo)
            # every ROC ends at (1, 1): close the staircase there
            ax.plot(np.append(xs, 1.0), np.append(ys, 1.0), drawstyle="steps-post",
                    color=colour, lw=1.3, alpha=0.8)  # fmt: skip
        for i, lv in enumerate(m.get("levels", [])):
            fpr, tpr = float(lv["fpr"]), float(lv["tpr"])
            ci = lv.get("tpr_ci") or (tpr, tpr)
            x, yv = max(fpr, lo), max(tpr, lo)
            edge = fpr < lo or tpr < lo
            yerr = [[max(yv - max(float(ci[0]), lo), 0.0)], [max(float(ci[1]) - yv, 0.0)]]
            ax.errorbar(
                x, yv, yerr=yerr, fmt="o", color=colour, mfc="white" if edge else colour,
                capsize=3, label=name if i == 0 else None,
            )  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo * 0.8, 1.2)
    ax.set_ylim(lo * 0.8, 1.2)
    ax.set_xlabel("false-positive rate (realised)")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.25)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def sweep_plot(
    points: Sequence[dict[str, Any]], floor: float | None, title: str, tau: float | None = None
) -> Any:
    """Avg. Gap (pp) over a sweep's grid.

    ``points``: ``config`` (parameter -> value), ``label``, ``mean`` and ``half`` (pp). One
    varying parameter: a line over it (log x when its values span a factor of 10 or more); two:
    a heat map; otherwise the points in grid order.
    """
    pts = [p for p in points if _finite(p.get("mean"))]
    if not pts:
        return None
    names = sorted({k for p in pts for k in p.get("config", {})})
    varying = [n for n in names if len({repr(p["config"].get(n)) for p in pts}) > 1]
    fig = _figure(6.2, 3.6)
    ax = fig.add_subplot()
    if len(varying) == 2 and all(p.get("config") for p in pts):
        xs = sorted({p["config"][varying[0]] for p in pts}, key=_sortable)
        ys = sorted({p["config"][varying[1]] for p in pts}, key=_sortable)
        grid = np.full((len(ys), len(xs)), np.nan)
        for p in pts:
            grid[ys.index(p["config"][varying[1]]), xs.index(p["config"][varying[0]])] = p["mean"]
        im = ax.imshow(grid, cmap="Blues", aspect="auto", origin="lower")
        lo, hi = np.nanmin(grid), np.nanmax(grid)
        for (i, j), v in np.ndenumerate(grid):
            if math.isfinite(v):
                dark = hi > lo and (v - lo) / (hi - lo) > 0.55
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=9,
                        color="white" if dark else "black")  # fmt: skip
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
        ax.set_yticks(range(len(ys)), [str(y) for y in ys])
        ax.set_xlabel(varying[0])
        ax.set_ylabel(varying[1])
        fig.colorbar(im, ax=ax, label="Avg. Gap (pp) ↓")
        if floor is not None and math.isfinite(floor):
            title = f"{title} (noise floor {floor:.1f} pp)"
    else:
        if len(varying) == 1:
            key = varying[0]
            pts = sorted(pts, key=lambda p: _sortable(p["config"][key]))
            xs = [p["config"][key] for p in pts]
            numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
            if not numeric:
                xs = list(range(len(pts)))
                ax.set_xticks(xs, [str(p["config"][key]) for p in pts])
            elif min(xs) > 0 and max(xs) / min(xs) >= 10:
                ax.set_xscale("log")
            ax.set_xlabel(key)
        else:
            xs = list(range(len(pts)))
            ax.set_xticks(xs, [p["label"] for p in pts], rotation=30, ha="right", fontsize=7)
            ax.set_xlabel("grid point")
        ax.errorbar(
            xs, [p["mean"] for p in pts], yerr=[_err(p.get("half")) for p in pts],
            fmt="o-", color=_PALETTE[0], capsize=3, label="mean over replicates (95 % interval)",
        )  # fmt: skip
        if floor is not None and math.isfinite(floor):
            ax.axhline(floor, color=_FLOOR, ls="--", label="noise floor")
        if tau is not None:
            ax.axhline(tau, color="#e67e22", ls=":", label=f"τ = {tau:g} pp")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("Avg. Gap to Retrain (pp) ↓")
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def _sortable(v: Any) -> tuple[int, Any]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v))
    return (1, str(v))


def grouped_bars(
    groups: Sequence[str],
    series: dict[str, Sequence[tuple[float | None, float | None]]],
    lines: dict[str, float | None],
    ylabel: str,
    title: str,
) -> Any:
    """Grouped bars: for each group (x), one bar per series with its error bar; ``lines``:
    horizontal reference lines (label -> value), e.g. the noise floor."""
    if not groups or not any(_finite(v) for vals in series.values() for v, _ in vals):
        return None
    fig = _figure(max(4.5, 1.3 * len(groups) + 2.5), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, ((name, vals), colour) in enumerate(zip(series.items(), _PALETTE)):
        means = [v if _finite(v) else np.nan for v, _ in vals]
        errs = [_err(e) for _, e in vals]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, np.nan_to_num(means), width,
               yerr=errs, color=colour, alpha=0.85, capsize=3, label=name)  # fmt: skip
    for (name, value), style in zip(lines.items(), ("--", ":", "-.")):
        if value is not None and math.isfinite(value):
            ax.axhline(value, color="#555" if style != "--" else _FLOOR, ls=style, label=name)
    tilt = len(groups) > 4
    ax.set_xticks(x, list(groups), rotation=20 if tilt else 0, ha="right" if tilt else "center")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.25)
    ax.legend(fontsize=8)
    return fig

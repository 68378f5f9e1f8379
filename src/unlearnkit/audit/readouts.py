"""Row metrics and records of ROC reports, shared by the U-LiRA and RMIA audits, and the
JSON-able form of every audit record."""

from __future__ import annotations

from typing import Any

import numpy as np


def _ci_metrics(prefix: str, ci: tuple[float, float]) -> dict[str, float]:
    return {f"{prefix}_ci_lo": float(ci[0]), f"{prefix}_ci_hi": float(ci[1])}


def _roc_metrics(report: dict[str, Any], n_models: int) -> dict[str, float]:
    out = {
        "auc": float(report["auc"]),
        "balanced_acc": float(report["balanced_acc"]),
        "tpr_at_fpr_0": float(report["tpr_at_fpr_0"]),
    }
    for lv in report["levels"]:
        key = f"tpr_at_fpr_{lv['alpha']:g}"
        out[key] = float(lv["tpr"])
        out.update(_ci_metrics(key, lv["tpr_ci"]))
        out[f"fpr_at_{lv['alpha']:g}"] = float(lv["fpr"])
    out.update(
        underpowered=float(report["underpowered"]),
        n_pos=float(report["n_pos"]),
        n_neg=float(report["n_neg"]),
        n_models=float(n_models),
    )
    return out


_ROC_KEYS = ("n_pos", "n_neg", "auc", "balanced_acc", "tpr_at_fpr_0", "underpowered", "levels")


def _roc_record(report: dict[str, Any]) -> dict[str, Any]:
    """What an audit row keeps of a :func:`~unlearnkit.metrics.functional.roc.low_fpr_report`:
    the summary, the low-FPR levels and the thinned curve (``curve``: FPR and TPR lists)."""
    out = {k: report[k] for k in _ROC_KEYS}
    if "curve" in report:
        out["curve"] = report["curve"]
    return out


def _jsonable(obj: Any) -> Any:
    """Numpy arrays and scalars to lists and Python numbers (the store writes JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj

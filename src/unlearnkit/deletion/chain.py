"""Sequential deletion requests: each request's folder links to the one before it.

A request's folder holds ``forget-ids.txt``: every ID deleted so far (this request's and the
earlier ones', sorted), whose SHA-256 the evidence records as ``cumulative.ids_sha256``. A new
request on the checkpoint an earlier request wrote (found beside the checkpoint, or named with
``--previous DIR``) checks the hash chain (the earlier output is this input), leaves the earlier
deleted rows out of the data it trains on, refuses IDs that were already deleted, and checks
that the earlier deleted rows still look unseen after this request (no relapse).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DataError
from ..metrics.functional.proxy import proxy_criteria
from ..metrics.signals import compute_signals
from .inputs import LoadedData
from .model_io import sha256_file, sha256_ids

__all__ = [
    "IDS_FILE",
    "Previous",
    "find_previous",
    "load_previous",
    "relapse_check",
    "without_rows",
]

IDS_FILE = "forget-ids.txt"


@dataclass
class Previous:
    """An earlier request: its folder, evidence and the cumulative deleted IDs."""

    folder: Path
    evidence: dict[str, Any]
    ids: list[str]

    @property
    def output_sha256(self) -> str:
        return str(self.evidence.get("output", {}).get("sha256", ""))


def load_previous(folder: str | Path) -> Previous:
    """Read an earlier request's folder; DataError when it is not one or has been altered."""
    d = Path(folder)
    ev_path, ids_path = d / "evidence.json", d / IDS_FILE
    if not ev_path.is_file() or not ids_path.is_file():
        raise DataError(
            f"--previous {d} is not the folder of an earlier 'unlearnkit forget' (it needs "
            f"evidence.json and {IDS_FILE})"
        )
    try:
        evidence = json.loads(ev_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{ev_path} is not readable JSON ({exc})") from None
    ids = [ln for ln in ids_path.read_text(encoding="utf-8").splitlines() if ln]
    expected = evidence.get("cumulative", {}).get("ids_sha256")
    if expected != sha256_ids(ids):
        raise DataError(
            f"{ids_path} does not match the SHA-256 its evidence records; the earlier request's "
            "folder was altered"
        )
    if evidence.get("request", {}).get("kind") != "rows":
        raise DataError(f"--previous {d} deleted whole classes; chaining follows row requests only")
    return Previous(d, evidence, ids)


def find_previous(checkpoint: Path) -> Path | None:
    """The folder of the request that wrote ``checkpoint``, when it sits beside its evidence."""
    ev = checkpoint.parent / "evidence.json"
    if not (ev.is_file() and (checkpoint.parent / IDS_FILE).is_file()):
        return None
    try:
        out = json.loads(ev.read_text(encoding="utf-8")).get("output", {})
    except (ValueError, UnicodeDecodeError):
        return None
    if out.get("file") == checkpoint.name and out.get("sha256") == sha256_file(checkpoint):
        return checkpoint.parent
    return None


def check_link(prev: Previous, checkpoint_sha256: str | None) -> None:
    """The hash chain: this request's input must be the earlier request's output."""
    if checkpoint_sha256 is not None and checkpoint_sha256 != prev.output_sha256:
        raise DataError(
            f"the checkpoint is not the model {prev.folder} wrote (its sha256 differs); give "
            "that folder's model.safetensors as --checkpoint, or the matching --previous"
        )


def without_rows(data: LoadedData, ids: set[str]) -> tuple[LoadedData, LoadedData | None]:
    """``data`` without the rows whose IDs are in ``ids``, and those rows (or None)."""
    gone = np.array([i in ids for i in data.ids], dtype=bool)
    if not gone.any():
        return data, None

    def pick(mask: np.ndarray) -> LoadedData:
        idx = torch.as_tensor(np.flatnonzero(mask))
        return LoadedData(
            x=data.x[idx],
            y=data.y[idx],
            ids=[data.ids[i] for i in np.flatnonzero(mask)],
            label_names=data.label_names,
            source=data.source,
            kind=data.kind,
            feature_names=data.feature_names,
            categories=data.categories,
            image_shape=data.image_shape,
            id_source=data.id_source,
        )

    return pick(~gone), pick(gone)


def relapse_check(model: nn.Module, earlier: LoadedData, task: Any) -> dict[str, Any]:
    """Do the earlier deleted rows still look unseen? The membership, accuracy-gap and loss
    criteria of those rows against the report half of the held-out data."""
    held = task.test_full if hasattr(task, "test_full") else task.test
    sf = compute_signals(model, earlier.x, earlier.y)
    sh = compute_signals(model, held.x, held.y)
    crit = proxy_criteria(sf, sh, None, {"acc_heldout": float(sh.corr.mean())}, scenario="random")
    keep = {k: v for k, v in crit.items() if k in ("mia_auc", "acc_gap", "loss_ks")}
    return {
        "n_rows": len(earlier.y),
        "criteria": keep,
        "passed": all(c["passed"] for c in keep.values()),
    }

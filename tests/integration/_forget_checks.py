"""What the ``forget`` tests check on every run's output folder."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from .usermodels import tabular


def users_model(path: Path, cls=tabular.TabNet) -> torch.nn.Module:
    """What the user does with the output: no unlearnkit involved."""
    net = cls()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def check_outputs(out: Path, code: int, err: str) -> dict:
    assert code in (0, 3), err
    ev = json.loads((out / "evidence.json").read_text())
    assert (code == 0) == ev["verdict"]["passed"], err  # the exit code is the verdict
    last = err.strip().splitlines()[-1]
    assert last.startswith("PASSED" if code == 0 else "NOT PASSED"), err
    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    assert ev["output"]["sha256"] == digest
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "<script" not in html
    assert ev["budget"]["calibration_s"] <= 1.1 * ev["budget"]["budget_s"] + 1.0
    return ev


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion ``p`` measured on ``n`` samples."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half

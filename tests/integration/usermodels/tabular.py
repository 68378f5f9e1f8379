"""A user's own tabular classifier and training loop: plain PyTorch, no unlearnkit."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import nn


class TabNet(nn.Module):
    """Linear, BatchNorm, ReLU, Dropout, twice, then a head."""

    def __init__(self, n_features: int = 12, n_classes: int = 4, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_features, width),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(width, width),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def make_data(n: int, seed: int, n_features: int = 12, n_classes: int = 4):
    """Overlapping Gaussian classes with 10 % flipped labels: a model that trains to 100 % on
    its training rows has memorised some of them (what makes a deletion measurable)."""
    rng = np.random.default_rng(1234)
    centres = rng.normal(0, 1.0, size=(n_classes, n_features))
    r = np.random.default_rng(seed)
    y = r.integers(0, n_classes, n)
    x = centres[y] + r.normal(0, 1.3, size=(n, n_features))
    flip = r.random(n) < 0.1
    y = np.where(flip, r.integers(0, n_classes, n), y)
    return x.astype(np.float32), y.astype(np.int64)


def train(x: np.ndarray, y: np.ndarray, *, seed: int = 0, epochs: int = 60) -> TabNet:
    torch.manual_seed(seed)
    model = TabNet(n_features=x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=g).split(32):
            if len(idx) < 2:
                continue
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(torch.as_tensor(x)).argmax(1).numpy() == y).mean())


# Written as strings; the user encoded them in sorted order (as sklearn's LabelEncoder does),
# which is how unlearnkit maps string labels to the model's output indices.
LABELS = ("bronze", "gold", "platinum", "silver")


def write_csv(path: Path, x: np.ndarray, y: np.ndarray, ids: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *[f"f{i}" for i in range(x.shape[1])], "y"])
        for i, row, label in zip(ids, x, y):
            w.writerow([i, *[f"{v:.6f}" for v in row], LABELS[label]])

"""A user's own small image classifier and an image-folder dataset written as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

CLASSES = ("cats", "dogs", "owls")


class TinyConv(nn.Module):
    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten()
        )
        self.fc = nn.Linear(8 * 16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def write_folder(root: Path, per_class: int, seed: int) -> None:
    """``root/<class>/img_NNN.png``: 8x8 RGB images, a class colour plus heavy noise."""
    rng = np.random.default_rng(seed)
    base = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200]], dtype=np.float64)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = base[c] + rng.normal(0, 90, size=(8, 8, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                root / name / f"img_{i:03d}.png"
            )


def load_folder(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """How the user read the folder for training: sorted classes, sorted files, [0, 1]."""
    xs, ys = [], []
    for c, name in enumerate(sorted(p.name for p in root.iterdir())):
        for f in sorted((root / name).iterdir()):
            xs.append(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0)
            ys.append(c)
    return torch.as_tensor(np.stack(xs)).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(ys)


def train(x: torch.Tensor, y: torch.Tensor, seed: int = 0, epochs: int = 80) -> TinyConv:
    torch.manual_seed(seed)
    model = TinyConv()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()

"""The tiny synthetic benchmark spec and audit sizes shared by these tests."""

from __future__ import annotations

TINY = {
    "name": "tiny-audit",
    "dataset": {
        "name": "synthetic",
        "n_train": 120,
        "n_val": 40,
        "n_test": 80,
        "num_classes": 3,
        "input_shape": [8],
        "label_noise": 0.1,
        "seed": 0,
    },
    "model": {"arch": "mlp", "hidden": [16]},
    "recipe": {"epochs": 5, "batch_size": 32, "lr": 0.1},
    "scenarios": [
        {"name": "rnd", "scenario": "random", "fraction": 0.1},
        {"name": "cls", "scenario": "class", "classes": [1]},
    ],
    "methods": [{"method": "finetune"}],
    "seeds": [0],
}
#: Small but non-trivial: every kind trains a handful of 16-unit MLPs for 5 epochs.
N = 4
ULIRA_OPTIONS = {"forget_sets": 2, "forget_fraction": 0.2}
FT = {"epochs": 1}

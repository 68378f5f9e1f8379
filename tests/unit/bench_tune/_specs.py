"""Tiny benchmark specs shared by the tuning tests (synthetic data, a small MLP)."""

from __future__ import annotations

from typing import Any

from unlearnkit.bench.spec import BenchSpec, spec_from_dict


def tiny_spec(
    n_val: int = 64,
    seeds: int = 1,
    epochs: int = 3,
    methods: Any = "all",
    **scenario_extra: Any,
) -> BenchSpec:
    """Two scenarios (random 10 %, class 3) on 4 synthetic classes; ``scenario_extra`` goes
    into the class scenario (e.g. its ``method_config``)."""
    return spec_from_dict(
        {
            "name": "tiny",
            "dataset": {
                "name": "synthetic",
                "n_train": 160,
                "n_val": n_val,
                "n_test": 64,
                "num_classes": 4,
                "input_shape": [8],
                "seed": 0,
            },
            "model": {"arch": "mlp", "hidden": [16]},
            "recipe": {"epochs": epochs, "batch_size": 32, "lr": 0.05},
            "scenarios": [
                {"name": "rnd", "scenario": "random", "fraction": 0.1, "seed": 0},
                {"name": "cls", "scenario": "class", "classes": [3], **scenario_extra},
            ],
            "seeds": list(range(seeds)),
            "methods": methods,
            "threads": 1,
        }
    )

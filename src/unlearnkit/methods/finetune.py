"""Fine-tune on the retain set only (catastrophic forgetting of D_f)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..data import DataViews
from ..optim import OptimizerSpec
from ._loop import supervised_epochs
from ._registry import register_method
from .base import AccessSpec, RunContext, int_range, loguniform
from .config import BaseConfig


@dataclass(frozen=True)
class FinetuneConfig(BaseConfig):
    """Fine-tune: the SalUn preset (SGD lr 0.01, momentum 0.9, wd 5e-4, 10 epochs)."""

    epochs: int = 10
    batch_size: int = 256
    optimizer: OptimizerSpec = OptimizerSpec(lr=0.01)


@register_method(
    "finetune",
    aliases=("ft",),
    config=FinetuneConfig,
    access=AccessSpec(level="forget_and_retain", uses_forget=False, forget_labels=False),
    presets={
        "salun": {},
        "ssd": {"lr": 0.02, "epochs": 5},
        "digits": {"lr": 0.02, "epochs": 10, "batch_size": 64},
    },
    search_space={"lr": loguniform(1e-3, 1e-1), "epochs": int_range(1, 20)},
)
def finetune(model: nn.Module, data: DataViews, config: FinetuneConfig, *, ctx: RunContext):
    """Fine-tune on the retain set with cross-entropy; the forget set is never read.

    Reference: OPTML-Group/Unlearn-Saliency ``unlearn/FT.py``. Objective:
    ``min_theta mean_{B_r} CE(f_theta(x_r), y_r)`` for E epochs, train mode, augmentation on.
    """
    supervised_epochs(model, data.retain, config, ctx)
    return model

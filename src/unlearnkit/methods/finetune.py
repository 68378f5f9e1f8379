"""Fine-tune on the retain set only (catastrophic forgetting of D_f)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from ..data import DataViews
from ..optim import OptimizerSpec
from ._loop import epochs, make_optimizer, make_scheduler, set_train_mode, steps
from ._registry import register_method
from .base import AccessSpec, BaseConfig, RunContext, int_range, loguniform


@dataclass(frozen=True)
class FinetuneConfig(BaseConfig):
    """Fine-tune: the SalUn preset (SGD lr 0.01, momentum 0.9, wd 5e-4, 10 epochs)."""

    epochs: int = 10
    batch_size: int = 256
    optimizer: OptimizerSpec = OptimizerSpec(lr=0.01)


def ce_epochs(model: nn.Module, view, config: BaseConfig, ctx: RunContext) -> None:
    """``config.epochs`` passes of cross-entropy on ``view`` with the recipe's augmentation."""
    loader = view.loader(
        config.batch_size,
        shuffle=True,
        augment=config.augment_retain,
        generator=ctx.generator,
        device=ctx.device,
    )
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config, len(loader))
    set_train_mode(model, freeze_bn_stats=config.freeze_bn_stats)
    for _ in epochs(ctx, config.epochs):
        for xb, yb in steps(loader, ctx):
            if not ctx.step(opt, F.cross_entropy(model(xb), yb)):
                break
            if sched is not None and config.scheduler.per_step:
                sched.step()
        if sched is not None and not config.scheduler.per_step:
            sched.step()


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
    ce_epochs(model, data.retain, config, ctx)
    return model

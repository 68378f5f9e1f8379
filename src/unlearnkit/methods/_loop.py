"""Shared epoch/step helpers for methods (optional: a method may write its own loop)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..data import BatchLoader, DataView, cycle
from ..optim import build_optimizer, build_scheduler
from .base import RunContext
from .config import BaseConfig

__all__ = [
    "GRAD_CHUNK_MB",
    "LRSchedule",
    "epochs",
    "full_precision",
    "grad_chunk_size",
    "last_linear",
    "make_optimizer",
    "make_scheduler",
    "paired_batches",
    "penultimate_features",
    "set_train_mode",
    "steps",
    "supervised_epochs",
]


#: Memory one chunk of per-sample gradients may take when a method sizes its chunks itself
#: (MiB of float32 values): a few samples at a time for a ResNet-18 (11M parameters, 45 MB per
#: gradient), hundreds for the small benchmark models.
GRAD_CHUNK_MB = 256


def grad_chunk_size(num_params: int, per_sample: int = 1, budget_mb: float = GRAD_CHUNK_MB) -> int:
    """Samples per chunk so that ``chunk * per_sample * num_params`` float32 values take at
    most ``budget_mb`` MiB (at least one sample).

    ``per_sample``: parameter-sized vectors held per sample (e.g. K per-class gradients, or 2
    when the gradients are also copied into one flat block).
    """
    per = max(1, int(num_params)) * max(1, int(per_sample)) * 4
    return max(1, int(budget_mb * 2**20) // per)


def full_precision(device: torch.device | str | None) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device``'s type: for statistics (Fisher, influence,
    saliency, importances) that a mixed-precision run still computes in float32; float16
    gradients without loss scaling would flush small values to zero."""
    kind = torch.device(device).type if device is not None else "cpu"
    return torch.autocast(kind, enabled=False)


def set_train_mode(model: nn.Module, *, freeze_bn_stats: bool = False) -> None:
    """``model.train()``, with BatchNorm layers kept in eval mode when ``freeze_bn_stats``."""
    model.train()
    if freeze_bn_stats:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def make_optimizer(model: nn.Module, config: BaseConfig) -> torch.optim.Optimizer:
    """A fresh optimizer over all trainable parameters, from ``config.optimizer``."""
    return build_optimizer((p for p in model.parameters() if p.requires_grad), config.optimizer)


class LRSchedule:
    """The learning-rate schedule of a method, stepped at the right moments.

    Call :meth:`after_step` after every optimizer update and :meth:`after_epoch` after every
    epoch; whichever does not match the schedule's unit (``per_step``) does nothing, and so do
    both when there is no schedule.
    """

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler | None, per_step: bool):
        self.scheduler, self.per_step = scheduler, per_step

    def after_step(self) -> None:
        if self.scheduler is not None and self.per_step:
            self.scheduler.step()

    def after_epoch(self) -> None:
        if self.scheduler is not None and not self.per_step:
            self.scheduler.step()


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: BaseConfig, steps_per_epoch: int
) -> LRSchedule:
    """The schedule of ``config.scheduler`` over ``config.epochs`` (or their steps)."""
    spec = config.scheduler
    total = config.epochs * steps_per_epoch if spec.per_step else config.epochs
    return LRSchedule(build_scheduler(optimizer, spec, total), spec.per_step)


def epochs(ctx: RunContext, n: int) -> Iterator[int]:
    """Yield epoch numbers ``0..n-1`` until the context stops."""
    for e in range(n):
        if not ctx.can_step():
            return
        yield e


def steps(
    loader: BatchLoader, ctx: RunContext
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield the batches of one pass, stopping (before the forward pass) when the context does."""
    for batch in loader:
        if not ctx.can_step():
            return
        yield batch


def paired_batches(driver: BatchLoader, other: BatchLoader, ctx: RunContext):
    """One epoch over ``driver`` with ``other`` cycled (and re-shuffled on every new pass)."""
    other_it = cycle(other)
    for batch in driver:
        if not ctx.can_step():
            return
        yield batch, next(other_it)


def last_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` module in registration order (the classifier head)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no nn.Linear head; pass feature_fn= to the front door")
    return linears[-1]


@contextlib.contextmanager
def penultimate_features(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Capture the input of the last ``nn.Linear`` on every forward pass inside the block.

    The captured tensors are detached. The hook is removed on exit, even after an error.
    """
    captured: list[torch.Tensor] = []
    head = last_linear(model)

    def hook(_mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].detach().flatten(1))

    handle = head.register_forward_pre_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def supervised_epochs(
    model: nn.Module,
    view: DataView,
    config: BaseConfig,
    ctx: RunContext,
    *,
    penalty: Callable[[int, nn.Module], torch.Tensor | None] | None = None,
) -> None:
    """``config.epochs`` passes of cross-entropy on ``view`` (shuffled, augmented per
    ``config.augment_retain``), with an optional ``penalty(epoch, model)`` added to each batch
    loss (``None`` adds nothing). The optimizer and schedule come from ``config``."""
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
    for epoch in epochs(ctx, config.epochs):
        for xb, yb in steps(loader, ctx):
            loss = F.cross_entropy(model(xb), yb)
            extra = penalty(epoch, model) if penalty is not None else None
            if extra is not None:
                loss = loss + extra
            if not ctx.step(opt, loss):
                break
            sched.after_step()
        sched.after_epoch()

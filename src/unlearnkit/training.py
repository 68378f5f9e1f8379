"""The one training engine: trains the original model and the retrained oracle.

>>> import unlearnkit as uk
>>> bundle = uk.datasets.load("digits")
>>> recipe = uk.TrainRecipe(epochs=2)
>>> model = uk.train(uk.models.build("mlp", bundle), bundle.train, recipe, seed=0)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checks import PRECISIONS, check_device, check_model, check_precision, check_seed
from .data import BatchLoader, DataView
from .datasets import Split
from .datasets._lazy import is_lazy
from .errors import ConfigError, DataError
from .optim import (
    OptimizerSpec,
    SchedulerSpec,
    build_optimizer,
    build_scheduler,
    check_fields,
)

__all__ = ["MixedPrecision", "TrainRecipe", "TrainingDiverged", "train"]

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The training loss became non-finite (the recipe's learning rate is too high)."""


_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision:
    """How one run computes at one precision on one device: its autocast region, its loss
    scaler (``fp16`` only) and whether convolutions get the channels-last memory format.

    ``fp32`` switches autocast *off* inside its region, so a run keeps its own precision
    even when the caller has an autocast of its own active.
    """

    def __init__(self, device: torch.device | str, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = _AMP_DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None

    @property
    def mixed(self) -> bool:
        """Whether forward passes run in a 16-bit float type."""
        return self.dtype is not None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The region of forward passes and losses (not the backward pass or the update)."""
        if self.dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scale_held_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Multiply the gradients ``optimizer`` already holds by the loss scale (a power of
        two, so exactly), before a scaled backward pass adds to them: gradient accumulation
        across steps, whose earlier gradients were unscaled by their own step."""
        if self.scaler is None:
            return
        scale = self.scaler.get_scale()
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(scale)

    def wants_channels_last(self, model: nn.Module) -> bool:
        """Channels-last pays on CUDA tensor cores: a mixed-precision CUDA run of a model with
        2-D convolutions (fp32 runs keep the default layout, so they stay as they were)."""
        return (
            self.mixed
            and self.device.type == "cuda"
            and any(isinstance(m, nn.Conv2d) for m in model.modules())
        )

    def prepare(self, model: nn.Module) -> nn.Module:
        """Put ``model``'s 4-D weights in channels-last layout where that pays (in place)."""
        if self.wants_channels_last(model):
            model.to(memory_format=torch.channels_last)
        return model


@dataclass(frozen=True)
class TrainRecipe:
    """How the original model is trained; Retrain re-uses it on the retain set.

    Args:
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr, momentum, weight_decay, nesterov: optimizer settings.
        epochs: full passes over the training data.
        batch_size: mini-batch size (the last short batch is kept).
        schedule: ``none``, ``cosine`` (per step, to 0) or ``multistep`` (per epoch).
        milestones, gamma: for ``multistep``.
        warmup_epochs: linear warm-up length.
        augment: apply the dataset's training augmentation, if it has one.
        seed: default seed when :func:`train` is called without one.
        precision: ``fp32`` (default), ``bf16`` or ``fp16`` (CUDA only): see
            :func:`unlearnkit.checks.check_precision`. Left out of :meth:`to_dict` and
            :meth:`hash` at ``fp32``, so recipes written before it existed keep their hash.
    """

    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    epochs: int = 60
    batch_size: int = 64
    schedule: str = "none"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    augment: bool = True
    seed: int | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_fields(self, "recipe.")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"recipe precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.epochs < 0:
            raise ConfigError(f"recipe epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"recipe batch_size must be >= 1, got {self.batch_size}")
        self.optimizer_spec()
        self.scheduler_spec(1)

    def optimizer_spec(self) -> OptimizerSpec:
        return OptimizerSpec(
            name=self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
        )

    def scheduler_spec(self, steps_per_epoch: int) -> SchedulerSpec:
        per_step = self.schedule == "cosine"
        unit = steps_per_epoch if per_step else 1
        return SchedulerSpec(
            name=self.schedule,
            per_step=per_step,
            milestones=tuple(m * unit for m in self.milestones),
            gamma=self.gamma,
            warmup_steps=self.warmup_epochs * unit,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        if d["precision"] == "fp32":
            del d["precision"]  # the default: recorded only when set, so old hashes still match
        return d

    @property
    def hash(self) -> str:
        """Content hash of everything but the seed (seeds are recorded separately)."""
        d = self.to_dict()
        d.pop("seed")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _as_tensors(data: Split | DataView | tuple[torch.Tensor, torch.Tensor]):
    """``(x, y, augment)`` of the data; ``x`` may be disk-backed (read batch by batch)."""
    if isinstance(data, (Split, DataView)):
        x, y, aug = data.x, data.y, getattr(data, "augment", None)
    elif isinstance(data, tuple) and len(data) == 2:
        x, y, aug = data[0], data[1], None
    else:
        raise DataError("train() takes a Split, a DataView or an (x, y) pair of tensors")
    if y is None:
        raise DataError("train() needs labels; this view has them withheld")
    if len(x) == 0:
        raise DataError("cannot train on an empty set")
    return x, y, aug


def train(
    model: nn.Module,
    data: Split | DataView | tuple[torch.Tensor, torch.Tensor],
    recipe: TrainRecipe | None = None,
    *,
    seed: int | None = None,
    device: torch.device | str | None = None,
    precision: str | None = None,
) -> nn.Module:
    """Train ``model`` in place with cross-entropy and return it in eval mode.

    The run is fully determined by ``seed``: batch order comes from a generator seeded with it
    and dropout-style randomness from a forked, seeded global RNG (the caller's RNG state is
    left untouched).

    ``device``: where to train (``"auto"``: CUDA, then MPS, then the CPU; default: the model's
    device). ``precision`` (default: the recipe's): ``fp32``, or ``bf16`` / ``fp16`` mixed
    precision, where the forward pass and loss run under autocast, ``fp16`` with a gradient
    scaler, and on CUDA a model with 2-D convolutions is switched to channels-last layout.

    A split read from disk (the ``image_folder`` dataset) is streamed: each batch is decoded
    when it is needed, through a ``DataLoader`` (:class:`~unlearnkit.data.BatchLoader`).

    Raises:
        DataError: no labels or empty data.
        ConfigError: a seed that is not a non-negative integer, an unavailable device, a
            precision the device cannot run, or a model that does not fit the data (see
            :func:`unlearnkit.checks.check_model`).
        TrainingDiverged: the loss became non-finite.
    """
    recipe = recipe or TrainRecipe()
    if not isinstance(recipe, TrainRecipe):
        raise ConfigError(f"recipe must be a TrainRecipe(...), got {type(recipe).__name__}")
    seed = check_seed(seed if seed is not None else (recipe.seed or 0))
    x, y, aug = _as_tensors(data)
    device = check_device(device)
    # shape, width and device, before any update (disk-backed inputs: probe two decoded rows)
    check_model(model, (x[:2] if is_lazy(x) else x, y), device)
    if device is not None:
        model.to(device)
    dev = next(model.parameters()).device
    amp = MixedPrecision(
        dev, check_precision(recipe.precision if precision is None else precision, dev)
    )
    amp.prepare(model)
    gen = torch.Generator().manual_seed(seed)
    loader = BatchLoader(
        x,
        y,
        recipe.batch_size,
        shuffle=True,
        generator=gen,
        augment=aug if recipe.augment else None,
        device=dev if dev.type != "cpu" else None,
    )
    opt = build_optimizer(model.parameters(), recipe.optimizer_spec())
    sched_spec = recipe.scheduler_spec(len(loader))
    sched = build_scheduler(
        opt, sched_spec, recipe.epochs * len(loader) if sched_spec.per_step else recipe.epochs
    )
    model.train()
    scaler = amp.scaler
    # fp32: autocast switched off once around the whole loop; mixed: on around each forward.
    outer = contextlib.nullcontext() if amp.mixed else amp.autocast()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), outer:
        torch.manual_seed(seed)
        for epoch in range(recipe.epochs):
            losses = []
            for xb, yb in loader:
                opt.zero_grad(set_to_none=True)
                if amp.mixed:
                    with amp.autocast():
                        loss = F.cross_entropy(model(xb), yb)
                else:
                    loss = F.cross_entropy(model(xb), yb)
                if scaler is None:
                    loss.backward()
                    opt.step()
                else:  # fp16: a step whose scaled gradients overflow is skipped by the scaler
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                losses.append(loss.detach())  # summed once per epoch: no kernel per step
                if sched is not None and sched_spec.per_step:
                    sched.step()
            if sched is not None and not sched_spec.per_step:
                sched.step()
            # One host sync per epoch, not per step: the engine stays as fast as a bare loop.
            mean_loss = float(torch.stack(losses).sum()) / len(losses) if losses else 0.0
            if not math.isfinite(mean_loss):
                raise TrainingDiverged(
                    f"training loss became non-finite in epoch {epoch + 1}; lower the recipe's lr"
                )
            log.debug("epoch %d loss %.4f", epoch + 1, mean_loss)
    model.eval()
    return model

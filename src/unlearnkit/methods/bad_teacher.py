"""Bad Teacher: distil D_f from a random (incompetent) teacher and D_r from the original."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..data import BatchLoader, DataViews, concat_rows, take_rows
from ..errors import AccessError, ConfigError
from ..optim import OptimizerSpec
from ._loop import epochs, make_optimizer, make_scheduler, set_train_mode, steps
from ._registry import register_method
from .base import AccessSpec, RunContext, int_range, loguniform, uniform
from .config import BaseConfig

__all__ = ["BadTeacherConfig", "bad_teacher", "bad_teacher_loss", "draw_retain_subset"]

_REDUCTIONS = ("elementwise_mean", "batchmean")


@dataclass(frozen=True)
class BadTeacherConfig(BaseConfig):
    """Bad Teacher: the reference preset (Adam lr 1e-4, 1 epoch, T 1, batch 256)."""

    epochs: int = 1
    batch_size: int = 256
    optimizer: OptimizerSpec = OptimizerSpec(name="adam", lr=1e-4, weight_decay=0.0)
    temperature: float = field(default=1.0, metadata={"help": "KL temperature T (no T^2 factor)"})
    retain_fraction: float = field(
        default=0.3,
        metadata={
            "help": "fraction of D_r (floor(f * n_r) samples, drawn once) distilled from "
            "the original model"
        },
    )
    kl_reduction: str = field(
        default="elementwise_mean",
        metadata={
            "help": "elementwise_mean: average over all N*K elements (the reference's "
            "F.kl_div default); batchmean: average over the N samples"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.temperature > 0 and self.temperature != float("inf")):
            raise ConfigError(f"temperature must be a finite number > 0, got {self.temperature}")
        if not 0.0 <= self.retain_fraction <= 1.0:
            raise ConfigError(f"retain_fraction must lie in [0, 1], got {self.retain_fraction}")
        if self.kl_reduction not in _REDUCTIONS:
            raise ConfigError(
                f"kl_reduction must be one of {list(_REDUCTIONS)}, got {self.kl_reduction!r}"
            )


def bad_teacher_loss(
    student_logits: torch.Tensor,
    competent_logits: torch.Tensor,
    incompetent_logits: torch.Tensor,
    forget_tags: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "elementwise_mean",
) -> torch.Tensor:
    """The reference ``UnlearnerLoss``: KL from the tag-selected teacher to the student.

    ``q = softmax(z_bad/T)`` where the tag is 1 (forget) and ``softmax(z_o/T)`` where it is 0;
    ``s = softmax(z_student/T)``; the loss is ``sum_{b,k} q (log q - log s)`` divided by
    ``N*K`` (``"elementwise_mean"``, the reference's ``F.kl_div`` default) or ``N``
    (``"batchmean"``). No ``T^2`` factor.
    """
    t = float(temperature)
    tag = forget_tags.to(student_logits.dtype).unsqueeze(1)
    q = tag * F.softmax(incompetent_logits / t, dim=1) + (1 - tag) * F.softmax(
        competent_logits / t, dim=1
    )
    log_s = F.log_softmax(student_logits / t, dim=1)
    total = F.kl_div(log_s, q, reduction="sum")
    denom = q.numel() if reduction == "elementwise_mean" else q.shape[0]
    return total / denom


def draw_retain_subset(n_retain: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """``floor(fraction * n_retain)`` distinct positions of ``D_r``, drawn from ``generator``."""
    k = int(fraction * n_retain)  # floor, as the reference's int(0.3 * len(retain))
    return torch.randperm(n_retain, generator=generator)[:k]


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@register_method(
    "bad_teacher",
    aliases=("blindspot", "bt"),
    config=BadTeacherConfig,
    access=AccessSpec(
        level="forget_and_retain",
        retain_fraction=0.3,
        forget_labels=False,
        retain_labels=False,
        needs_model_factory=True,
    ),
    presets={
        "reference": {},
        "natmu_cifar10": {
            "optimizer": {"name": "adamw", "lr": 5e-5},
            "epochs": 5,
            "temperature": 7.2,
            "scheduler": {"name": "cosine", "per_step": True},
        },
        "natmu_cifar100": {
            "optimizer": {"name": "adamw", "lr": 2.8e-4},
            "epochs": 5,
            "temperature": 2.4,
            "scheduler": {"name": "cosine", "per_step": True},
        },
        "natmu_tiny": {
            "optimizer": {"name": "adamw", "lr": 2.7e-4},
            "epochs": 5,
            "temperature": 1.8,
            "scheduler": {"name": "cosine", "per_step": True},
        },
        "digits": {
            "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
            "temperature": 1.0,
            "epochs": 5,
            "batch_size": 64,
            "retain_fraction": 0.3,
        },
    },
    search_space={
        "lr": loguniform(1e-5, 1e-2),
        "temperature": uniform(0.5, 5.0),
        "epochs": int_range(1, 10),
        "retain_fraction": uniform(0.1, 1.0),
    },
)
def bad_teacher(model: nn.Module, data: DataViews, config: BadTeacherConfig, *, ctx: RunContext):
    """Distil D_f from a randomly initialised teacher and a D_r subset from the original model.

    Reference: Chundawat et al., "Can Bad Teaching Induce Forgetting?" (AAAI 2023);
    vikram2000b/bad-teaching-unlearning ``unlearn.py`` (``UnlearnerLoss``,
    ``blindspot_unlearner``). The competent teacher is the frozen original model, the
    incompetent one ``ctx.model_factory(seed)`` (eval mode); the student starts from the
    original model and trains in train mode on ``D_f`` (tag 1) plus a random
    ``floor(retain_fraction * n_r)`` subset of ``D_r`` (tag 0), drawn once and shuffled
    together:

        L = (1/(N*K)) sum_{b,k} q_bk (log q_bk - log s_bk),
        q = softmax(z_bad/T) for tag 1, softmax(z_o/T) for tag 0,  s = softmax(z_student/T)

    No labels are read.

    Notes [lib]:
        - ``kl_reduction="batchmean"`` divides by N instead of N*K.
        - The incompetent teacher's seed, the subset and the shuffles all come from
          ``ctx.generator``; ``augment_retain`` applies the recipe's augmentation to the mixed
          loader. ``info["retain_subset_size"]`` records the subset size.

    Raises:
        AccessError: no model factory for the incompetent teacher.
    """
    if ctx.model_factory is None:
        raise AccessError(
            "bad_teacher needs a model factory (model_factory=) for its randomly initialised "
            "teacher"
        )
    competent = (
        ctx.original_model if ctx.original_model is not None else _frozen(copy.deepcopy(model))
    )
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
    incompetent = _frozen(ctx.model_factory(seed).to(ctx.device))
    forget, retain = data.forget, data.retain
    subset = draw_retain_subset(len(retain), config.retain_fraction, ctx.generator)
    # disk-backed inputs stay on disk: the loader reads them batch by batch
    x = concat_rows([forget.x, take_rows(retain.x, subset)])
    tags = torch.cat(
        [torch.ones(len(forget), dtype=torch.long), torch.zeros(len(subset), dtype=torch.long)]
    )
    ctx.info["retain_subset_size"] = len(subset)
    ctx.info["incompetent_teacher_seed"] = seed
    loader = BatchLoader(
        x,
        tags,
        config.batch_size,
        shuffle=True,
        generator=ctx.generator,
        augment=retain.augment if config.augment_retain else None,
        device=ctx.device,
    )
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config, len(loader))
    set_train_mode(model, freeze_bn_stats=config.freeze_bn_stats)
    for _ in epochs(ctx, config.epochs):
        for xb, tb in steps(loader, ctx):
            with torch.no_grad():
                z_good = competent(xb)
                z_bad = incompetent(xb)
            loss = bad_teacher_loss(
                model(xb), z_good, z_bad, tb, config.temperature, config.kl_reduction
            )
            if not ctx.step(opt, loss):
                break
            sched.after_step()
        sched.after_epoch()
    return model

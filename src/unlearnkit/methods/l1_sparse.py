"""l1-sparse unlearning: fine-tune on the retain set with a decaying l1 penalty on all weights."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data import DataViews
from ..errors import ConfigError, DataError
from ..optim import OptimizerSpec
from ._loop import supervised_epochs
from ._registry import register_method
from .base import AccessSpec, RunContext, int_range, loguniform
from .config import BaseConfig

__all__ = ["L1SparseConfig", "l1_norm", "l1_schedule", "l1_sparse"]


@dataclass(frozen=True)
class L1SparseConfig(BaseConfig):
    """l1-sparse: README settings (SGD lr 0.01, momentum 0.9, wd 5e-4, 10 epochs), gamma 1e-4."""

    epochs: int = 10
    batch_size: int = 256
    optimizer: OptimizerSpec = OptimizerSpec(lr=0.01)
    gamma: float = field(
        default=1e-4,
        metadata={
            "help": "initial weight of the l1 penalty gamma * ||theta||_1 (decays linearly to 0)"
        },
    )
    no_l1_epochs: int = field(
        default=0,
        metadata={"help": "E_0: the last E_0 epochs run without the penalty"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise ConfigError(f"gamma must be a finite number >= 0, got {self.gamma}")
        if not 0 <= self.no_l1_epochs <= self.epochs:
            raise ConfigError(
                f"no_l1_epochs must lie in [0, epochs={self.epochs}], got {self.no_l1_epochs}"
            )


def l1_schedule(gamma: float, epochs: int, no_l1_epochs: int = 0) -> list[float]:
    """Per-epoch l1 weights ``gamma_e = gamma * (1 - e / (E - E_0))`` for ``e < E - E_0``, else 0.

    >>> l1_schedule(1.0, 4, 1)
    [1.0, 0.6666666666666667, 0.33333333333333337, 0.0]
    """
    active = epochs - no_l1_epochs
    return [gamma * (1 - e / active) if e < active else 0.0 for e in range(epochs)]


def l1_norm(model: nn.Module) -> torch.Tensor:
    """``||theta||_1`` over all parameters (weights, biases, BatchNorm affine)."""
    terms = [p.abs().sum() for p in model.parameters()]
    if not terms:
        return torch.zeros(())
    return sum(terms[1:], terms[0])


@register_method(
    "l1_sparse",
    aliases=("l1", "ft_l1", "ft_prune"),
    config=L1SparseConfig,
    access=AccessSpec(level="forget_and_retain", uses_forget=False, forget_labels=False),
    presets={
        "reference": {},
        "digits": {"gamma": 1e-4, "lr": 0.01, "epochs": 10, "batch_size": 64},
    },
    search_space={
        "gamma": loguniform(1e-6, 1e-3),
        "lr": loguniform(1e-3, 1e-1),
        "epochs": int_range(3, 15),
    },
)
def l1_sparse(model: nn.Module, data: DataViews, config: L1SparseConfig, *, ctx: RunContext):
    """Fine-tune on the retain set with a linearly decaying l1 penalty on every parameter.

    Reference: Jia et al., "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS 2023);
    OPTML-Group/Unlearn-Saliency ``Classification/unlearn/FT.py`` (``FT_l1``,
    ``l1_regularization``). Objective at epoch ``e`` (0-based, train mode, augmentation on)::

        L = CE(f_theta(x_r), y_r) + gamma_e * ||theta||_1,
        gamma_e = gamma * (1 - e / (E - E_0)) if e < E - E_0 else 0   (E_0 = no_l1_epochs)

    ``||theta||_1`` covers all parameters, biases and BatchNorm included. The forget set is
    never read. Notes [lib]: ``gamma = 1e-4`` by default (the README leaves it open; public run
    scripts use 1e-4); epochs with ``gamma_e = 0`` skip the penalty, so ``gamma = 0`` is exactly
    ``finetune``. ``ctx.info`` records the schedule as ``l1_schedule``.
    """
    retain = data.retain
    if retain is None or len(retain) == 0:
        raise DataError("l1_sparse needs a non-empty retain set")
    schedule = l1_schedule(config.gamma, config.epochs, config.no_l1_epochs)
    ctx.info["l1_schedule"] = schedule

    def penalty(epoch: int, m: nn.Module) -> torch.Tensor | None:
        return schedule[epoch] * l1_norm(m) if schedule[epoch] > 0 else None

    supervised_epochs(model, retain, config, ctx, penalty=penalty)
    return model

"""Retrain from scratch on the retain set: the gold standard every metric is anchored to."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..data import DataViews
from ..errors import AccessError, ConfigError
from ..training import TrainingDiverged, train
from ._registry import register_method
from .base import AccessSpec, RunContext
from .config import BaseConfig


@dataclass(frozen=True)
class RetrainConfig(BaseConfig):
    """Retrain takes every training setting from the original recipe (``ctx.train_recipe``)."""

    init: str = field(
        default="fresh_seed",
        metadata={"help": "fresh_seed: a new initialisation; same_init: theta_o's initial weights"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in ("fresh_seed", "same_init"):
            raise ConfigError(f"init must be 'fresh_seed' or 'same_init', got {self.init!r}")


@register_method(
    "retrain",
    aliases=("naive", "gold"),
    config=RetrainConfig,
    access=AccessSpec(
        level="forget_and_retain",
        uses_forget=False,
        forget_labels=False,
        needs_recipe=True,
        needs_model_factory=True,
    ),
    no_identity=True,
)
def retrain(model: nn.Module, data: DataViews, config: RetrainConfig, *, ctx: RunContext):
    """Retrain a freshly initialised model on ``D_r`` with the original recipe.

    Reference: OPTML-Group/Unlearn-Saliency ``unlearn/retrain.py``. The model comes from
    ``ctx.model_factory(seed)``, a complete re-initialisation of every parameter and buffer at
    every depth (resetting only top-level children, as the SSD reference does, leaves nested
    blocks trained). The incoming model is ignored except with ``init="same_init"``, which loads
    ``ctx.cache["initial_state"]``. When the training loss becomes non-finite the run is marked
    diverged and the incoming model is returned unchanged.
    """
    if ctx.model_factory is None:
        raise AccessError("retrain needs a model factory (model_factory=) to build a fresh model")
    fresh = ctx.model_factory(ctx.seed)
    if config.init == "same_init":
        state = ctx.cache.get("initial_state")
        if state is None:
            raise AccessError("init='same_init' needs ctx.cache['initial_state'] (theta_o's init)")
        fresh.load_state_dict(state)
    fresh.to(ctx.device)
    ctx.info["epochs"] = ctx.train_recipe.epochs
    try:
        train(fresh, data.retain, ctx.train_recipe, seed=ctx.seed)
    except TrainingDiverged as exc:
        ctx.diverge(str(exc))  # nothing of the fresh model is usable: the input model is kept
        return model
    return fresh

"""Random Labels / Amnesiac unlearning: train on the forget set relabelled at random, plus D_r.

The training loop (:func:`train_with_random_labels`) takes optional step hooks so that SalUn
(``salun.py``) runs exactly this loop with its saliency mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..data import BatchLoader, DataView, DataViews, concat_rows
from ..errors import AccessError, ConfigError, DataError
from ..optim import OptimizerSpec
from ._loop import epochs, make_optimizer, make_scheduler, set_train_mode, steps
from ._registry import register_method
from .base import AccessSpec, RunContext, int_range, loguniform
from .config import BaseConfig

__all__ = [
    "LABEL_RULES",
    "SCHEDULES",
    "RandomLabelsConfig",
    "random_labels",
    "random_relabel",
    "train_with_random_labels",
]

SCHEDULES = ("mixed", "sequential", "fixed_labels")
LABEL_RULES = ("uniform", "retain_image")


@dataclass(frozen=True)
class RandomLabelsConfig(BaseConfig):
    """Random Labels: the SalUn RL baseline on CIFAR-10 (uniform over all K, sequential: every
    forget batch then every retain batch each epoch, SGD lr 0.01, 10 epochs). The reference runs
    its CIFAR-100 / Tiny-ImageNet path ``mixed`` (preset ``salun_rl_cifar100``)."""

    epochs: int = 10
    batch_size: int = 256
    optimizer: OptimizerSpec = OptimizerSpec(lr=0.01)
    exclude_true_label: bool = field(
        default=False,
        metadata={
            "help": "never give a forget sample its true label (Amnesiac); in the class "
            "scenario the forgotten classes are never drawn"
        },
    )
    label_rule: str = field(
        default="uniform",
        metadata={
            "help": "uniform: a class uniformly at random; retain_image: the label of a random "
            "retain image (NatMU's Amnesiac), i.e. a class uniformly among those present in D_r"
        },
    )
    schedule: str = field(
        default="sequential",
        metadata={
            "help": "mixed: shuffle relabelled D_f into D_r, new labels every epoch; "
            "sequential: all forget batches then all retain batches, new labels every epoch; "
            "fixed_labels: like mixed with labels drawn once"
        },
    )
    augment: bool = field(
        default=True,
        metadata={
            "help": "apply the recipe's training augmentation (SalUn: yes, Amnesiac: no); "
            "augment_retain=False also turns it off"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.label_rule not in LABEL_RULES:
            raise ConfigError(
                f"label_rule must be one of {list(LABEL_RULES)}, got {self.label_rule!r}"
            )


# ---------------------------------------------------------------------------------------------
# Label drawing


def random_relabel(
    n: int,
    num_classes: int,
    *,
    generator: torch.Generator,
    true_labels: torch.Tensor | None = None,
    exclude_true_label: bool = False,
    excluded_classes: Sequence[int] = (),
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one random label per forget sample.

    Each label is uniform over the allowed classes of its sample: the ``candidates`` (a boolean
    vector of length ``num_classes``; default all), minus ``excluded_classes``, minus the
    sample's true label when ``exclude_true_label``.

    Args:
        n: number of labels to draw.
        num_classes: K.
        generator: the source of randomness (``ctx.generator``).
        true_labels: the forget set's labels (needed with ``exclude_true_label``).
        exclude_true_label: never return a sample's own label.
        excluded_classes: classes never returned (the forgotten classes).
        candidates: boolean mask of the classes that may be returned.

    Returns:
        An int64 tensor of ``n`` labels, on the CPU.

    Raises:
        AccessError: ``exclude_true_label`` without ``true_labels``.
        ConfigError: a sample has no allowed class left.
    """
    if exclude_true_label and true_labels is None:
        raise AccessError(
            "exclude_true_label=True needs the forget labels; pass a labelled forget view "
            "or set exclude_true_label=False"
        )
    for c in excluded_classes:
        if not 0 <= int(c) < num_classes:
            raise ConfigError(f"excluded class {c} is outside 0..{num_classes - 1}")
    plain = not exclude_true_label and not excluded_classes and candidates is None
    if plain:  # the SalUn RL draw: uniform over all K
        return torch.randint(0, num_classes, (n,), generator=generator)
    allowed = torch.ones(num_classes, dtype=torch.bool)
    if candidates is not None:
        allowed &= candidates.detach().to("cpu", torch.bool)
    if excluded_classes:
        allowed[torch.as_tensor([int(c) for c in excluded_classes])] = False
    weights = allowed.to(torch.float64).expand(n, num_classes).clone()
    if exclude_true_label:
        y = true_labels.detach().to("cpu", torch.int64)
        weights[torch.arange(n), y] = 0.0
    empty = weights.sum(dim=1) == 0
    if bool(empty.any()):
        raise ConfigError(
            f"{int(empty.sum())} forget sample(s) have no class left to be relabelled with "
            f"(K={num_classes}, excluded {list(excluded_classes)}); set exclude_true_label=False "
            "or use label_rule='uniform'"
        )
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def _relabeller(
    forget: DataView, retain: DataView, config: RandomLabelsConfig, ctx: RunContext
) -> Callable[[], torch.Tensor]:
    """A function that draws a fresh labelling of ``forget`` under the config's label rule."""
    candidates = None
    if config.label_rule == "retain_image":
        if retain.y is None:
            raise AccessError("label_rule='retain_image' needs the retain labels")
        counts = torch.bincount(retain.y.detach().cpu().long(), minlength=ctx.num_classes)
        candidates = counts[: ctx.num_classes] > 0
    excluded = tuple(ctx.forget_classes) if config.exclude_true_label else ()
    true_labels = forget.y if config.exclude_true_label else None
    if config.exclude_true_label and true_labels is None and not excluded:
        raise AccessError(
            "exclude_true_label=True needs the forget labels, which this run withholds; "
            "set exclude_true_label=False"
        )

    def draw() -> torch.Tensor:
        return random_relabel(
            len(forget),
            ctx.num_classes,
            generator=ctx.generator,
            true_labels=true_labels,
            exclude_true_label=true_labels is not None,
            excluded_classes=excluded,
            candidates=candidates,
        )

    return draw


# ---------------------------------------------------------------------------------------------
# The training loop (shared with SalUn)


def train_with_random_labels(
    model: nn.Module,
    data: DataViews,
    config: RandomLabelsConfig,
    ctx: RunContext,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    before_step: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
    clip_params: Sequence[torch.Tensor] | None = None,
) -> None:
    """Run ``config.epochs`` epochs of cross-entropy on relabelled ``D_f`` and ``D_r``.

    Args:
        model: trained in place.
        data: views with ``forget`` and ``retain`` (retain labelled).
        config: the label rule, schedule and optimisation settings.
        ctx: the run context (every update goes through ``ctx.step``).
        optimizer: an optimizer over ``model``'s parameters (default: a fresh one from the
            config); pass one to act on its state in the hooks.
        before_step, after_step: forwarded to :meth:`RunContext.step` (SalUn's masking).
        clip_params: forwarded to :meth:`RunContext.step` as ``params`` (what it clips).

    Raises:
        DataError: an empty forget or retain set.
        AccessError: labels needed by the config are withheld.
    """
    forget, retain = data.forget, data.retain
    if forget is None or len(forget) == 0:
        raise DataError("random_labels needs a non-empty forget set")
    if retain is None or retain.y is None:
        raise AccessError("random_labels needs the labelled retain set")
    draw = _relabeller(forget, retain, config, ctx)
    augment = forget.augment if (config.augment and config.augment_retain) else None
    bs, n_f, n_r = config.batch_size, len(forget), len(retain)

    def make_loader(x: torch.Tensor, y: torch.Tensor) -> BatchLoader:
        return BatchLoader(
            x, y, bs, shuffle=True, generator=ctx.generator, augment=augment, device=ctx.device
        )

    sequential = config.schedule == "sequential"
    if sequential:
        forget_y = torch.zeros(n_f, dtype=torch.int64, device=forget.x.device)
        loaders = [make_loader(forget.x, forget_y)]
        if n_r > 0:
            loaders.append(make_loader(retain.x, retain.y))
        steps_per_epoch = sum(len(ld) for ld in loaders)
    else:
        # One concatenated copy (disk-backed inputs: one list of files, read batch by batch);
        # the first n_f labels are overwritten on every new draw.
        x_all = concat_rows([forget.x, retain.x])
        y_all = torch.cat(
            [
                torch.zeros(n_f, dtype=torch.int64, device=forget.x.device),
                retain.y.to(forget.x.device, torch.int64),
            ]
        )
        forget_y = y_all[:n_f]
        loaders = [make_loader(x_all, y_all)]
        steps_per_epoch = math.ceil((n_f + n_r) / bs)

    opt = optimizer if optimizer is not None else make_optimizer(model, config)
    sched = make_scheduler(opt, config, steps_per_epoch)
    set_train_mode(model, freeze_bn_stats=config.freeze_bn_stats)
    draws = 0
    if config.schedule == "fixed_labels":
        forget_y.copy_(draw())
        draws += 1
    for _ in epochs(ctx, config.epochs):
        if config.schedule != "fixed_labels":
            forget_y.copy_(draw())
            draws += 1
        for loader in loaders:
            for xb, yb in steps(loader, ctx):
                loss = F.cross_entropy(model(xb), yb)
                if not ctx.step(
                    opt, loss, params=clip_params, before_step=before_step, after_step=after_step
                ):
                    break
                sched.after_step()
        sched.after_epoch()
    ctx.info["label_draws"] = draws
    ctx.info["steps_per_epoch"] = steps_per_epoch


_AMNESIAC = {"exclude_true_label": True, "schedule": "fixed_labels", "augment": False}


@register_method(
    "random_labels",
    aliases=("rl", "amnesiac", "srl"),
    config=RandomLabelsConfig,
    access=AccessSpec(level="forget_and_retain"),
    presets={
        "salun_rl": {},
        "salun_rl_cifar100": {"schedule": "mixed"},
        "amnesiac_ssd": {
            **_AMNESIAC,
            "optimizer": {"name": "adam", "lr": 1e-4, "weight_decay": 0.0},
            "epochs": 3,
            "batch_size": 128,
        },
        "amnesiac_natmu": {
            **_AMNESIAC,
            "label_rule": "retain_image",
            "optimizer": {"name": "adamw", "lr": 1.8e-5, "weight_decay": 4e-4},
            "scheduler": {"name": "cosine", "per_step": True},
            "epochs": 5,
            "batch_size": 128,
        },
        "digits": {"lr": 0.01, "epochs": 5, "batch_size": 64, "schedule": "mixed"},
    },
    search_space={"lr": loguniform(1e-5, 1e-1), "epochs": int_range(1, 15)},
)
def random_labels(
    model: nn.Module, data: DataViews, config: RandomLabelsConfig, *, ctx: RunContext
):
    """Relabel the forget set at random and train on it together with the retain set.

    References: OPTML-Group/Unlearn-Saliency ``Classification/unlearn/RL.py`` (RL as used by
    SalUn); Graves et al., "Amnesiac Machine Learning" (2021), with the Amnesiac baselines of
    if-loops/selective-synaptic-dampening ``src/forget_*_strategies.py::amnesiac`` and
    ZhengbaoHe/NatMU ``sample-wise/amnesiac.py``.

    Objective, per epoch (train mode): ``min_theta mean_B CE(f_theta(x), y~)`` over batches of
    ``{(x_f, y~_f)} U D_r``, where ``y~_f`` is a random label:

    * ``label_rule="uniform"``: uniform over the K classes (SalUn RL), or, with
      ``exclude_true_label``, uniform over the classes != the true label (Amnesiac); in the
      class scenario the forgotten classes (``ctx.forget_classes``) are excluded.
    * ``label_rule="retain_image"`` (NatMU's Amnesiac): the label of a random retain image of
      a different class. As in the reference, the class is drawn uniformly among the classes
      that occur in ``D_r`` (other than the true one) and only the image's label is used.

    ``schedule``: ``mixed`` shuffles relabelled ``D_f`` into ``D_r`` and redraws the labels
    every epoch; ``sequential`` runs all forget batches, then all retain batches, redrawing
    every epoch (SalUn's CIFAR-10/SVHN path); ``fixed_labels`` draws once (Amnesiac).

    Notes [lib]: every draw comes from ``ctx.generator``; augmentation is on when both
    ``augment`` and ``augment_retain`` are true (forget and retain samples share batches);
    the loop is shared with SalUn through :func:`train_with_random_labels`. The forget labels
    are read only when ``exclude_true_label=True``. ``ctx.info`` records ``label_draws``.
    """
    train_with_random_labels(model, data, config, ctx)
    return model

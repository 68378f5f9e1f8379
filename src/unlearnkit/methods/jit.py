"""JiT: zero-shot unlearning by smoothing the model locally around each forget point."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..checks import require_continuous_inputs
from ..data import DataViews
from ..errors import ConfigError, DataError
from ..optim import OptimizerSpec
from ._jit_loss import (
    DENOMINATORS,
    REDUCTIONS,
    LipschitzTerms,
    lipschitz_loss,
    lipschitz_terms,
    sample_noise,
)
from ._loop import epochs, set_train_mode, steps
from ._registry import register_method
from .base import AccessSpec, RunContext, choice, loguniform
from .config import BaseConfig

__all__ = [
    "JiTConfig",
    "LipschitzTerms",
    "jit",
    "lipschitz_loss",
    "lipschitz_terms",
    "sample_noise",
]

MODES = ("original", "robust")
CLAMPS = ("batch_minmax", "pixel_range", "none")
MODEL_MODES = ("train", "eval")

# The defaults that ``mode`` gives the individual options (original vs robust).
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "original": {
        "reduction": "sum",
        "clamp": "batch_minmax",
        "model_mode": "train",
        "zero_grad_each_batch": False,
        "denominator": "perturbed_diff",
    },
    "robust": {
        "reduction": "mean",
        "clamp": "pixel_range",
        "model_mode": "eval",
        "zero_grad_each_batch": True,
        "denominator": "perturbed_diff",
    },
}
MODE_OPTIONS = tuple(MODE_DEFAULTS["original"])
_CHOICES = {
    "reduction": REDUCTIONS,
    "clamp": CLAMPS,
    "model_mode": MODEL_MODES,
    "denominator": DENOMINATORS,
}
_PLAIN_SGD = OptimizerSpec(name="sgd", lr=3e-4, momentum=0.0, weight_decay=0.0)


@dataclass(frozen=True)
class JiTConfig(BaseConfig):
    """JiT: sigma 0.5, lr 3e-4, N 25, batch 128 (64 for subclass), one unshuffled pass.

    ``mode`` picks the defaults of the five individual options (``reduction``, ``clamp``,
    ``model_mode``, ``zero_grad_each_batch``, ``denominator``); an option given explicitly
    overrides its mode default. The options default to ``None`` ("take it from ``mode``") and are
    resolved in ``__post_init__``, so a built config always holds concrete values (the stored
    record shows what ran). :meth:`replace` / ``from_dict(base=...)`` remember which options were
    given explicitly, so ``cfg.replace(mode="robust")`` re-derives the others from the new mode
    (``dataclasses.replace`` does not: use ``cfg.replace``).

    The optimizer is JiT's own: plain SGD with learning rate ``lr``, no momentum, no weight
    decay, no scheduler [ref]. ``BaseConfig.optimizer`` is not used to build it; it is kept equal
    to that SGD (``optimizer.lr`` mirrors ``lr``) so the stored record is truthful, and
    momentum, weight decay, Nesterov, another optimizer or a scheduler are rejected.
    """

    batch_size: int = 128
    epochs: int = field(
        default=1, metadata={"help": "passes over D_f; the reference makes exactly one [>1: lib]"}
    )
    optimizer: OptimizerSpec = _PLAIN_SGD
    sigma: float = field(
        default=0.5, metadata={"help": "std of the Gaussian input noise, in model-input units"}
    )
    lr: float = field(
        default=3e-4, metadata={"help": "SGD learning rate (plain SGD: no momentum, no decay)"}
    )
    n_samples: int = field(
        default=25, metadata={"help": "N, perturbed copies of each forget batch per update"}
    )
    shuffle: bool = field(default=False, metadata={"help": "shuffle D_f (the reference does not)"})
    mode: str = field(
        default="original",
        metadata={
            "help": "original: the reference; robust [lib]: sets the defaults of the "
            "options below to mean / pixel_range / eval / zero each batch"
        },
    )
    reduction: str | None = field(
        default=None, metadata={"help": "sum | mean of the per-sample ratios (None: from mode)"}
    )
    clamp: str | None = field(
        default=None,
        metadata={
            "help": "batch_minmax | pixel_range (needs normalization metadata) | none "
            "(None: from mode)"
        },
    )
    model_mode: str | None = field(
        default=None, metadata={"help": "train | eval during both passes (None: from mode)"}
    )
    zero_grad_each_batch: bool | None = field(
        default=None,
        metadata={
            "help": "False accumulates gradients across batches as the reference (None: from mode)"
        },
    )
    denominator: str | None = field(
        default=None,
        metadata={
            "help": "perturbed_diff: ||x - x_tilde|| [ref code]; noise: ||xi|| "
            "[paper] (None: from mode)"
        },
    )
    safety_guard: bool = field(
        default=False,
        metadata={
            "help": "[lib] after each update, read D_val: on an accuracy drop of more than "
            "max_val_drop below the start, roll back to the best step and halve lr (once; a "
            "second drop stops). Raises the access level to forget_only+val"
        },
    )
    max_val_drop: float = field(
        default=0.10, metadata={"help": "the safety guard's tolerated drop (0.10 = 10 points)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        explicit = frozenset(k for k in MODE_OPTIONS if getattr(self, k) is not None)
        for key in MODE_OPTIONS:
            if getattr(self, key) is None:
                object.__setattr__(self, key, MODE_DEFAULTS[self.mode][key])
        # Not a dataclass field: invisible to asdict/eq, read by from_dict(base=...).
        object.__setattr__(self, "_explicit_options", explicit)
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"{key} must be one of {list(allowed)}, got {getattr(self, key)!r}"
                )
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ConfigError(f"sigma must be a finite number > 0, got {self.sigma}")
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise ConfigError(f"lr must be a finite number >= 0, got {self.lr}")
        if self.n_samples < 1:
            raise ConfigError(f"n_samples must be >= 1, got {self.n_samples}")
        if not 0.0 <= self.max_val_drop < 1.0:
            raise ConfigError(f"max_val_drop must lie in [0, 1), got {self.max_val_drop}")
        opt = self.optimizer
        if opt.name != "sgd" or opt.momentum != 0 or opt.weight_decay != 0 or opt.nesterov:
            raise ConfigError(
                "JiT always uses plain SGD (no momentum, no weight decay) as the reference does; "
                f"got optimizer {opt}. Remove the optimizer/momentum/weight_decay settings and "
                "set the learning rate with 'lr'"
            )
        if opt.lr != self.lr:
            object.__setattr__(
                self,
                "optimizer",
                OptimizerSpec(
                    name="sgd",
                    lr=self.lr,
                    momentum=0.0,
                    weight_decay=0.0,
                    betas=opt.betas,
                ),
            )
        if self.scheduler.name not in ("none", "constant"):
            raise ConfigError(
                "JiT uses a constant learning rate (one update per forget batch); got scheduler "
                f"{self.scheduler.name!r}. Remove the scheduler setting"
            )

    @property
    def explicit_options(self) -> frozenset[str]:
        """The individual options given explicitly (the others come from ``mode``)."""
        return self._explicit_options  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None, *, base: BaseConfig | None = None):
        """As :meth:`BaseConfig.from_dict`; with a JiT ``base``, options it took from its mode
        are taken from the (possibly new) mode again instead of being frozen as overrides."""
        values = dict(values or {})
        if isinstance(base, JiTConfig):
            reset = {k: None for k in MODE_OPTIONS if k not in base.explicit_options}
            values = {**reset, **values}
            values.setdefault("clamp", base.clamp)
        return super().from_dict(values, base=base)


class _SafetyGuard:
    """JiT's optional safety guard [lib].

    Before the first update it reads the validation accuracy ``a_0``. After every update it
    reads it again and keeps the weights of the best step so far (the latest one on ties: the
    most forgetting at that accuracy). When the accuracy falls more than ``max_val_drop`` below
    ``a_0``, the weights roll back to the best step and the learning rate is halved, once; the
    accumulated gradient is dropped with the abandoned steps. A second such drop rolls back
    again and stops the run. The evaluations count toward the method's run time.
    """

    def __init__(self, model: nn.Module, val, config: JiTConfig, ctx: RunContext) -> None:
        if val is None or val.y is None or len(val) == 0:
            raise DataError("JiT's safety_guard needs a labelled, non-empty validation split")
        self.model, self.val, self.ctx = model, val, ctx
        self.max_drop = config.max_val_drop
        self.start = self._accuracy()
        self.best, self.best_step = self.start, 0
        self.best_state = self._state()
        self.history: list[float] = [self.start]
        self.rollbacks: list[int] = []
        self.halved = False

    def _state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @torch.no_grad()
    def _accuracy(self) -> float:
        was = self.model.training
        self.model.eval()
        correct = 0
        for start in range(0, len(self.val), 1024):
            x = self.val.x[start : start + 1024].to(self.ctx.device)
            y = self.val.y[start : start + 1024].to(self.ctx.device)
            correct += int((self.model(x).argmax(1) == y).sum())
        self.model.train(was)
        return correct / len(self.val)

    def after_step(self, opt: torch.optim.Optimizer) -> bool:
        """Check the step just taken; ``False`` stops the run."""
        acc = self._accuracy()
        self.history.append(acc)
        step = len(self.history) - 1
        if acc >= self.best:
            self.best, self.best_step, self.best_state = acc, step, self._state()
        if acc >= self.start - self.max_drop:
            return True
        self.model.load_state_dict(self.best_state)
        opt.zero_grad(set_to_none=True)
        self.rollbacks.append(step)
        if self.halved:
            self.ctx.stop("safety guard: a second validation-accuracy drop")
            return False
        self.halved = True
        for group in opt.param_groups:
            group["lr"] *= 0.5
        return True

    def report(self) -> dict[str, Any]:
        return {
            "val_acc": self.history,
            "best_step": self.best_step,
            "rollbacks": self.rollbacks,
            "lr_halved": self.halved,
        }


def _pixel_range(ctx: RunContext, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if ctx.normalization is None:
        raise ConfigError(
            "clamp='pixel_range' needs the dataset's normalization metadata (raw range, mean, "
            "std), but this dataset has none; load it with normalization=..., or set "
            "clamp='batch_minmax' or clamp='none'"
        )
    # Normalization builds its constants on the CPU: compute there, then move.
    lo, hi = ctx.normalization.model_range(x[:1].detach().cpu())
    return lo.to(device=x.device, dtype=x.dtype), hi.to(device=x.device, dtype=x.dtype)


@register_method(
    "jit",
    aliases=("lipschitz", "jit_lipschitz"),
    config=JiTConfig,
    access=AccessSpec(level="forget_only", uses_retain=False, forget_labels=False),
    presets={
        "vit_fullclass": {"sigma": 0.8, "lr": 1.5, "n_samples": 25, "batch_size": 128},
        "vgg_fullclass": {"sigma": 0.5, "lr": 3e-4, "n_samples": 25, "batch_size": 128},
        "vit_subclass": {"sigma": 1.5, "lr": 0.5, "n_samples": 25, "batch_size": 64},
        "vgg_subclass": {"sigma": 0.01, "lr": 3e-4, "n_samples": 25, "batch_size": 64},
        "vit_random": {"sigma": 0.5, "lr": 0.1, "n_samples": 25, "batch_size": 128},
        "vgg_random": {"sigma": 0.01, "lr": 3e-4, "n_samples": 25, "batch_size": 128},
        "digits": {
            "mode": "original",
            "batch_size": 128,
            "sigma": 0.1,
            "lr": 1e-3,
            "n_samples": 25,
            "epochs": 1,
        },
    },
    search_space={
        "sigma": loguniform(0.005, 2.0),
        "lr": loguniform(1e-5, 2.0),
        "n_samples": choice([10, 25, 50]),
        "mode": choice(["original", "robust"]),
    },
    scenario_defaults={"subclass": {"batch_size": 64}},
    access_rule=lambda cfg: {"needs_val": True} if cfg.safety_guard else {},
)
def jit(model: nn.Module, data: DataViews, config: JiTConfig, *, ctx: RunContext) -> nn.Module:
    """Smooth the model around each forget point by minimising its local Lipschitz ratio.

    Paper: Foster et al., "An Information Theoretic Approach to Machine Unlearning" (arXiv
    2402.01401; TMLR 2025). Reference code: jwf40/Information-Theoretic-Unlearning
    ``src/lipschitz.py`` (``Lipschitz.modify_weight``). Only ``theta_o`` and the label-free
    forget set are read: the method never touches ``data.retain`` (the reference's random
    wrapper draws a retain subset it never uses; this one does not draw it).

    For each forget batch ``B`` (one unshuffled pass), with ``xi_i ~ N(0, sigma^2 I)`` drawn
    from ``ctx.generator`` and ``x~_i = clamp(x + xi_i, lo, hi)``::

        L(theta) = (1/N) sum_i sum_{x in B} ||f(x) - sg[f(x~_i)]|| / ||x - x~_i||

    (logits, inputs flattened per sample), then one backward pass and one plain SGD step
    (lr ``lr``, no momentum, no weight decay). In ``original`` mode gradients are zeroed once
    before the loop and accumulate across batches, so the update at batch ``t`` is
    ``lr * sum_{s<=t} g_s``, and both passes run in train mode (dropout and BN active), as in
    the reference. ``lo, hi`` are the min and max of the whole batch tensor.

    Notes [lib]:
        * ``mode="robust"`` sets mean reduction, the valid pixel range from
          ``ctx.normalization`` as clamp, eval mode and zeroing per batch; each option can be
          set on its own and then overrides the mode (see :class:`JiTConfig`).
        * ``denominator="noise"`` uses ``||xi||`` (paper) instead of ``||x - x~||`` (code).
        * ``epochs > 1`` repeats the pass; gradients are still zeroed only once in total when
          accumulating. ``shuffle=True`` shuffles with ``ctx.generator``.
        * A ratio whose denominator is 0 counts as 0 instead of NaN.
        * ``max_grad_norm`` clips the (accumulated) gradient before each step.
        * ``safety_guard=True`` (off by default) reads ``D_val`` after every update (see
          :class:`_SafetyGuard`); the run's access is then ``forget_only+val`` and tables
          report it so. Without it JiT never reads anything but the label-free ``D_f``.
        * Inputs must be continuous. The Lipschitz ratio compares outputs at ``x`` and at
          ``x + xi`` with Gaussian ``xi``; for integer or categorical features (kept as int64
          by ``from_arrays(..., keep_dtype=True)``) ``x + xi`` is not a valid input and the
          distance between category codes means nothing, so JiT refuses them with a
          :class:`DataError` before any update rather than run a variant (rounding the
          perturbed codes would measure an arbitrary code order). Categorical codes cast to
          float that crash a lookup (``IndexError``) on a perturbed input also end in that
          error. One-hot encoded features are floats and work.

    Diagnostics in ``info``: ``jit_loss`` (per update), ``jit_mean_ratio``,
    ``jit_degenerate_ratios``, ``jit_options`` (the resolved options) and, with the guard,
    ``jit_guard`` (validation accuracy after each step, best step, rollbacks, lr halved).

    Raises:
        ConfigError: ``clamp="pixel_range"`` on a dataset without normalization metadata.
        DataError: an empty forget set, or integer (categorical) inputs.
    """
    forget = data.forget
    if forget is None or len(forget) == 0:
        raise DataError("JiT needs a non-empty forget set")
    require_continuous_inputs(forget.x, "JiT")  # before any update
    loader = forget.loader(
        config.batch_size, shuffle=config.shuffle, generator=ctx.generator, device=ctx.device
    )
    bounds_fixed = None
    if config.clamp == "pixel_range":  # fail before any update
        bounds_fixed = _pixel_range(ctx, forget.x[:1].to(ctx.device))
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        momentum=0.0,
        weight_decay=0.0,
    )
    if config.model_mode == "train":
        set_train_mode(model, freeze_bn_stats=config.freeze_bn_stats)
    else:
        model.eval()
    opt.zero_grad(set_to_none=True)  # once: the reference never zeroes inside the loop
    guard = _SafetyGuard(model, data.val, config, ctx) if config.safety_guard else None
    losses: list[float] = []
    ratio_sum, ratio_count, degenerate = 0.0, 0, 0
    for _ in epochs(ctx, config.epochs):
        for xb, _labels in steps(loader, ctx):  # labels are never used
            noise = sample_noise(xb, config.sigma, config.n_samples, ctx.generator)
            if config.clamp == "batch_minmax":
                bounds = (xb.min(), xb.max())
            else:
                bounds = bounds_fixed
            terms = lipschitz_terms(
                model,
                xb,
                noise,
                reduction=config.reduction,
                bounds=bounds,
                denominator=config.denominator,
            )
            losses.append(float(terms.loss.detach()))
            ratio_sum += float(terms.ratios.sum())
            ratio_count += terms.ratios.numel()
            degenerate += terms.n_degenerate
            if not ctx.step(opt, terms.loss, zero_grad=config.zero_grad_each_batch):
                break
            if guard is not None and not guard.after_step(opt):
                break
    opt.zero_grad(set_to_none=True)
    if guard is not None:
        ctx.info["jit_guard"] = guard.report()
    ctx.info["jit_loss"] = losses
    ctx.info["jit_mean_ratio"] = ratio_sum / ratio_count if ratio_count else None
    ctx.info["jit_degenerate_ratios"] = degenerate
    ctx.info["jit_options"] = {k: getattr(config, k) for k in MODE_OPTIONS}
    model.eval()
    return model

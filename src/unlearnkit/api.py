"""The front doors: :func:`unlearn` (and :func:`run_unlearning`) and :func:`evaluate`."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .checks import check_device, check_precision, check_run_inputs
from .data import DataViews
from .errors import AccessError, ConfigError
from .methods import BaseConfig, MethodResult, RunContext, get_method
from .methods.base import frozen_copy
from .models import reinit_factory
from .tasks import ForgetTask
from .training import TrainRecipe

__all__ = ["UnlearnOutcome", "build_views", "run_unlearning", "unlearn"]

log = logging.getLogger(__name__)


@dataclass
class UnlearnOutcome:
    """The unlearned model and the record of the run.

    Attributes:
        model: theta_u, in eval mode.
        method: canonical method name.
        config: the resolved config (every field).
        access: the access level of the run (``+val`` when it also read D_val).
        seed: the unlearning seed.
        rte_seconds: wall-clock time of the method call alone (no evaluation).
        diverged: the run hit a non-finite loss, weights or outputs; the model is the last
            state with finite outputs (``info["rollback"]``: ``"step N"`` or ``"input model"``,
            ``info["diverged_reason"]``: why).
        steps: optimizer updates made through the guard.
        info: the method's diagnostics.
        precision: the run's precision (``fp32``, ``bf16`` or ``fp16``).
    """

    model: nn.Module
    method: str
    config: BaseConfig
    access: str
    seed: int
    rte_seconds: float
    diverged: bool = False
    steps: int = 0
    stop_reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"

    def record(self) -> dict[str, Any]:
        """JSON-able summary (stored with benchmark results; ``precision`` only when not
        ``fp32``, so records of full-precision runs are as they always were)."""
        return {
            **({"precision": self.precision} if self.precision != "fp32" else {}),
            "method": self.method,
            "config": self.config.to_dict(),
            "access": self.access,
            "seed": self.seed,
            "rte_seconds": self.rte_seconds,
            "diverged": self.diverged,
            "steps": self.steps,
            "stop_reason": self.stop_reason,
            "info": {k: v for k, v in self.info.items() if _jsonable(v)},
        }


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, tuple, dict))


def build_views(spec_access: Any, task: ForgetTask, method: str) -> DataViews:
    """The data a method's access level grants, and nothing else.

    Raises:
        AccessError: the method needs data the task does not have (no retain set, no val).
    """
    acc = spec_access
    forget = task.forget if acc.uses_forget else None
    if forget is not None and not acc.forget_labels:
        forget = forget.without_labels()
    retain = train_full = None
    if acc.level != "forget_only" and (acc.uses_retain or acc.level == "full_train"):
        retain = task.retain
        if retain is None:
            raise AccessError(
                f"method {method!r} ({acc.level}) needs the retain set, but this task has none "
                "(a forget-only request); use a forget_only method such as 'jit', or build the "
                "task with its retain data"
            )
        if not acc.retain_labels:
            retain = retain.without_labels()
    if acc.level == "full_train":
        train_full = task.train_full
    val = None
    if acc.needs_val:
        val = task.val
        if val is None:
            raise AccessError(f"method {method!r} needs a validation split; the dataset has none")
    return DataViews(forget=forget, retain=retain, val=val, train_full=train_full)


def _hook_state(model: nn.Module) -> dict[int, tuple[set, set, set, set]]:
    return {
        id(m): (
            set(m._forward_hooks),
            set(m._forward_pre_hooks),
            set(m._backward_hooks),
            set(getattr(m, "_backward_pre_hooks", {})),
        )
        for m in model.modules()
    }


def _remove_new_hooks(model: nn.Module, before: dict[int, tuple[set, set, set, set]]) -> int:
    removed = 0
    for m in model.modules():
        old = before.get(id(m), (set(), set(), set(), set()))
        for store, keep in zip(
            (
                m._forward_hooks,
                m._forward_pre_hooks,
                m._backward_hooks,
                getattr(m, "_backward_pre_hooks", {}),
            ),
            old,
        ):
            for key in [k for k in store if k not in keep]:
                del store[key]
                removed += 1
    return removed


def run_unlearning(
    model: nn.Module,
    task: ForgetTask,
    method: str = "finetune",
    config: BaseConfig | dict[str, Any] | None = None,
    *,
    seed: int = 0,
    preset: str | None = None,
    device: torch.device | str | None = None,
    inplace: bool = False,
    recipe: TrainRecipe | None = None,
    model_factory: Callable[[int], nn.Module] | None = None,
    cache: dict[str, Any] | None = None,
    time_budget_s: float | None = None,
    feature_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    snapshot_every: int = 1,
    precision: str | None = None,
) -> UnlearnOutcome:
    """Run one unlearning method and return the model with the record of the run.

    Same arguments as :func:`unlearn`, which returns only the model.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch nn.Module, got {type(model).__name__}")
    if not isinstance(task, ForgetTask):
        raise ConfigError("task must come from unlearnkit.forget_task(...)")
    check_run_inputs(model, task, device=device, seed=seed)  # one line per mistake, up front
    spec = get_method(method)
    cfg = spec.make_config(config, preset=preset, scenario=task.scenario)
    access = spec.access_for(cfg)
    if task.scenario not in access.scenarios:
        raise ConfigError(
            f"method {spec.name!r} does not support scenario {task.scenario!r} "
            f"(supported: {', '.join(access.scenarios)})"
        )
    views = build_views(access, task, spec.name)
    if access.needs_recipe and recipe is None:
        raise AccessError(
            f"method {spec.name!r} needs the original training recipe: pass recipe=TrainRecipe(...)"
        )
    if access.needs_model_factory and model_factory is None:
        model_factory = reinit_factory(model)  # raises ConfigError if the model cannot be reset
    dev = check_device(device) or next(model.parameters()).device
    if precision is None:
        precision = recipe.precision if isinstance(recipe, TrainRecipe) else "fp32"
    precision = check_precision(precision, dev)
    if isinstance(recipe, TrainRecipe) and recipe.precision != precision:
        recipe = dataclasses.replace(recipe, precision=precision)  # Retrain's too
    work = model if inplace else copy.deepcopy(model)
    work.to(dev)
    grad_flags = {name: p.requires_grad for name, p in work.named_parameters()}
    hooks_before = _hook_state(work)
    ctx = RunContext.for_task(
        work,
        task,
        seed=seed,
        device=dev,
        original_model=frozen_copy(model).to(dev),
        model_factory=model_factory,
        train_recipe=recipe,
        cache=cache if cache is not None else {},
        logger=logging.getLogger(f"unlearnkit.methods.{spec.name}"),
        time_budget_s=time_budget_s,
        feature_fn=feature_fn,
        max_steps=cfg.max_steps,
        max_grad_norm=cfg.max_grad_norm,
        snapshot_every=snapshot_every,
        precision=precision,
    )
    ctx.amp.prepare(work)  # channels-last for a mixed-precision CUDA run of a CNN
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            sync()
            t0 = time.perf_counter()
            with ctx.autocast():
                out = spec.fn(work, views, cfg, ctx=ctx)
            sync()
            rte = time.perf_counter() - t0
    finally:
        # No hooks or requires_grad changes are left behind, even after an error.
        _remove_new_hooks(work, hooks_before)
        for name, p in work.named_parameters():
            if name in grad_flags:
                p.requires_grad_(grad_flags[name])
    extra: dict[str, Any] = {}
    if isinstance(out, MethodResult):
        extra, out = out.info, out.model
    if not isinstance(out, nn.Module):
        raise TypeError(f"method {spec.name!r} returned {type(out).__name__}, not an nn.Module")
    if not ctx.outputs_finite(out):
        # Whatever the method returned, the result gives finite outputs: the last good state
        # of the working copy, else the input model.
        ctx.diverge("non-finite outputs on the probe batch at the end of the run")
        out = work
    info = {**ctx.info, **extra}
    out.eval()
    return UnlearnOutcome(
        model=out,
        method=spec.name,
        config=cfg,
        access=access.label,
        seed=seed,
        rte_seconds=rte,
        diverged=ctx.diverged,
        steps=ctx.steps,
        stop_reason=ctx.stop_reason,
        info=info,
        precision=precision,
    )


def unlearn(
    model: nn.Module,
    task: ForgetTask,
    method: str = "finetune",
    config: BaseConfig | dict[str, Any] | None = None,
    *,
    seed: int = 0,
    preset: str | None = None,
    device: torch.device | str | None = None,
    inplace: bool = False,
    recipe: TrainRecipe | None = None,
    model_factory: Callable[[int], nn.Module] | None = None,
    cache: dict[str, Any] | None = None,
    time_budget_s: float | None = None,
    feature_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    precision: str | None = None,
) -> nn.Module:
    """Remove the influence of ``task``'s forget set from ``model`` and return the result.

    The input model is copied (unless ``inplace=True``) and never modified; everything random is
    seeded from ``seed`` (the caller's global RNG is left untouched); the method sees only the
    data its access level grants; a non-finite loss, weights or outputs stop the run, and the
    last state with finite outputs (else the input model) is returned (logged as a warning;
    :func:`run_unlearning` returns the full record).

    Args:
        model: the trained model theta_o (any ``nn.Module`` classifier).
        task: the forget task (``unlearnkit.forget_task``).
        method: registered name or alias (``unlearnkit.list_methods()``).
        config: a dict of overrides or the method's config object.
        seed: the unlearning seed.
        preset: a named bundle of reference hyperparameters.
        device: where to run (default: the model's device; ``"auto"``: CUDA, then MPS, then
            the CPU).
        inplace: modify ``model`` itself instead of a copy.
        recipe: the original training recipe (Retrain needs it).
        model_factory: ``seed -> fresh model`` (Retrain, Bad Teacher); default: a recursive
            re-initialisation of a copy of ``model``.
        cache: precomputed statistics shared between calls (e.g. SSD importances).
        time_budget_s: stop updating after this many seconds.
        feature_fn: penultimate-feature extractor ``(model, x) -> features``.
        precision: ``fp32``, ``bf16`` or ``fp16`` (CUDA only); default: the recipe's when one
            is given, else ``fp32``. With ``bf16``/``fp16`` the method's forward passes and
            losses run under autocast on float32 weights (``fp16`` with loss scaling, see
            :class:`~unlearnkit.methods.RunContext`); statistics passes (Fisher, influence,
            saliency, importances) stay in float32. Retrain trains at this precision too.

    Returns:
        The unlearned model, in eval mode.

    Raises:
        ConfigError: unknown method, bad config key or value, unsupported scenario, or a
            device or precision this machine cannot run.
        AccessError: the method needs data the task lacks (e.g. a retain set).

    Example:
        >>> new = uk.unlearn(model, task, method="finetune", config={"epochs": 2}, seed=0)
    """
    outcome = run_unlearning(
        model,
        task,
        method,
        config,
        seed=seed,
        preset=preset,
        device=device,
        inplace=inplace,
        recipe=recipe,
        model_factory=model_factory,
        cache=cache,
        time_budget_s=time_budget_s,
        feature_fn=feature_fn,
        precision=precision,
    )
    if outcome.diverged:
        log.warning("%s diverged: %s", outcome.method, outcome.info.get("diverged_reason"))
    return outcome.model

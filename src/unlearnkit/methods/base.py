"""The method contract: configs, access levels, search spaces and the run context.

Every method is a registered function ``fn(model, data, config, *, ctx) -> nn.Module`` with a
frozen dataclass config (the single source of truth for hyperparameters, defaults and
validation) and a declared :class:`AccessSpec`. The front door (:func:`unlearnkit.unlearn`)
checks access, copies the model, seeds everything, times the call and guards against divergence
through :meth:`RunContext.step`.

The config machinery (:class:`BaseConfig`, :data:`RECORD_IF_SET`, :func:`build_dataclass`)
lives in :mod:`unlearnkit.methods.config` and the search-space helpers (:class:`Dist`,
:func:`loguniform`, ...) in ``_space``; both stay importable from this module.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from ..training import MixedPrecision
from ._guard import OUTPUT_LIMIT, _load_state, outputs_finite, probe_inputs
from ._space import Dist, choice, int_range, loguniform, uniform
from ._swap_update import update_into_grads, update_into_grads_applies
from .config import RECORD_IF_SET, BaseConfig
from .config import build_dataclass as build_dataclass

__all__ = [
    "ACCESS_LEVELS",
    "OUTPUT_LIMIT",
    "RECORD_IF_SET",
    "AccessSpec",
    "BaseConfig",
    "Dist",
    "MethodResult",
    "RunContext",
    "choice",
    "frozen_copy",
    "int_range",
    "loguniform",
    "outputs_finite",
    "probe_inputs",
    "uniform",
]

ACCESS_LEVELS = ("forget_only", "forget_and_retain", "full_train")
AccessLevel = Literal["forget_only", "forget_and_retain", "full_train"]


@dataclass(frozen=True)
class AccessSpec:
    """What data a method may read; the front door enforces it."""

    level: AccessLevel
    uses_forget: bool = True
    uses_retain: bool = True
    retain_fraction: float = 1.0
    forget_labels: bool = True
    retain_labels: bool = True
    needs_val: bool = False
    needs_recipe: bool = False
    needs_model_factory: bool = False
    scenarios: tuple[str, ...] = ("random", "class", "indices", "subclass")

    def __post_init__(self) -> None:
        if self.level not in ACCESS_LEVELS:
            raise ValueError(f"access level must be one of {ACCESS_LEVELS}, got {self.level!r}")
        if self.level == "forget_only" and self.uses_retain:
            object.__setattr__(self, "uses_retain", False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        """The level as reported in tables: ``+val`` marks a method that also reads ``D_val``
        (model selection inside the call, e.g. SCRUB+R's rewind or JiT's safety guard)."""
        return self.level + ("+val" if self.needs_val else "")


# ---------------------------------------------------------------------------------------------
# Run context


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with ``requires_grad=False`` (teachers, theta_o)."""
    import copy

    out = copy.deepcopy(model).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@dataclass
class MethodResult:
    """What a method may return instead of a bare model: the model plus diagnostics."""

    model: nn.Module
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class RunContext:
    """Everything a method may use besides its data: device, randomness, metadata, guards.

    Methods draw every random choice from :attr:`generator` (or :meth:`numpy_rng`) and make
    every optimizer update through :meth:`step`, which enforces ``max_steps`` and the time
    budget and, on a non-finite loss, stops and rolls back to the last good state.

    A state is *good* once its outputs are known to be finite: a step's weights are confirmed
    by the finite loss of the next step (computed from them, so free; non-finite weights
    therefore stop the run at the next step, or, after the last step, at the front door's
    probe check of the result), and a state is only restored after it also gives finite
    outputs on :attr:`probe` (a fixed batch of training inputs, checked in eval mode and in
    float32); otherwise the input model's state is restored. Each step costs the guard one
    finiteness check of the loss, and keeping the weights an update starts from (every
    :attr:`snapshot_every` steps): with SGD, Adam or AdamW on CPU the update writes the new
    weights into the gradients' memory and the old ones are kept as they are, bit for bit the
    optimizer's step with no copy (the parameters' ``.grad`` are then ``None`` after
    :meth:`step`); otherwise one fused copy of the weights (see :mod:`._swap_update` for when
    which applies).

    :attr:`precision` (``fp32``, ``bf16`` or ``fp16``) is the run's: the front door runs the
    whole method under :meth:`autocast`, and with ``fp16`` :meth:`step` scales the loss before
    the backward pass and unscales the gradients before clipping and ``before_step`` (an
    update whose scaled gradients overflow is skipped by the scaler, counted in
    ``info["fp16_skipped_steps"]``, and is not a divergence).
    """

    model: nn.Module
    device: torch.device
    generator: torch.Generator
    seed: int
    num_classes: int
    input_shape: tuple[int, ...]
    scenario: str
    image_shape: tuple[int, int, int] | None = None
    normalization: Any = None
    forget_classes: tuple[int, ...] = ()
    model_factory: Callable[[int], nn.Module] | None = None
    train_recipe: Any = None
    original_model: nn.Module | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("unlearnkit"))
    time_budget_s: float | None = None
    feature_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
    max_steps: int | None = None
    max_grad_norm: float | None = None
    snapshot_every: int = 1
    info: dict[str, Any] = field(default_factory=dict)
    probe: torch.Tensor | None = None
    precision: str = "fp32"

    #: Private switch for overhead measurements only (``benchmarks/guard_overhead.py``):
    #: ``False`` skips the divergence guard's checks and copies in :meth:`step`.
    _guard: ClassVar[bool] = True

    @classmethod
    def for_task(
        cls,
        model: nn.Module,
        task: Any,
        *,
        seed: int = 0,
        device: torch.device | str | None = None,
        original_model: nn.Module | None = None,
        **fields: Any,
    ) -> RunContext:
        """A context for running a method on ``task`` (what the front door builds).

        ``original_model`` defaults to a frozen eval-mode copy of ``model`` and ``probe`` to
        :func:`probe_inputs` of the task; any other field (``model_factory``,
        ``train_recipe``, ``cache``, ``max_steps``...) can be given.
        """
        dev = torch.device(device) if device is not None else _device_of(model)
        bundle = task.bundle
        if "probe" not in fields:
            fields["probe"] = probe_inputs(task, dev)
        return cls(
            model=model,
            device=dev,
            generator=torch.Generator().manual_seed(seed),
            seed=seed,
            num_classes=bundle.num_classes,
            input_shape=tuple(bundle.input_shape),
            scenario=task.scenario,
            image_shape=bundle.image_shape,
            normalization=bundle.normalization,
            forget_classes=task.forget_classes,
            original_model=original_model if original_model is not None else frozen_copy(model),
            **fields,
        )

    def __post_init__(self) -> None:
        self.amp = MixedPrecision(self.device, self.precision)
        self.steps = 0
        self.stopped = False
        self.stop_reason: str | None = None
        self.diverged = False
        self._t0 = time.perf_counter()
        # Rollback states: the input model's (kept on the CPU: it is rarely read) and the last
        # good one, copied by :meth:`step` once the step's finite loss has confirmed the
        # weights it was computed from (before the update overwrites them; the forward pass
        # has just read them, so the copy reads warm memory). The good state is a list in the
        # order of ``_names``/``_src``, the model's state tensors, read once (at the first
        # copy, after any set-up of the model, and again at :meth:`take_snapshot`), so that a
        # step's copy is one fused ``_foreach_copy_``.
        self._initial = {
            k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
        }
        self._names: tuple[str, ...] | None = None
        self._src: list[torch.Tensor] = []
        self._good: list[torch.Tensor] = []
        self._good_step: int | None = None  # None: the input model's state

    def teacher(self, model: nn.Module) -> nn.Module:
        """theta_o as a frozen eval-mode teacher: ``original_model``, else a frozen copy of
        ``model`` (taken before the first update, so it is theta_o too)."""
        return self.original_model if self.original_model is not None else frozen_copy(model)

    def autocast(self):
        """The run's autocast region (for ``fp32``: autocast switched off)."""
        return self.amp.autocast()

    # -- randomness -----------------------------------------------------------------------
    def numpy_rng(self) -> np.random.Generator:
        """A NumPy generator seeded from :attr:`generator` (consumes one draw)."""
        s = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return np.random.default_rng(s)

    # -- guards -----------------------------------------------------------------------------
    def take_snapshot(self) -> None:
        """Remember the current weights as the last good state (a method that changes the
        model outside :meth:`step`, e.g. by reshaping it, replacing a parameter or buffer, or
        rewinding, calls this after; without it, a rollback after a replaced parameter or
        buffer restores the input model)."""
        self._bind()
        self._good_step = self.steps

    def _bind(self) -> None:
        """Read which tensors hold the model's state (parameters as the objects themselves,
        so that a ``.data`` swap is still read) and copy them as the good state."""
        state = self.model.state_dict(keep_vars=True)
        self._names, self._src = tuple(state), list(state.values())
        with torch.no_grad():
            self._good = [t.detach().clone() for t in self._src]

    def _keep_good(self) -> None:
        """The current weights gave a finite loss: copy them as the good state."""
        if self._names is None:
            self._bind()
        else:
            with torch.no_grad():
                torch._foreach_copy_(self._good, self._src)
        self._good_step = self.steps

    def _update_keeping_good(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``, keeping the weights it starts from as the good state: for
        SGD, Adam and AdamW on CPU without a copy (the update writes the new weights into the
        gradients' memory, see :mod:`._swap_update`), otherwise with :meth:`_keep_good`'s
        copy."""
        if self._names is None or not update_into_grads_applies(optimizer):
            self._keep_good()
            optimizer.step()
            return
        old = update_into_grads(optimizer)
        rest = []
        for i, src in enumerate(self._src):
            before = old.get(src)
            if before is not None:
                self._good[i] = before
            else:  # buffers, and parameters this update left alone: unchanged by it
                rest.append(i)
        if rest:
            with torch.no_grad():
                torch._foreach_copy_([self._good[i] for i in rest], [self._src[i] for i in rest])
        self._good_step = self.steps

    def _bound(self) -> bool:
        """Whether the model's state is still held by the tensors read at the last
        :meth:`_bind`, with the same shapes (a parameter or buffer replaced without a
        :meth:`take_snapshot` would have left the copies out of date)."""
        if self._names is None:
            return False
        state = self.model.state_dict(keep_vars=True)
        return tuple(state) == self._names and all(
            t is src and t.shape == kept.shape
            for t, src, kept in zip(state.values(), self._src, self._good)
        )

    def outputs_finite(self, model: nn.Module | None = None) -> bool:
        """Whether ``model`` (default: :attr:`model`) gives finite outputs on :attr:`probe`
        (in eval mode, modes restored after; ``True`` without a probe when weights are finite)."""
        model = self.model if model is None else model
        if self.probe is None:
            return _params_finite(model)
        # In float32 whatever the run's precision: a float16 overflow is not a broken state.
        with torch.autocast(self.probe.device.type, enabled=False):
            return outputs_finite(model, self.probe)

    def restore_snapshot(self) -> str:
        """Load the last good state back into the model (matching names and shapes), or the
        input model's state when that one gives non-finite outputs on :attr:`probe`.

        Returns:
            What was restored: ``"step N"`` or ``"input model"``.
        """
        if self._good_step is not None and self._bound():
            _load_state(self.model, dict(zip(self._names, self._good)))
            if self.outputs_finite():
                return f"step {self._good_step}"
        _load_state(self.model, self._initial)
        self._good_step = None
        return "input model"

    def weights_finite(self) -> bool:
        return _params_finite(self.model)

    def stop(self, reason: str) -> None:
        """Ask the method to stop (its loops check :attr:`stopped` / :meth:`can_step`)."""
        if not self.stopped:
            self.stopped, self.stop_reason = True, reason

    def diverge(self, reason: str) -> None:
        """Mark the run diverged, restore the last good state (see :meth:`restore_snapshot`)
        and stop; ``info`` records the reason and the state restored (``rollback``)."""
        self.diverged = True
        self.info.setdefault("diverged_reason", reason)
        restored = self.restore_snapshot()
        self.info["rollback"] = restored
        self.stop(f"diverged: {reason}")
        self.logger.warning("unlearning diverged (%s); restored the %s state", reason, restored)

    def can_step(self) -> bool:
        """Whether another update is allowed (call before a forward pass that changes state)."""
        if self.stopped:
            return False
        if self.max_steps is not None and self.steps >= self.max_steps:
            self.stop("max_steps")
            return False
        if self.time_budget_s is not None and time.perf_counter() - self._t0 > self.time_budget_s:
            self.stop("time_budget")
            return False
        return True

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        loss: torch.Tensor,
        *,
        params: Sequence[torch.Tensor] | None = None,
        zero_grad: bool = True,
        before_step: Callable[[], None] | None = None,
        after_step: Callable[[], None] | None = None,
    ) -> bool:
        """Backpropagate ``loss`` and make one optimizer update, under the guards.

        Args:
            optimizer: the method's optimizer.
            loss: a scalar loss with a graph.
            params: parameters to clip (default: the model's).
            zero_grad: zero gradients before the backward pass (``False`` accumulates).
            before_step: called after ``backward`` and clipping, before ``optimizer.step()``
                (e.g. gradient masking).
            after_step: called right after ``optimizer.step()`` (e.g. mask enforcement).

        Returns:
            ``True`` if the update was made; ``False`` if the method must stop (max steps, time
            budget, or divergence, in which case the last good state is restored).
        """
        if not self.can_step():
            return False
        guard = self._guard
        if guard and not _finite(loss):  # the unscaled loss, at any precision
            self.diverge(f"non-finite loss at step {self.steps + 1}")
            return False
        every = self.snapshot_every
        # the weights of the last update, confirmed by this loss, are kept as the good state
        keep = (
            guard
            and every
            and self.steps
            and self.steps % every == 0
            and self._good_step != self.steps
        )
        scaler = self.amp.scaler
        if zero_grad:
            optimizer.zero_grad(set_to_none=True)
        elif scaler is not None:
            self.amp.scale_held_gradients(optimizer)  # unscaled ones, from earlier steps
        if scaler is None:
            loss.backward()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clipping and before_step see the true gradients
        if self.max_grad_norm is not None:
            ps = list(params) if params is not None else list(self.model.parameters())
            torch.nn.utils.clip_grad_norm_(ps, self.max_grad_norm)
        if before_step is not None:
            before_step()
        if scaler is None and keep and zero_grad and after_step is None:
            self._update_keeping_good(optimizer)
        elif scaler is None:
            if keep:
                self._keep_good()
            optimizer.step()
        else:
            if keep:
                self._keep_good()
            scale = scaler.get_scale()
            scaler.step(optimizer)  # skipped when the gradients hold inf or NaN
            scaler.update()
            if scaler.get_scale() < scale:  # the scale backs off only after a skipped step
                self.info["fp16_skipped_steps"] = self.info.get("fp16_skipped_steps", 0) + 1
                if not zero_grad:  # an accumulating method must not keep overflowed gradients
                    optimizer.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step()
        self.steps += 1
        # The new weights are not checked here: the next step's loss is computed from them,
        # and they become the good state only once it is finite; the weights left after the
        # last step are checked on the probe by the front door.
        return True


def _finite(loss: torch.Tensor) -> bool:
    """Whether every value of ``loss`` is finite (a scalar is read with one ``item()``)."""
    if loss.numel() == 1:
        return math.isfinite(loss.item())
    return bool(torch.isfinite(loss.detach()).all())


def _params_finite(model: nn.Module) -> bool:
    """Whether every parameter is finite, with one host sync (not one per tensor)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    if not flags:
        return True
    return bool(torch.stack([f.to(flags[0].device) for f in flags]).all())

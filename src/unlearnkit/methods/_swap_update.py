"""The divergence guard's copy-free update for SGD, Adam and AdamW on CPU.

The guard must be able to restore the weights an update started from (the last good state, see
:class:`~unlearnkit.methods.RunContext`). An in-place update overwrites them, so the general
path copies them first: one pass writing a weight-sized buffer per step, which on a small dense
model costs several percent of the step (``benchmarks/guard_overhead.py``), mostly in the cache
traffic it adds to the backward pass and the update.

For ``torch.optim.SGD``, ``Adam`` and ``AdamW`` on CPU the update can keep them for free
instead: each parameter's new value is written into the memory of its gradient (no longer
needed once the optimizer state is updated) and that buffer becomes the parameter's data, while
the old buffer, untouched, is kept as the good state. The arithmetic is the optimizer's own,
operation for operation (SGD: weight decay, momentum with dampening, Nesterov; Adam/AdamW: L2 or
decoupled weight decay, bias corrections, AMSGrad), so the weights and the optimizer state are
bit for bit those of ``optimizer.step()``: ``tests/unit/methods/test_swap_update.py`` checks it,
and, so that another torch version can never change a run silently, every configuration is also
checked against torch's own optimizer on a small tensor the first time a process meets it (a
mismatch keeps torch's step and the copy). After the update the parameters' ``.grad`` are
``None`` (their memory holds the new weights); the parameter objects stay the same (a ``.data``
swap).

Anything else takes the general path: another optimizer, ``maximize``, ``foreach``, ``fused``,
``capturable`` or ``differentiable`` set, tensor hyperparameters, step hooks, gradients that are
sparse, views or laid out unlike their parameters, complex or non-CPU tensors (other devices'
kernels are not checked here), an Adam parameter's first step (torch creates its state), a
gradient-accumulating step, fp16 loss scaling, or an ``after_step`` callback (which may read the
gradients).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

__all__ = ["update_into_grads", "update_into_grads_applies"]

_ADAM = (torch.optim.Adam, torch.optim.AdamW)
_OFF = ("maximize", "foreach", "fused", "capturable", "differentiable")  # must all be falsy
#: The options that decide which operations a step runs (the rest are numbers fed to them).
_STRUCTURE = (
    "momentum",
    "weight_decay",
    "dampening",
    "nesterov",
    "amsgrad",
    "decoupled_weight_decay",
)
_NUMBERS = ("lr", "weight_decay", "momentum", "dampening", "eps")  # must be Python numbers
_VERIFIED: dict[tuple, bool] = {}  # (kind, structure) -> matches torch's own step


def update_into_grads_applies(optimizer: torch.optim.Optimizer) -> bool:
    """Whether :func:`update_into_grads` makes exactly ``optimizer.step()``'s update (checked
    before every guarded update, so kept to a few attribute reads per parameter)."""
    kind = type(optimizer)
    adam = kind in _ADAM
    if kind is not torch.optim.SGD and not adam:
        return False
    if (
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or _global_optimizer_pre_hooks
        or _global_optimizer_post_hooks
    ):
        return False
    state = optimizer.state
    for group in optimizer.param_groups:
        if any(group.get(k) for k in _OFF) or any(torch.is_tensor(group.get(k)) for k in _NUMBERS):
            return False
        if adam and any(map(torch.is_tensor, group["betas"])):
            return False
        if not _verified(kind, group):
            return False
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if (
                not (g.is_cpu and p.is_cpu)
                or g.is_sparse
                or g._base is not None
                or p._base is not None
                or g.dtype != p.dtype
                or p.dtype.is_complex
                or g.stride() != p.stride()
            ):
                return False
            if adam and "exp_avg_sq" not in state.get(p, ()):  # torch's first step creates it
                return False
    return True


def update_into_grads(optimizer: torch.optim.Optimizer) -> dict[torch.Tensor, torch.Tensor]:
    """Make the optimizer's update with each new weight written into its gradient's memory.

    Only call it when :func:`update_into_grads_applies`. Every parameter with a gradient gets
    that buffer as its data and loses its ``.grad``; the optimizer state is updated in place,
    as the optimizer does.

    Returns:
        For every updated parameter, its data before the update (a buffer nothing else writes).
    """
    update = _sgd if type(optimizer) is torch.optim.SGD else _adam
    old: dict[torch.Tensor, torch.Tensor] = {}
    with torch.no_grad():
        for group in optimizer.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                update(optimizer.state[p], group, p, g)  # the new weights, into g
                old[p] = p.data
                p.grad = None
                p.data = g
    # What Optimizer.step's learning-rate-scheduler wrapper records, so that a scheduler does
    # not warn that it was stepped before the optimizer.
    optimizer._opt_called = True  # type: ignore[attr-defined]
    return old


def _sgd(state: dict, group: dict, p: torch.Tensor, g: torch.Tensor) -> None:
    """torch's single-tensor SGD for one parameter, the new weights written into ``g``."""
    wd, momentum, lr = group["weight_decay"], group["momentum"], group["lr"]
    d = g.add(p, alpha=wd) if wd != 0 else g
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = d.detach().clone()
        else:
            buf.mul_(momentum).add_(d, alpha=1 - group["dampening"])
        d = d.add(buf, alpha=momentum) if group["nesterov"] else buf
    torch.add(p, d, alpha=-lr, out=g)  # what SGD's p.add_(d, alpha=-lr) computes


def _adam(state: dict, group: dict, p: torch.Tensor, g: torch.Tensor) -> None:
    """torch's single-tensor Adam/AdamW for one parameter (state already created by a first
    ``step()``), the new weights written into ``g`` once the moments have read it."""
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    decoupled = group.get("decoupled_weight_decay", False)
    exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
    step_t += 1
    grad = g.add(p, alpha=wd) if wd != 0 and not decoupled else g
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step = step_t.item()
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    if group["amsgrad"]:
        max_sq = state["max_exp_avg_sq"]
        torch.maximum(max_sq, exp_avg_sq, out=max_sq)
        denom = (max_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    else:
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    if wd != 0 and decoupled:  # AdamW scales the weights first: p.mul_(1 - lr * wd)
        torch.mul(p, 1 - lr * wd, out=g)
        g.addcdiv_(exp_avg, denom, value=-step_size)
    else:
        torch.addcdiv(p, exp_avg, denom, value=-step_size, out=g)


def _verified(kind: type, group: dict) -> bool:
    """Whether this kind of optimizer with this group's structure (which branches its step
    takes) matches torch's own step: checked once per process and structure, with the group's
    own numbers, on a small tensor."""
    key = (kind, *(bool(group.get(k)) for k in _STRUCTURE))
    verdict = _VERIFIED.get(key)
    if verdict is None:
        options = {k: v for k, v in group.items() if k not in ("params", "initial_lr")}
        verdict = _VERIFIED[key] = _matches_torch(kind, options)
    return verdict


def _matches_torch(kind: type, options: dict[str, Any]) -> bool:
    """Four steps of ``kind(**options)`` on a small random tensor, torch's against ours (the
    first by torch for both: it creates the state), compared bit for bit."""
    accepted = inspect.signature(kind.__init__).parameters
    options = {k: v for k, v in options.items() if k in accepted}
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(5, 37, generator=gen)  # vectorised kernels and their tails
    grads = [torch.randn(5, 37, generator=gen) for _ in range(4)]
    ref, ours = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    try:
        opt_ref, opt_ours = kind([ref], **options), kind([ours], **options)
        step: Callable[[], Any]
        for i, g in enumerate(grads):
            ref.grad, ours.grad = g.clone(), g.clone()
            opt_ref.step()
            step = opt_ours.step if i == 0 else lambda: update_into_grads(opt_ours)
            step()
    except Exception:  # noqa: BLE001 - any failure keeps torch's own step
        return False
    s_ref, s_ours = opt_ref.state[ref], opt_ours.state[ours]
    return (
        torch.equal(ref, ours)
        and s_ref.keys() == s_ours.keys()
        and all(
            torch.equal(s_ref[k], s_ours[k]) if torch.is_tensor(s_ref[k]) else s_ref[k] == s_ours[k]
            for k in s_ref
        )
    )

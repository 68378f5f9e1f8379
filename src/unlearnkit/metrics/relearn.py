"""Relearn time and the Anamnesis Index.

Both ask how quickly forgotten knowledge comes back when a model is fine-tuned again. A model
that still holds the forget set's information relearns it in fewer steps than the retrained
model, which never saw it.

* **Relearn time** (after Golatkar, Achille and Soatto, 2020): plain SGD (lr 0.01, no momentum,
  no weight decay) on batches of 500 drawn *with replacement* from the whole training set
  ``D_tr`` (forget samples included); count the steps until the mean loss on ``D_f`` is at most
  the original model's ``L_f(θ_o) + 1e-5``; stop at 100 steps and report the cap as censored.
  Compare ``relearn_steps(θ_u)`` with ``relearn_steps(θ_r)``: ``u ≪ r`` is residual knowledge.
* **AIN** (Anamnesis Index, after Chundawat et al., 2023): ``rt(θ_u) / rt(θ_r)``, where ``rt``
  counts SGD steps on ``relearn_data`` (default ``D_f``) until the accuracy on ``D_f`` reaches
  ``(1 − α) · Acc(θ_o, D_f)``; α = 0.1 is this library's default (check the paper's value before
  comparing with its tables). Ideal ≈ 1; below 1 is residual knowledge, far above 1 is damage.

Every fine-tune works on a copy (the model passed in is untouched), draws its batches from its
own generator seeded with ``seed`` (so ``θ_u`` and ``θ_r`` see the same batch order) and leaves
the global RNG alone.

>>> res = relearn_time(unlearned, task.train_full, task.forget, mean_loss(original, task.forget))
>>> res.steps, res.censored
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_device
from ..data import DataView
from ..errors import ConfigError, DataError

__all__ = [
    "RelearnResult",
    "anamnesis_index",
    "forget_accuracy",
    "mean_loss",
    "relearn_steps_to_accuracy",
    "relearn_time",
]


@dataclass(frozen=True)
class RelearnResult:
    """Steps until the criterion held; ``censored`` when it never did within ``max_steps``
    (``steps`` is then ``max_steps``, a lower bound)."""

    steps: int
    censored: bool


Data = DataView | tuple[torch.Tensor, torch.Tensor]


def _xy(data: Data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = (data.x, data.y) if isinstance(data, DataView) else data
    if y is None:
        raise DataError(f"{what} needs labels; pass a labelled view or an (x, y) pair")
    if len(x) == 0:
        raise DataError(f"{what} is empty")
    if len(x) != len(y):
        raise DataError(f"{what}: inputs and labels differ in length ({len(x)} vs {len(y)})")
    return x, y


def _device(model: nn.Module, device: Any) -> torch.device:
    if device is not None:
        return check_device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def _eval(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dev: torch.device):
    was = model.training
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(x), 1024):
        xb, yb = x[start : start + 1024].to(dev), y[start : start + 1024].to(dev)
        logits = model(xb).double()
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    model.train(was)
    return loss / len(x), correct / len(x)


def mean_loss(model: nn.Module, data: Data, *, device: Any = None) -> float:
    """Mean cross-entropy of ``model`` (eval mode, float64 reduction) on ``data``."""
    x, y = _xy(data, "mean_loss data")
    return _eval(model, x, y, _device(model, device))[0]


def forget_accuracy(model: nn.Module, data: Data, *, device: Any = None) -> float:
    """Accuracy of ``model`` (eval mode) on ``data``."""
    x, y = _xy(data, "accuracy data")
    return _eval(model, x, y, _device(model, device))[1]


def _check(lr: float, batch_size: int, max_steps: int) -> None:
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"relearn lr must be a positive number, got {lr!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"relearn batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise ConfigError(f"relearn max_steps must be a non-negative integer, got {max_steps!r}")


def _fine_tune_until(
    model: nn.Module,
    train: Data,
    done,
    *,
    lr: float,
    batch_size: int,
    max_steps: int,
    seed: int,
    proximal: float,
    device: Any,
    what: str,
) -> RelearnResult:
    """Plain SGD on batches drawn with replacement from ``train`` (seeded), checking
    ``done(model)`` before the first step and after every step."""
    _check(lr, batch_size, max_steps)
    if proximal < 0:
        raise ConfigError(f"proximal weight must be >= 0, got {proximal!r}")
    x, y = _xy(train, what)
    dev = _device(model, device)
    m = copy.deepcopy(model).to(dev)
    if done(m):
        return RelearnResult(0, False)
    params = [p for p in m.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params] if proximal > 0 else None
    opt = torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=0.0)
    gen = torch.Generator().manual_seed(int(seed))
    for step in range(1, max_steps + 1):
        idx = torch.randint(len(x), (batch_size,), generator=gen)
        m.train()
        loss = F.cross_entropy(m(x[idx].to(dev)), y[idx].to(dev))
        if anchor is not None:
            loss = loss + 0.5 * proximal * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if done(m):
            return RelearnResult(step, False)
    return RelearnResult(max_steps, True)


def relearn_time(
    model: nn.Module,
    train: Data,
    forget: Data,
    target_loss: float,
    *,
    lr: float = 0.01,
    batch_size: int = 500,
    max_steps: int = 100,
    tol: float = 1e-5,
    seed: int = 0,
    legacy_proximal: float = 0.0,
    device: Any = None,
) -> RelearnResult:
    """Steps of plain SGD until ``model``'s mean loss on ``forget`` is ``<= target_loss + tol``.

    Args:
        model: the model to fine-tune (a copy is trained; ``model`` is untouched).
        train: ``D_tr``, the whole training set, forget samples included; batches of
            ``batch_size`` are drawn from it with replacement.
        forget: ``D_f``, where the loss is read.
        target_loss: ``L_f(θ_o)``, the original model's mean forget loss (:func:`mean_loss`).
        lr, batch_size, max_steps, tol: the readout's settings (SGD lr 0.01, no momentum or
            weight decay, 500 per batch, at most 100 steps, tolerance 1e-5).
        seed: the batch-drawing seed; use one seed for θ_u and θ_r.
        legacy_proximal: λ of the original readout's pull ``λ/2 · ‖θ − θ_start‖²`` (0: off).

    Returns:
        :class:`RelearnResult`; a model already at the target (e.g. θ_o itself) needs 0 steps.
    """
    fx, fy = _xy(forget, "relearn forget data")
    if not math.isfinite(target_loss):
        raise ConfigError(f"target_loss must be finite, got {target_loss!r}")
    dev = _device(model, device)
    return _fine_tune_until(
        model,
        train,
        lambda m: _eval(m, fx, fy, dev)[0] <= target_loss + tol,
        lr=lr,
        batch_size=batch_size,
        max_steps=max_steps,
        seed=seed,
        proximal=legacy_proximal,
        device=dev,
        what="relearn training data",
    )


def relearn_steps_to_accuracy(
    model: nn.Module,
    relearn_data: Data,
    forget: Data,
    target_accuracy: float,
    *,
    lr: float = 0.01,
    batch_size: int = 64,
    max_steps: int = 100,
    seed: int = 0,
    device: Any = None,
) -> RelearnResult:
    """AIN's ``rt``: SGD steps on ``relearn_data`` until the accuracy on ``forget`` is at least
    ``target_accuracy`` (batches drawn with replacement, seeded; checked after every step)."""
    fx, fy = _xy(forget, "AIN forget data")
    dev = _device(model, device)
    return _fine_tune_until(
        model,
        relearn_data,
        lambda m: _eval(m, fx, fy, dev)[1] >= target_accuracy - 1e-12,
        lr=lr,
        batch_size=batch_size,
        max_steps=max_steps,
        seed=seed,
        proximal=0.0,
        device=dev,
        what="AIN relearn data",
    )


def anamnesis_index(
    unlearned: nn.Module,
    retrained: nn.Module,
    original: nn.Module,
    forget: Data,
    relearn_data: Data | None = None,
    *,
    alpha: float = 0.1,
    lr: float = 0.01,
    batch_size: int = 64,
    max_steps: int = 100,
    seed: int = 0,
    device: Any = None,
) -> dict[str, float]:
    """AIN = ``rt(θ_u) / rt(θ_r)``, with both fine-tunes on the same batches.

    Returns ``ain``, ``ain_rt_u``, ``ain_rt_r``, ``ain_censored_u`` / ``ain_censored_r``
    (1.0 when that fine-tune hit ``max_steps``) and ``ain_target_acc``. ``ain`` is NaN when
    ``rt(θ_r) = 0`` (the retrained model already reaches the target, so there is no relearning
    to compare with; common when the forget set is easy for unseen data).
    """
    if not 0 <= alpha < 1:
        raise ConfigError(f"AIN alpha must be in [0, 1), got {alpha!r}")
    data = forget if relearn_data is None else relearn_data
    target = (1 - alpha) * forget_accuracy(original, forget, device=device)
    kw = dict(lr=lr, batch_size=batch_size, max_steps=max_steps, seed=seed, device=device)
    u = relearn_steps_to_accuracy(unlearned, data, forget, target, **kw)
    r = relearn_steps_to_accuracy(retrained, data, forget, target, **kw)
    return {
        "ain": u.steps / r.steps if r.steps > 0 else float("nan"),
        "ain_rt_u": float(u.steps),
        "ain_rt_r": float(r.steps),
        "ain_censored_u": float(u.censored),
        "ain_censored_r": float(r.censored),
        "ain_target_acc": float(target),
    }

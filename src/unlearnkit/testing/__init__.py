"""Tiny data, tiny models and the method conformance check, public so that users can check
their own registered methods exactly as the built-ins are checked.

>>> from unlearnkit.testing import check_method
>>> check_method("finetune")  # raises AssertionError on the first broken rule
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..datasets import DatasetBundle, load
from ..errors import AccessError, ConfigError
from ..models import ModelFactory
from ..tasks import ForgetTask, forget_task
from ..training import TrainRecipe, train

__all__ = [
    "TINY_RECIPE",
    "TinyBNNet",
    "check_method",
    "tiny_bundle",
    "tiny_model",
    "tiny_task",
    "trained_tiny_model",
]

TINY_RECIPE = TrainRecipe(epochs=3, batch_size=16, lr=0.05)


def tiny_bundle(seed: int = 0, *, image: bool = True, fine: bool = False) -> DatasetBundle:
    """96 training samples, 4 classes, 1x6x6 images (or 36-vectors); seconds to use.

    ``fine=True`` makes each class two fine sub-classes (fine labels ``2c`` and ``2c + 1``),
    for the ``subclass`` scenario.
    """
    shape = (1, 6, 6) if image else (36,)
    return load(
        "synthetic",
        n_train=96,
        n_val=32,
        n_test=48,
        num_classes=4,
        input_shape=shape,
        separation=1.5,
        seed=seed,
        **({"fine_per_class": 2} if fine else {}),
    )


class TinyBNNet(nn.Module):
    """A nested model with BatchNorm and dropout (exercises buffers, modes and nesting)."""

    def __init__(self, in_features: int = 36, num_classes: int = 4, hidden: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU()),
            nn.Dropout(0.1),
        )
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def tiny_model(
    bundle: DatasetBundle | None = None, *, seed: int = 0, bn: bool = False
) -> nn.Module:
    """An untrained tiny MLP (or :class:`TinyBNNet` with ``bn=True``) for ``bundle``."""
    bundle = bundle or tiny_bundle()
    if bn:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return TinyBNNet(int(torch.tensor(bundle.input_shape).prod()), bundle.num_classes)
    return ModelFactory(
        "mlp", tuple(bundle.input_shape), bundle.num_classes, bundle.image_shape, {"hidden": (32,)}
    )(seed)


def tiny_factory(bundle: DatasetBundle) -> ModelFactory:
    return ModelFactory(
        "mlp", tuple(bundle.input_shape), bundle.num_classes, bundle.image_shape, {"hidden": (32,)}
    )


def trained_tiny_model(bundle: DatasetBundle | None = None, *, seed: int = 0, bn: bool = False):
    """A tiny model trained with :data:`TINY_RECIPE`."""
    bundle = bundle or tiny_bundle()
    return train(tiny_model(bundle, seed=seed, bn=bn), bundle.train, TINY_RECIPE, seed=seed)


def tiny_task(bundle: DatasetBundle | None = None, scenario: str = "random") -> ForgetTask:
    """A 10 % random, class-0 or (on a ``fine=True`` bundle) fine-class-1 forget task."""
    bundle = bundle or tiny_bundle(fine=scenario == "subclass")
    if scenario == "class":
        return forget_task(bundle, "class", classes=[0])
    if scenario == "subclass":
        return forget_task(bundle, "subclass", subclasses=[1])
    return forget_task(bundle, "random", fraction=0.1, seed=0)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


class _Boom(RuntimeError):
    pass


class _FailingModel(nn.Module):
    """Wraps a model and raises on the ``fail_at``-th forward call (failure-path checks)."""

    def __init__(self, inner: nn.Module, fail_at: int):
        super().__init__()
        self.inner, self.fail_at, self.calls = inner, fail_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise _Boom("planned failure")
        return self.inner(x)


def check_method(
    name: str,
    *,
    config: dict[str, Any] | None = None,
    scenario: str = "random",
    bn: bool = False,
) -> None:
    """Run the library's conformance rules on a registered method.

    Checks: the input model is untouched; the same seed gives the same weights; parameter
    names and shapes (and the output dimension K) come back unchanged, in eval mode, on CPU;
    no hooks or ``requires_grad`` changes are left behind, even after a failure inside the
    method; the method's identity setting (zero steps) leaves the model unchanged; a bad config
    key or value raises :class:`ConfigError`; missing data raise :class:`AccessError` (and a
    ``forget_only`` method runs on a task without any retain set).

    Raises:
        AssertionError: naming the broken rule.
    """
    from ..api import run_unlearning
    from ..methods import get_method

    spec = get_method(name)
    bundle = tiny_bundle(fine=scenario == "subclass")
    task = tiny_task(bundle, scenario)
    model = trained_tiny_model(bundle, bn=bn)
    kw = {"recipe": TINY_RECIPE, "model_factory": tiny_factory(bundle) if not bn else None}
    if bn:
        kw["model_factory"] = lambda s: tiny_model(bundle, seed=s, bn=True)
    before = _state(model)
    grads_before = {k: p.requires_grad for k, p in model.named_parameters()}

    out1 = run_unlearning(model, task, name, config, seed=3, **kw)
    assert _same(before, _state(model)), f"{name}: the input model was modified"
    out2 = run_unlearning(model, task, name, config, seed=3, **kw)
    s1, s2 = _state(out1.model), _state(out2.model)
    assert _same(s1, s2), f"{name}: the same seed gave different weights"
    assert {k: v.shape for k, v in s1.items()} == {k: v.shape for k, v in before.items()}, (
        f"{name}: parameter names or shapes changed"
    )
    assert not out1.model.training, f"{name}: the returned model is not in eval mode"
    assert all(p.device.type == "cpu" for p in out1.model.parameters()), f"{name}: not on CPU"
    with torch.no_grad():
        k_out = out1.model(bundle.test.x[:2]).shape[-1]
    assert k_out == bundle.num_classes, f"{name}: output dimension {k_out} != K"
    assert _hooks(out1.model) == 0, f"{name}: hooks left on the returned model"
    assert {k: p.requires_grad for k, p in out1.model.named_parameters()} == grads_before, (
        f"{name}: requires_grad flags changed"
    )
    assert not out1.diverged, f"{name}: diverged on the tiny task with its default config"

    # Failure path: hooks and requires_grad are restored even when the method raises.
    victim = _FailingModel(copy.deepcopy(model), fail_at=2)
    flags = {k: p.requires_grad for k, p in victim.named_parameters()}
    try:
        run_unlearning(victim, task, name, config, seed=3, inplace=True, **kw)
    except _Boom:
        pass
    assert _hooks(victim) == 0, f"{name}: hooks left behind after a failure"
    assert {k: p.requires_grad for k, p in victim.named_parameters()} == flags, (
        f"{name}: requires_grad flags changed after a failure"
    )

    if spec.identity_config is not None:
        ident = {**(config or {}), **spec.identity_config}
        out0 = run_unlearning(model, task, name, ident, seed=3, **kw)
        assert _same(before, _state(out0.model)), (
            f"{name}: its identity setting {spec.identity_config} changed the model"
        )

    try:
        run_unlearning(model, task, name, {"definitely_not_a_key": 1}, seed=0, **kw)
    except ConfigError:
        pass
    else:
        raise AssertionError(f"{name}: an unknown config key was accepted")
    try:
        run_unlearning(model, task, name, {**(config or {}), "batch_size": 0}, seed=0, **kw)
    except ConfigError:
        pass
    else:
        raise AssertionError(f"{name}: batch_size=0 was accepted")

    no_retain = task.forget_only()
    if spec.access.level == "forget_only":
        out = run_unlearning(model, no_retain, name, config, seed=0, **kw)
        assert isinstance(out.model, nn.Module)
    else:
        try:
            run_unlearning(model, no_retain, name, config, seed=0, **kw)
        except AccessError:
            pass
        else:
            raise AssertionError(f"{name}: ran without the retain set it declares it needs")

"""Tiny data, tiny models and the method conformance check, public so that users can check
their own registered methods exactly as the built-ins are checked.

>>> from unlearnkit.testing import check_method
>>> check_method("finetune")  # raises AssertionError on the first broken rule
>>> check_method("finetune", arch="resnet18", arch_kwargs={"width": 4})  # on a tiny ResNet
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from ..datasets import DatasetBundle, Split, load
from ..errors import AccessError, ConfigError
from ..models import ModelFactory, input_kind
from ..tasks import ForgetTask, forget_task
from ..training import TrainRecipe, train

__all__ = [
    "TINY_RECIPE",
    "TINY_VOCAB",
    "TinyBNNet",
    "arch_bundle",
    "arch_factory",
    "check_method",
    "settle_batchnorm",
    "tiny_bundle",
    "tiny_model",
    "tiny_task",
    "tiny_text_bundle",
    "trained_tiny_model",
]

TINY_RECIPE = TrainRecipe(epochs=3, batch_size=16, lr=0.05)
TINY_VOCAB = 40  # token ids of tiny_text_bundle: 0 (padding) to 39
# Image size of the tiny bundle per architecture: 3x8x8, except where the model needs more.
_TINY_IMAGES = {"vgg16_bn": (3, 32, 32)}


def tiny_bundle(
    seed: int = 0,
    *,
    image: bool = True,
    fine: bool = False,
    shape: tuple[int, ...] | None = None,
) -> DatasetBundle:
    """96 training samples, 4 classes, 1x6x6 images (or 36-vectors); seconds to use.

    ``fine=True`` makes each class two fine sub-classes (fine labels ``2c`` and ``2c + 1``),
    for the ``subclass`` scenario. ``shape`` replaces the input shape (e.g. ``(3, 8, 8)``).
    """
    if shape is None:
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


def tiny_text_bundle(seed: int = 0, *, fine: bool = False, length: int = 12) -> DatasetBundle:
    """96 training samples, 4 classes, token ids ``(N, length)`` below :data:`TINY_VOCAB`.

    Each row holds 3 to ``length`` tokens followed by padding (id 0). Every class (or, with
    ``fine=True``, every fine sub-class ``2c`` / ``2c + 1``) has its own four favourite tokens,
    which make up about two thirds of its tokens; the rest are drawn from the whole vocabulary.
    """
    groups = 8 if fine else 4
    g = torch.Generator().manual_seed(seed)
    favourites = 1 + torch.randperm(TINY_VOCAB - 1, generator=g)[: 4 * groups].view(groups, 4)

    def draw(n: int) -> Split:
        group = (torch.arange(n) % groups)[torch.randperm(n, generator=g)]
        pick = torch.randint(0, 4, (n, length), generator=g)
        own = favourites[group.unsqueeze(1), pick]
        noise = torch.randint(1, TINY_VOCAB, (n, length), generator=g)
        x = torch.where(torch.rand(n, length, generator=g) < 2 / 3, own, noise)
        lengths = torch.randint(3, length + 1, (n, 1), generator=g)
        x = torch.where(torch.arange(length) < lengths, x, torch.zeros_like(x))
        y = group // 2 if fine else group
        return Split(x.contiguous(), y.contiguous(), group.clone() if fine else None)

    return DatasetBundle(
        name="tiny_text",
        train=draw(96),
        val=draw(32),
        test=draw(48),
        num_classes=4,
        input_shape=(length,),
        split_info={"seed": seed, "generator": "tiny_text_bundle"},
        fine_names=tuple(f"{c}.{j}" for c in range(4) for j in range(2)) if fine else None,
        modality="text",
        vocab_size=TINY_VOCAB,
    )


def arch_factory(
    arch: str, bundle: DatasetBundle, arch_kwargs: dict[str, Any] | None = None
) -> ModelFactory:
    """A factory of architecture ``arch`` for ``bundle`` (token models get :data:`TINY_VOCAB`
    unless ``arch_kwargs`` or the bundle name a vocabulary)."""
    factory = ModelFactory.for_bundle(arch, bundle, **(arch_kwargs or {}))
    if input_kind(arch) == "tokens" and "vocab_size" not in factory.kwargs:
        factory = dataclasses.replace(factory, kwargs={**factory.kwargs, "vocab_size": TINY_VOCAB})
    return factory


def arch_bundle(arch: str, *, fine: bool = False, seed: int = 0) -> DatasetBundle:
    """The tiny bundle that fits ``arch``: token ids for text models, 3x8x8 images for image
    models (3x32x32 for ``vgg16_bn``), 1x6x6 images for ``mlp``."""
    kind = input_kind(arch)
    if kind == "tokens":
        return tiny_text_bundle(seed, fine=fine)
    if kind == "image":
        return tiny_bundle(seed, fine=fine, shape=_TINY_IMAGES.get(arch, (3, 8, 8)))
    return tiny_bundle(seed, fine=fine)


def settle_batchnorm(model: nn.Module, bundle: DatasetBundle) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics from the training inputs, in place.

    Three tiny epochs are too few steps for the running averages (momentum 0.1) to forget
    their initial values; in a deep network the small errors multiply from layer to layer and
    the eval-mode logits blow up. One pass over ``bundle.train`` in train mode with a
    cumulative average gives statistics that match the final weights. No weight changes; the
    model is returned in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass
        model.train()
        with torch.no_grad():
            for start in range(0, len(bundle.train), TINY_RECIPE.batch_size):
                model(bundle.train.x[start : start + TINY_RECIPE.batch_size])
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return model.eval()


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
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
) -> None:
    """Run the library's conformance rules on a registered method.

    By default the model is a tiny MLP (or :class:`TinyBNNet` with ``bn=True``) on 1x6x6
    images. ``arch=`` runs the same rules on a reference architecture built with
    ``arch_kwargs`` (pass small sizes, e.g. ``{"width": 4}``) on a tiny bundle of the shape it
    takes (see :func:`arch_bundle`).

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
    if arch is not None and bn:
        raise ConfigError("check_method: bn=True picks TinyBNNet; leave it out with arch=")
    fine = scenario == "subclass"
    bundle = tiny_bundle(fine=fine) if arch is None else arch_bundle(arch, fine=fine)
    task = tiny_task(bundle, scenario)
    if arch is not None:
        factory = arch_factory(arch, bundle, arch_kwargs)
        model = settle_batchnorm(train(factory(0), bundle.train, TINY_RECIPE, seed=0), bundle)
        kw: dict[str, Any] = {"recipe": TINY_RECIPE, "model_factory": factory}
    else:
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

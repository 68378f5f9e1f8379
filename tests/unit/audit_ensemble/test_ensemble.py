"""Ensemble training: every member equals the model trained alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.audit.ensemble import (
    _stacked_optimizer,
    check_ensemble_compatible,
    train_ensemble,
)
from unlearnkit.audit.stacked_grads import _linear_chain, _StackedChain
from unlearnkit.data import DataView
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.models import ModelFactory
from unlearnkit.optim import build_optimizer
from unlearnkit.testing import TinyBNNet, tiny_bundle
from unlearnkit.training import TrainingDiverged, TrainRecipe, train

ATOL = 1e-5


@pytest.fixture(scope="module")
def tiny():
    return tiny_bundle()


@pytest.fixture(scope="module")
def digits():
    return uk.datasets.load("digits")


def _mlp(bundle, hidden=(32,)):
    return ModelFactory.for_bundle("mlp", bundle, hidden=hidden)


def _alone(factory, data, recipe, seed):
    return train(factory(seed), data, recipe, seed=seed)


def _assert_members_match(models, factory, datasets, recipe, seeds, atol=ATOL):
    assert len(models) == len(seeds)
    for model, data, seed in zip(models, datasets, seeds):
        ref = _alone(factory, data, recipe, seed)
        got, want = model.state_dict(), ref.state_dict()
        assert got.keys() == want.keys()
        for name in want:
            torch.testing.assert_close(got[name], want[name], atol=atol, rtol=0, msg=name)
        assert not model.training


# --------------------------------------------------------------------------------------------
# Members equal their alone-trained twins


@pytest.mark.parametrize(
    "recipe",
    [
        TrainRecipe(epochs=3, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4),
        TrainRecipe(
            epochs=3,
            batch_size=20,
            lr=0.05,
            nesterov=True,
            schedule="multistep",
            milestones=(1, 2),
            warmup_epochs=1,
        ),
        TrainRecipe(epochs=3, batch_size=16, optimizer="adam", lr=1e-2, weight_decay=1e-4),
        TrainRecipe(epochs=3, batch_size=16, optimizer="adamw", lr=1e-2, schedule="cosine"),
    ],
    ids=["sgd-momentum-wd", "nesterov-multistep-short-batch", "adam", "adamw-cosine"],
)
@pytest.mark.parametrize("backend", ["bmm", "vmap"])
def test_members_equal_alone_trained_on_tiny(tiny, recipe, backend):
    factory, seeds = _mlp(tiny), [3, 0, 11, 7]
    models = train_ensemble(factory, [tiny.train] * 4, recipe, seeds, backend=backend)
    _assert_members_match(models, factory, [tiny.train] * 4, recipe, seeds)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adam", 1e-3)])
def test_members_equal_alone_trained_on_digits(digits, optimizer, lr):
    # The digits benchmark model; 1078 samples = 16 full batches and a short one of 54.
    factory = ModelFactory("mlp", (1, 8, 8), 10, (1, 8, 8), {})
    recipe = TrainRecipe(epochs=3, optimizer=optimizer, lr=lr, schedule="cosine")
    seeds = [0, 1, 2, 3]
    models = train_ensemble(factory, [digits.train] * 4, recipe, seeds)
    _assert_members_match(models, factory, [digits.train] * 4, recipe, seeds)


def test_cnn_members_match_through_vmap(tiny):
    factory = ModelFactory.for_bundle("cnn_small", tiny, width=4)
    recipe = TrainRecipe(epochs=2, batch_size=16, lr=0.05)
    models = train_ensemble(factory, [tiny.train] * 3, recipe, [0, 1, 2])  # auto -> vmap
    _assert_members_match(models, factory, [tiny.train] * 3, recipe, [0, 1, 2])


def test_different_data_per_member_complementary_halves(tiny):
    g = torch.Generator().manual_seed(5)
    perm = torch.randperm(len(tiny.train.x), generator=g)
    half_a, half_b = perm[:48], perm[48:]
    datasets = [
        (tiny.train.x[half_a], tiny.train.y[half_a]),
        (tiny.train.x[half_b], tiny.train.y[half_b]),
        (tiny.train.x[half_b], tiny.train.y[half_b]),
        (tiny.train.x[half_a], tiny.train.y[half_a]),
    ]
    factory, seeds = _mlp(tiny), [0, 1, 2, 3]
    recipe = TrainRecipe(epochs=3, batch_size=16)
    models = train_ensemble(factory, datasets, recipe, seeds)
    _assert_members_match(models, factory, datasets, recipe, seeds)
    # Same seed, different data: different models (the data really are per member).
    assert not torch.equal(models[0].head.weight, models[1].head.weight)


def test_members_with_different_sizes_are_grouped(tiny):
    x, y = tiny.train.x, tiny.train.y
    datasets = [(x[:40], y[:40]), (x[:56], y[:56]), (x[40:80], y[40:80]), (x, y)]
    factory, seeds = _mlp(tiny), [4, 5, 6, 7]
    recipe = TrainRecipe(epochs=2, batch_size=16)
    models = train_ensemble(factory, datasets, recipe, seeds, chunk_size=3)
    _assert_members_match(models, factory, datasets, recipe, seeds)


def test_chunking_and_order_do_not_change_members(tiny):
    factory, seeds = _mlp(tiny), [9, 2, 5, 1, 0]
    recipe = TrainRecipe(epochs=2, batch_size=16)
    whole = train_ensemble(factory, tiny.train, recipe, seeds)  # one dataset shared by all
    for size in (1, 2):
        parts = train_ensemble(factory, [tiny.train] * 5, recipe, seeds, chunk_size=size)
        for a, b in zip(whole, parts):
            for p, q in zip(a.parameters(), b.parameters()):
                torch.testing.assert_close(p, q, atol=ATOL, rtol=0)
    assert len({id(m) for m in whole}) == 5


def test_members_are_cut_into_one_chunk_per_worker_within_the_memory_bound(tiny):
    """Each same-size group gives every worker a chunk; ``chunk_size`` still caps a chunk."""
    from unlearnkit.audit.ensemble import _chunks, _Member

    x, y = tiny.train.x, tiny.train.y
    members = [_Member(i, i, x, y, None) for i in range(10)]
    members += [_Member(10 + i, i, x[:50], y[:50], None) for i in range(3)]
    sizes = lambda chunks: [[m.index for m in c] for c in chunks]  # noqa: E731
    assert sizes(_chunks(members, None, 1)) == [list(range(10)), [10, 11, 12]]
    assert sizes(_chunks(members, None, 2)) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11], [12]]
    assert sizes(_chunks(members, 3, 2)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9], [10, 11], [12]]
    assert sizes(_chunks(members, 8, 1)) == [list(range(8)), [8, 9], [10, 11, 12]]


def test_workers_train_chunks_in_threads_and_restore_the_thread_count(tiny):
    factory, seeds = _mlp(tiny), [0, 1, 2, 3, 4]
    recipe = TrainRecipe(epochs=2, batch_size=16, optimizer="adam", lr=1e-2)
    before = torch.get_num_threads()
    models = train_ensemble(factory, [tiny.train] * 5, recipe, seeds, workers=2)
    assert torch.get_num_threads() == before
    # One intra-op thread per worker: equal to train() on one thread (the test default).
    _assert_members_match(models, factory, [tiny.train] * 5, recipe, seeds)


def test_batch_larger_than_the_data(tiny):
    factory, recipe = _mlp(tiny), TrainRecipe(epochs=2, batch_size=500)
    models = train_ensemble(factory, [tiny.train] * 2, recipe, [0, 1])
    _assert_members_match(models, factory, [tiny.train] * 2, recipe, [0, 1])


def test_augmentation_uses_each_members_generator(tiny):
    def jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return x + 0.05 * torch.randn(x.shape, generator=gen)

    view = DataView("train", tiny.train.x, tiny.train.y, augment=jitter)
    factory, seeds = _mlp(tiny), [0, 1, 2]
    recipe = TrainRecipe(epochs=2, batch_size=16, augment=True)
    models = train_ensemble(factory, [view] * 3, recipe, seeds)
    _assert_members_match(models, factory, [view] * 3, recipe, seeds)
    plain = train_ensemble(
        factory, [view] * 3, TrainRecipe(epochs=2, batch_size=16, augment=False), seeds
    )
    assert not torch.equal(models[0].head.weight, plain[0].head.weight)


def test_zero_epochs_returns_the_initial_models(tiny):
    factory = _mlp(tiny)
    models = train_ensemble(factory, [tiny.train] * 2, TrainRecipe(epochs=0), [4, 5])
    for model, seed in zip(models, [4, 5]):
        for p, q in zip(model.parameters(), factory(seed).parameters()):
            assert torch.equal(p, q)


def test_caller_rng_state_is_untouched(tiny):
    state = torch.get_rng_state()
    train_ensemble(_mlp(tiny), [tiny.train] * 2, TrainRecipe(epochs=1, batch_size=16), [0, 1])
    assert torch.equal(state, torch.get_rng_state())


def test_divergence_is_reported(tiny):
    recipe = TrainRecipe(epochs=2, batch_size=16, lr=1e6)
    with pytest.raises(TrainingDiverged, match="member"):
        train_ensemble(_mlp(tiny), [tiny.train] * 2, recipe, [0, 1])


# --------------------------------------------------------------------------------------------
# The reasoning behind the equality, checked piece by piece


@pytest.mark.parametrize(
    "recipe",
    [
        TrainRecipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4),
        TrainRecipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
        TrainRecipe(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0),
        TrainRecipe(optimizer="adam", lr=1e-2, weight_decay=1e-3),
        TrainRecipe(optimizer="adamw", lr=1e-2, weight_decay=1e-2),
    ],
    ids=["sgd", "nesterov", "plain-sgd", "adam", "adamw"],
)
@pytest.mark.parametrize("shape", [(5, 7), (32, 36), (4,)])
def test_one_optimizer_over_stacked_tensors_equals_independent_ones(recipe, shape):
    """The optimizers are elementwise with a shared step count: stacking changes nothing."""
    k, steps = 3, 6
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(k, *shape, generator=gen)
    grads = torch.randn(steps, k, *shape, generator=gen)

    stacked = init.clone().requires_grad_()
    opt = _stacked_optimizer([stacked], recipe)  # what the ensemble uses
    singles = [init[i].clone().requires_grad_() for i in range(k)]
    opts = [build_optimizer([p], recipe.optimizer_spec()) for p in singles]  # the engine's
    for t in range(steps):
        stacked.grad = grads[t].clone()
        opt.step()
        for i in range(k):
            singles[i].grad = grads[t, i].clone()
            opts[i].step()
    for i in range(k):
        assert torch.equal(stacked[i], singles[i])


def _chain_grads(models, x, y, idx):
    """Stack ``models`` into a _StackedChain, run one step's gradients on the batches ``idx``."""
    leaves = {
        n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
        for n, _ in models[0].named_parameters()
    }
    chain = _StackedChain(
        _linear_chain(models[0]), leaves, {idx.shape[1]}, len(models), torch.device("cpu")
    )
    losses = chain.grads(x[idx], y[idx])
    return leaves, losses


def _own_grads(models, x, y, idx):
    own, losses = [], []
    for m, rows in zip(models, idx):
        m.zero_grad()
        loss = F.cross_entropy(m(x[rows]), y[rows])
        loss.backward()
        own.append({n: p.grad.clone() for n, p in m.named_parameters()})
        losses.append(loss.detach())
    return own, torch.stack(losses)


def test_written_out_backward_gives_each_member_its_own_gradient(tiny):
    """The hand-written backward (log-softmax, NLL, ReLU and linear gradients) is autograd's
    for each member alone, bit for bit, and the returned losses are the members' own."""
    factory = _mlp(tiny, hidden=(8,))
    models = [factory(s) for s in range(3)]
    idx = torch.stack(
        [torch.randperm(96, generator=torch.Generator().manual_seed(s))[:16] for s in range(3)]
    )
    x, y = tiny.train.x, tiny.train.y
    leaves, losses = _chain_grads(models, x, y, idx)
    own, own_losses = _own_grads(models, x, y, idx)
    torch.testing.assert_close(losses, own_losses, rtol=1e-6, atol=0)
    for name, leaf in leaves.items():
        for k in range(3):
            assert torch.equal(leaf.grad[k], own[k][name]), name


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("batch", [64, 54])
def test_written_out_backward_is_bitwise_on_the_digits_mlp_shapes(digits, batch, threads):
    """Every layer shape of the digits MLP, a full and the short last batch, one and two
    threads: where a batched kernel rounds differently (with MKL on two threads, the 10-row
    weight gradient of the head), the plan falls back to a loop over members."""
    factory = ModelFactory("mlp", (1, 8, 8), 10, (1, 8, 8), {})
    models = [factory(s) for s in range(4)]
    n = len(digits.train.y)
    idx = torch.stack(
        [torch.randperm(n, generator=torch.Generator().manual_seed(s))[:batch] for s in range(4)]
    )
    leaves, _ = _chain_grads(models, digits.train.x, digits.train.y, idx)
    own, _ = _own_grads(models, digits.train.x, digits.train.y, idx)
    for name, leaf in leaves.items():
        for k in range(4):
            assert torch.equal(leaf.grad[k], own[k][name]), (name, k)


def test_bmm_backend_is_bitwise_on_digits_with_adam(digits):
    """Adam turns a rounding difference at a ReLU kink into an lr-sized step; the bmm backend
    reproduces the engine exactly, so even long Adam runs stay equal."""
    factory = ModelFactory("mlp", (1, 8, 8), 10, (1, 8, 8), {})
    recipe = TrainRecipe(epochs=4, optimizer="adamw", lr=1e-3, schedule="cosine")
    models = train_ensemble(factory, [digits.train] * 2, recipe, [0, 1], backend="bmm")
    for model, seed in zip(models, [0, 1]):
        ref = _alone(factory, digits.train, recipe, seed)
        for p, q in zip(model.parameters(), ref.parameters()):
            assert torch.equal(p, q)


# --------------------------------------------------------------------------------------------
# What is refused


class _CountingNet(nn.Module):
    """Changes a buffer in training mode, as BatchNorm's running statistics do."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(36, 4)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        if self.training:
            self.calls += 1
        return self.lin(x.flatten(1))


class _NoisyNet(nn.Module):
    """Draws from the global RNG in training mode, as dropout does."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(36, 4)

    def forward(self, x):
        x = x.flatten(1)
        if self.training:
            x = x + 0.1 * torch.randn_like(x)
        return self.lin(x)


class _ConstantBufferNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(36, 4)
        self.register_buffer("scale", torch.full((36,), 0.5))

    def forward(self, x):
        return self.lin(x.flatten(1) * self.scale)


def _seeded(cls):
    def factory(seed):
        torch.manual_seed(seed)
        return cls()

    return factory


@pytest.mark.parametrize(
    "factory,match",
    [
        (lambda s: TinyBNNet(), "BatchNorm"),
        (
            lambda s: nn.Sequential(
                nn.Flatten(), nn.Linear(36, 8), nn.Dropout(0.2), nn.Linear(8, 4)
            ),
            "dropout",
        ),
        (
            lambda s: nn.Sequential(
                nn.Flatten(),
                nn.Unflatten(1, (1, 36)),
                nn.InstanceNorm1d(1, track_running_stats=True),
                nn.Flatten(),
                nn.Linear(36, 4),
            ),
            "InstanceNorm",
        ),
        (lambda s: _CountingNet(), "buffers change"),
        (lambda s: _NoisyNet(), "random numbers"),
    ],
    ids=["batchnorm", "dropout", "instancenorm", "changing-buffer", "global-rng"],
)
def test_refuses_models_it_cannot_reproduce(tiny, factory, match):
    with pytest.raises(ConfigError, match=match):
        train_ensemble(factory, [tiny.train] * 2, TrainRecipe(epochs=1), [0, 1])


def test_the_probe_leaves_the_model_untouched(tiny):
    model = _CountingNet()
    state = torch.get_rng_state()
    with pytest.raises(ConfigError):
        check_ensemble_compatible([model], tiny.train.x[:2])
    assert float(model.calls) == 0
    assert torch.equal(state, torch.get_rng_state())


def test_constant_buffers_and_inactive_dropout_are_fine(tiny):
    recipe = TrainRecipe(epochs=2, batch_size=16)
    factory = _seeded(_ConstantBufferNet)
    models = train_ensemble(factory, [tiny.train] * 2, recipe, [0, 1])
    _assert_members_match(models, factory, [tiny.train] * 2, recipe, [0, 1])

    def no_dropout(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.Dropout(0.0), nn.Linear(8, 4))

    models = train_ensemble(no_dropout, [tiny.train] * 2, recipe, [0, 1])
    _assert_members_match(models, no_dropout, [tiny.train] * 2, recipe, [0, 1])


def test_refuses_mismatched_architectures(tiny):
    def factory(seed):
        return ModelFactory.for_bundle("mlp", tiny, hidden=(8 + seed,))(seed)

    with pytest.raises(ConfigError, match="one architecture"):
        train_ensemble(factory, [tiny.train] * 2, TrainRecipe(epochs=1), [0, 1])


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"seeds": [0, 1, 2]}, ConfigError, "one seed per dataset"),
        ({"chunk_size": 0}, ConfigError, "chunk_size"),
        ({"backend": "cuda-magic"}, ConfigError, "backend"),
        ({"workers": 0}, ConfigError, "workers"),
    ],
)
def test_bad_arguments(tiny, kwargs, error, match):
    args = {"seeds": [0, 1], **kwargs}
    with pytest.raises(error, match=match):
        train_ensemble(_mlp(tiny), [tiny.train] * 2, TrainRecipe(epochs=1), **args)


def test_no_members_gives_no_models(tiny):
    assert train_ensemble(_mlp(tiny), [], TrainRecipe(epochs=1), []) == []


def test_bmm_backend_refuses_other_models(tiny):
    factory = ModelFactory.for_bundle("cnn_small", tiny, width=4)
    with pytest.raises(ConfigError, match="backend='vmap'"):
        train_ensemble(factory, [tiny.train] * 2, TrainRecipe(epochs=1), [0, 1], backend="bmm")


def test_bad_data(tiny):
    with pytest.raises(DataError, match="differ in length"):
        train_ensemble(_mlp(tiny), [(tiny.train.x, tiny.train.y[:5])], TrainRecipe(), [0])
    with pytest.raises(DataError, match="labels"):
        train_ensemble(_mlp(tiny), [DataView("t", tiny.train.x, None)], TrainRecipe(), [0])
    with pytest.raises(ConfigError, match="seeds="):
        train_ensemble(_mlp(tiny), tiny.train, TrainRecipe())


@pytest.mark.parametrize("frozen", [("features.1.",), ("features.1.", "head.bias"), ("head.",)])
def test_frozen_layers_stay_frozen_and_the_rest_matches_alone_training(tiny, frozen):
    """Parameters with ``requires_grad=False`` get no gradient and no update (the backward
    stops where no earlier layer trains), the others match ``train()`` bit for bit."""
    base = _mlp(tiny, hidden=(16, 8))

    def factory(seed):
        model = base(seed)
        for name, p in model.named_parameters():
            if name.startswith(frozen):
                p.requires_grad_(False)
        return model

    recipe = TrainRecipe(epochs=3, batch_size=16)
    models = train_ensemble(factory, tiny.train, recipe, [0, 1, 2], backend="bmm")
    for seed, model in enumerate(models):
        ref = _alone(factory, tiny.train, recipe, seed)
        init = dict(factory(seed).named_parameters())
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            assert torch.equal(p, q), name
            if name.startswith(frozen):
                assert torch.equal(p, init[name]), name

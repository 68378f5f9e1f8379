from __future__ import annotations

import pytest
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.errors import ConfigError
from unlearnkit.models import reinit_
from unlearnkit.testing import tiny_bundle, tiny_model


def test_training_is_deterministic_and_leaves_global_rng_alone() -> None:
    b = tiny_bundle()
    recipe = uk.TrainRecipe(epochs=3, batch_size=16)
    state = torch.random.get_rng_state()
    m1 = uk.train(tiny_model(b), b.train, recipe, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())
    m2 = uk.train(tiny_model(b), b.train, recipe, seed=5)
    m3 = uk.train(tiny_model(b), b.train, recipe, seed=6)
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(v1, v2), k
    assert any(
        not torch.equal(a, c) for a, c in zip(m1.state_dict().values(), m3.state_dict().values())
    )
    assert not m1.training


def test_the_net_learns_digits() -> None:
    b = uk.datasets.load("digits")
    m = uk.train(uk.models.build("mlp", b), b.train, uk.TrainRecipe(epochs=15), seed=0)
    with torch.no_grad():
        acc = (m(b.test.x).argmax(1) == b.test.y).float().mean().item()
    assert acc > 0.9


def test_cosine_schedule_and_adam_run() -> None:
    b = tiny_bundle()
    recipe = uk.TrainRecipe(optimizer="adamw", lr=1e-2, schedule="cosine", epochs=2, batch_size=32)
    uk.train(tiny_model(b), b.train, recipe, seed=0)


def test_recipe_validation_and_hash() -> None:
    with pytest.raises(ConfigError):
        uk.TrainRecipe(optimizer="lbfgs")
    with pytest.raises(ConfigError):
        uk.TrainRecipe(batch_size=0)
    assert uk.TrainRecipe(seed=1).hash == uk.TrainRecipe(seed=2).hash
    assert uk.TrainRecipe(lr=0.1).hash != uk.TrainRecipe(lr=0.2).hash


class _Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stage = nn.Sequential(
            nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), nn.Linear(4, 2)
        )


def test_reinit_resets_every_depth_and_refuses_bare_parameters() -> None:
    m = _Nested()
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(7.0)
        m.stage[0][1].running_mean.fill_(3.0)
    reinit_(m, seed=0)
    assert all(not torch.all(p == 7.0) for p in m.parameters())
    assert torch.all(m.stage[0][1].running_mean == 0)
    m.token = nn.Parameter(torch.zeros(3))
    with pytest.raises(ConfigError, match="token"):
        reinit_(m, seed=0)


def test_model_factory_builds_fresh_models_per_seed() -> None:
    b = uk.datasets.load("digits")
    f = uk.models.ModelFactory.for_bundle("cnn_small", b)
    a, a2, c = f(0), f(0), f(1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), a2.parameters()))
    assert any(not torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))
    assert a(b.test.x[:3]).shape == (3, 10)
    with pytest.raises(ConfigError, match="unknown model"):
        uk.models.build("resnet9000", b)

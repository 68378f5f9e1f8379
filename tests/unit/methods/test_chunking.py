"""Gradient work in chunks: the same results as all at once, and chunk sizes that fit memory."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.api import run_unlearning
from unlearnkit.bench.identity import digest
from unlearnkit.methods import get_method
from unlearnkit.methods._loop import GRAD_CHUNK_MB, grad_chunk_size
from unlearnkit.methods.fisher import auto_chunk_size, fisher_diagonal
from unlearnkit.methods.influence import (
    InfluenceConfig,
    _per_sample_gradients,
    influence_chunk_size,
)
from unlearnkit.methods.salun import saliency_mask
from unlearnkit.methods.ssd import compute_importances
from unlearnkit.testing import TINY_RECIPE, tiny_bundle, tiny_task, trained_tiny_model

RESNET18_PARAMS = 11_173_962  # uk.models.build("resnet18", input_shape=(3, 32, 32), ...)


@pytest.fixture(scope="module")
def task():
    return tiny_task(tiny_bundle())


@pytest.fixture(scope="module")
def model(task):
    return trained_tiny_model(task.bundle, bn=True)  # BatchNorm: eval-mode statistics


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-7) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=atol, msg=k)


def test_grad_chunk_size_fits_the_budget() -> None:
    budget = GRAD_CHUNK_MB * 2**20
    for params, per in ((1, 1), (85_002, 1), (85_002, 10), (RESNET18_PARAMS, 2), (10**9, 1)):
        chunk = grad_chunk_size(params, per)
        assert chunk >= 1
        assert chunk == 1 or chunk * per * params * 4 <= budget
        assert (chunk + 1) * per * params * 4 > budget  # the largest chunk that fits
    assert grad_chunk_size(RESNET18_PARAMS, 2) == 3  # three samples' 45 MB gradients, twice
    assert grad_chunk_size(100, 1, budget_mb=1) == 2**20 // 400


def test_influence_chunks_default_to_batch_size_for_small_models() -> None:
    cfg = InfluenceConfig()
    assert influence_chunk_size(cfg, 85_002) == cfg.batch_size  # digits MLP: as before
    assert influence_chunk_size(cfg, RESNET18_PARAMS) == 3  # not 256 x 45 MB
    assert influence_chunk_size(cfg.replace(chunk_size=7), RESNET18_PARAMS) == 7
    assert auto_chunk_size(RESNET18_PARAMS, 10) == 1  # Fisher: K gradients per sample


def test_influence_per_sample_gradients_do_not_depend_on_the_chunk(model, task) -> None:
    blocks = {
        c: torch.cat(list(_per_sample_gradients(model, task.retain, 21, c, torch.device("cpu"))))
        for c in (1, 4, 21)
    }
    assert blocks[1].shape == (21, sum(p.numel() for p in model.parameters()))
    torch.testing.assert_close(blocks[4], blocks[21], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(blocks[1], blocks[21], rtol=1e-5, atol=1e-7)


def test_influence_run_with_small_chunks_matches_the_default(model, task) -> None:
    runs = [
        run_unlearning(model, task, "influence", {"n_samples": 30, **extra}, seed=0).model
        for extra in ({}, {"chunk_size": 1}, {"chunk_size": 7})
    ]
    for other in runs[1:]:
        _close(runs[0].state_dict(), other.state_dict())


def test_fisher_diagonal_does_not_depend_on_the_chunk(model, task) -> None:
    x = task.retain.x[:19]
    whole = fisher_diagonal(model, x, chunk_size=19)
    _close(whole, fisher_diagonal(model, x, chunk_size=1))
    _close(whole, fisher_diagonal(model, x, chunk_size=5))
    _close(whole, fisher_diagonal(model, x))  # automatic


def test_saliency_mask_chunks_give_the_same_mask(model, task) -> None:
    forget = task.forget
    whole = saliency_mask(model, forget, 0.3, batch_size=8)
    for chunk in (1, 3, 8):
        parts = saliency_mask(model, forget, 0.3, batch_size=8, chunk_size=chunk)
        assert all(torch.equal(whole[k], parts[k]) for k in whole), chunk


@pytest.mark.parametrize("label_free", [False, True])
def test_importances_chunks_match_whole_batches(model, task, label_free) -> None:
    view = task.train_full
    order = torch.randperm(len(view), generator=torch.Generator().manual_seed(0))
    kw = {"label_free": label_free, "order": order}
    whole = compute_importances(model, view, 16, **kw)
    for chunk in (1, 5, 16):
        _close(whole, compute_importances(model, view, 16, chunk_size=chunk, **kw))


def test_chunk_fields_are_recorded_only_when_set() -> None:
    """The new fields keep the identity of configs written before they existed."""
    for method, key in (
        ("influence", "chunk_size"),
        ("salun", "mask_chunk_size"),
        ("ssd", "importance_chunk_size"),
        ("lfssd", "importance_chunk_size"),
    ):
        spec = get_method(method)
        default = spec.make_config({})
        assert key not in default.to_dict(), method
        changed = spec.make_config({key: 4})
        assert changed.to_dict()[key] == 4
        assert type(changed).from_dict(changed.to_dict()) == changed
        assert digest(changed.to_dict()) != digest(default.to_dict())


def test_bad_chunk_sizes_are_config_errors() -> None:
    from unlearnkit.errors import ConfigError

    for method, key in (
        ("influence", "chunk_size"),
        ("salun", "mask_chunk_size"),
        ("ssd", "importance_chunk_size"),
    ):
        with pytest.raises(ConfigError, match=key):
            get_method(method).make_config({key: 0})


def test_chunked_ssd_and_salun_runs_match_unchunked(task) -> None:
    m = trained_tiny_model(task.bundle)
    kw = {"seed": 0, "recipe": TINY_RECIPE}
    for method, extra in (("ssd", {"importance_chunk_size": 3}), ("salun", {"mask_chunk_size": 2})):
        a = run_unlearning(m, task, method, {}, **kw).model
        b = run_unlearning(m, task, method, extra, **kw).model
        _close(a.state_dict(), b.state_dict(), atol=1e-6)  # weights of order 0.1

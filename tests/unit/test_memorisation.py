"""Memorisation scores and hard forget sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit import memorisation
from unlearnkit.audit import ensemble
from unlearnkit.bench import scenarios
from unlearnkit.bench.scenarios import hardness_scores, scenario_task
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.bench.tune import validation_task
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.memorisation import half_splits, memorisation_from, memorisation_scores

from .._image_folders import count_reads, in_memory, make_folder


def test_half_splits_are_complementary_pairs():
    member = half_splits(11, 6, seed=0)
    assert member.shape == (6, 11)
    for j in range(3):
        assert member[2 * j].sum() == 5 and np.array_equal(member[2 * j + 1], ~member[2 * j])
    assert (member.sum(0) == 3).all()  # every sample in exactly half of the models
    assert not np.array_equal(member[0], member[2])  # pairs differ
    assert np.array_equal(member, half_splits(11, 6, seed=0))
    with pytest.raises(ConfigError, match="even number"):
        half_splits(11, 3, seed=0)


def test_the_estimator_on_a_hand_example():
    member = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0]], dtype=bool)
    correct = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=bool)
    # sample 0: in {0, 2} both right, out {1, 3}: 1 of 2 -> 1 - 0.5
    # sample 1: in {0, 3}: 2/2, out {1, 2}: 1/2 -> 0.5; sample 2: in {1, 2}: 1/2, out: 2/2
    np.testing.assert_allclose(memorisation_from(correct, member), [0.5, 0.5, -0.5])
    with pytest.raises(DataError, match="one model with it and one without"):
        memorisation_from(correct[:2], np.ones((2, 3), dtype=bool))


def _noisy_bundle():
    """Two overlapping 32-dimensional clusters (each point distinctive); samples 0..5 carry the
    other cluster's label."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 2
    x = torch.randn(120, 32, generator=g) + (y.float() * 2 - 1).unsqueeze(1) * 0.8
    y_train = y.clone()
    y_train[:6] = 1 - y_train[:6]
    return uk.datasets.from_arrays(x.numpy(), y_train.numpy(), x[:40].numpy(), y[:40].numpy())


def test_mislabelled_samples_are_the_memorised_ones():
    """A flipped label is only fitted when the sample is trained on: memorisation ~ 1 for the
    six flipped samples, ~ 0 for the clean ones, and the hard forget set finds them."""
    bundle = _noisy_bundle()
    factory = uk.models.ModelFactory.for_bundle("mlp", bundle, hidden=(128,))
    recipe = uk.TrainRecipe(epochs=150, batch_size=16, lr=0.1)
    scores = memorisation_scores(bundle, factory, recipe, models=8, workers=1)
    assert scores[:6].mean() > 0.6 and np.abs(scores[6:]).mean() < 0.1
    task = uk.forget_task(bundle, "random", count=6, hardness=scores)
    assert task.forget_idx.tolist() == [0, 1, 2, 3, 4, 5]
    assert task.params["hard"] and task.scenario == "random"


def test_hardness_selection_rules():
    bundle = uk.datasets.load("synthetic", n_train=40, n_val=8, n_test=20, num_classes=2)
    y = bundle.train.y.numpy()
    h = np.zeros(40)
    h[[3, 7, 11]] = [0.9, 0.9, 0.5]
    t = uk.forget_task(bundle, "random", count=2, hardness=h)
    assert t.forget_idx.tolist() == [3, 7]  # highest first, ties by position
    h2 = np.arange(40, dtype=float)
    strat = uk.forget_task(bundle, "random", count=10, hardness=h2, stratified=True)
    for c in (0, 1):  # per class: that class's highest scores, in proportion
        mine = np.flatnonzero(y == c)
        assert set(strat.forget_idx[y[strat.forget_idx] == c]) == set(mine[-5:])
    assert t.id != uk.forget_task(bundle, "random", count=2, seed=0).id
    with pytest.raises(DataError, match="one score per training sample"):
        uk.forget_task(bundle, "random", count=2, hardness=h[:5])
    with pytest.raises(DataError, match="finite"):
        uk.forget_task(bundle, "random", count=2, hardness=np.full(40, np.nan))
    with pytest.raises(DataError, match="applies to scenario 'random'"):
        uk.forget_task(bundle, "class", classes=[0], hardness=h)


SPEC = {
    "dataset": {"name": "synthetic", "n_train": 80, "n_val": 40, "n_test": 40, "num_classes": 2},
    "model": {"arch": "mlp", "hidden": [16]},
    "recipe": {"epochs": 5, "batch_size": 16, "lr": 0.1},
    "scenarios": [
        {"name": "hard", "scenario": "random", "count": 8, "hard": True, "hard_models": 4}
    ],
    "methods": [{"method": "finetune"}],
}


def test_scenario_spec_validates_hard():
    with pytest.raises(ConfigError, match="applies to scenario 'random'"):
        spec_from_dict(
            {
                **SPEC,
                "scenarios": [{"name": "c", "scenario": "class", "classes": [0], "hard": True}],
            }
        )
    with pytest.raises(ConfigError, match="hard_models must be an even number"):
        spec_from_dict(
            {**SPEC, "scenarios": [{"name": "h", "count": 8, "hard": True, "hard_models": 3}]}
        )


def test_scores_are_cached_on_disk_and_a_bad_file_is_recomputed(tmp_path, monkeypatch):
    spec = spec_from_dict(SPEC)
    sc, bundle = spec.scenarios[0], uk.datasets.load("synthetic", **spec.dataset.options)
    monkeypatch.setattr(scenarios, "_SCORES", {})
    first = scenario_task(spec, sc, bundle, cache_dir=tmp_path)
    files = list(tmp_path.glob("memorisation-*.npy"))
    assert len(files) == 1 and first.n_forget == 8 and first.params["hard"]

    def boom(*a, **kw):
        raise AssertionError("recomputed although the scores were stored")

    monkeypatch.setattr(scenarios, "_SCORES", {})
    monkeypatch.setattr(scenarios, "memorisation_scores", boom)
    assert scenario_task(spec, sc, bundle, cache_dir=tmp_path).id == first.id
    files[0].write_bytes(b"not a numpy file")
    monkeypatch.setattr(scenarios, "_SCORES", {})
    with pytest.raises(AssertionError, match="recomputed"):  # the bad file is not trusted
        scenario_task(spec, sc, bundle, cache_dir=tmp_path)


def test_validation_hard_set_is_the_next_most_memorised():
    spec = spec_from_dict(SPEC)
    sc = spec.scenarios[0]
    bundle = uk.datasets.load("synthetic", **spec.dataset.options)
    bench = scenario_task(spec, sc, bundle)
    val = validation_task(spec, sc, bundle=bundle)
    h = hardness_scores(spec, sc, bundle)
    assert not set(val.forget_idx) & set(bench.forget_idx)
    rest = np.setdiff1d(np.arange(len(h)), bench.forget_idx)
    assert min(h[val.forget_idx]) >= np.sort(h[rest])[-8]


def test_scores_of_images_read_from_disk_equal_in_memory_and_decode_each_once(
    tmp_path, monkeypatch
):
    """From disk: the halves stay lists of files, each model trains batch by batch, and the
    scoring pass decodes every training image once for all the models. The scores equal those
    of the same images in memory (trained stacked there; on the tests' one thread the stacked
    mlp trainer equals train() bit for bit, see unlearnkit.audit.ensemble)."""
    root = make_folder(tmp_path / "imgs", n_train=20, n_test=2)
    bundle = uk.datasets.load("image_folder", root=root, val_fraction=0.0, eval_batch_size=8)
    factory = uk.models.ModelFactory.for_bundle("mlp", bundle, hidden=(32,))
    recipe = uk.TrainRecipe(epochs=5, batch_size=8, lr=0.1)
    train_files = {str(root / f) for f in bundle.train.x.files}
    reads = count_reads(monkeypatch)
    seen: dict = {}
    real_correct = memorisation._correct

    def scoring(models, x, y, dev):
        seen.update(training_rows=list(reads.rows), trained=len(models))
        reads.clear()
        out = real_correct(models, x, y, dev)
        seen.update(files=dict(reads.files), rows=list(reads.rows))
        return out

    monkeypatch.setattr(memorisation, "_correct", scoring)
    stacked = []
    real_ensemble = ensemble.train_ensemble

    def spy(factory, datasets, *a, **kw):
        stacked.append(len(datasets))
        return real_ensemble(factory, datasets, *a, **kw)

    monkeypatch.setattr(ensemble, "train_ensemble", spy)
    on_disk = memorisation_scores(bundle, factory, recipe, models=4, workers=1)
    assert not stacked  # from disk: one model at a time
    # training read batches of 8 (and two rows to check the model), never a half (30 rows)
    assert seen["training_rows"] and max(seen["training_rows"]) <= 8
    # one pass: each of the 60 images decoded once for the 4 models, in batches of 8
    assert seen["trained"] == 4
    assert set(seen["files"]) == train_files and set(seen["files"].values()) == {1}
    assert max(seen["rows"]) == 8 and sum(seen["rows"]) == 60

    in_mem = memorisation_scores(in_memory(bundle), factory, recipe, models=4, workers=1)
    assert stacked == [4]  # in memory: the four models stacked
    assert np.array_equal(on_disk, in_mem)
    assert on_disk.shape == (60,) and np.ptp(on_disk) > 0  # not a constant: some memorised

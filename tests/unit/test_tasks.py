from __future__ import annotations

import json

import numpy as np
import pytest

import unlearnkit as uk
from unlearnkit.errors import DataError


@pytest.fixture(scope="module")
def bundle():
    return uk.datasets.load("digits")


def test_random_task_is_seeded_and_partitions_the_training_set(bundle) -> None:
    t1 = uk.forget_task(bundle, "random", fraction=0.1, seed=0)
    t2 = uk.forget_task(bundle, "random", fraction=0.1, seed=0)
    t3 = uk.forget_task(bundle, "random", fraction=0.1, seed=1)
    assert t1.id == t2.id != t3.id
    assert t1.n_forget == round(0.1 * len(bundle.train))
    both = np.concatenate([t1.forget_idx, t1.retain_idx])
    assert sorted(both.tolist()) == list(range(len(bundle.train)))
    assert len(t1.test) == len(bundle.test) and t1.forget_test is None


def test_stratified_random_keeps_the_class_mix(bundle) -> None:
    t = uk.forget_task(bundle, "random", fraction=0.2, stratified=True, seed=0)
    counts = np.bincount(bundle.train.y.numpy()[t.forget_idx], minlength=10)
    assert counts.max() - counts.min() <= 2


def test_class_task_splits_the_test_set(bundle) -> None:
    t = uk.forget_task(bundle, "class", classes=[3])
    assert set(bundle.train.y.numpy()[t.forget_idx]) == {3}
    assert 3 not in set(t.test.y.numpy().tolist())
    assert set(t.forget_test.y.numpy().tolist()) == {3}
    assert len(t.test) + len(t.forget_test) == len(t.test_full)


def test_indices_from_list_and_files(bundle, tmp_path) -> None:
    t = uk.forget_task(bundle, "indices", indices=[5, 1, 9])
    assert t.forget_idx.tolist() == [1, 5, 9]
    (tmp_path / "i.json").write_text(json.dumps([1, 5, 9]))
    (tmp_path / "i.txt").write_text("1, 5\n9\n")
    np.save(tmp_path / "i.npy", np.array([9, 5, 1]))
    for name in ("i.json", "i.txt", "i.npy"):
        assert uk.forget_task(bundle, "indices", indices=tmp_path / name).id == t.id


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scenario": "random", "fraction": 0.0}, r"\(0, 1\)"),
        ({"scenario": "random", "fraction": 1.0}, r"\(0, 1\)"),
        ({"scenario": "random", "count": 0}, "empty"),
        ({"scenario": "random", "count": 100000}, "cannot forget all"),
        ({"scenario": "random"}, "exactly one"),
        ({"scenario": "class", "classes": [10]}, "do not exist"),
        ({"scenario": "class", "classes": list(range(10))}, "every class"),
        ({"scenario": "class"}, "needs classes"),
        ({"scenario": "indices", "indices": []}, "empty"),
        ({"scenario": "indices", "indices": [1, 1]}, "duplicate"),
        ({"scenario": "indices", "indices": [-1]}, "out of range"),
        ({"scenario": "indices", "indices": [10**6]}, "out of range"),
        ({"scenario": "indices", "indices": "/no/such/file.txt"}, "not found"),
        ({"scenario": "weird"}, "unknown scenario"),
    ],
)
def test_bad_tasks_raise_data_errors(bundle, kwargs, match) -> None:
    with pytest.raises(DataError, match=match):
        uk.forget_task(bundle, **kwargs)


def test_whole_training_set_is_refused(bundle) -> None:
    with pytest.raises(DataError, match="cannot forget all"):
        uk.forget_task(bundle, "indices", indices=list(range(len(bundle.train))))


def test_forget_only_task_has_no_retain_data(bundle) -> None:
    t = uk.forget_task(bundle, "random", fraction=0.1).forget_only()
    assert t.retain is None and t.train_full is None and len(t.forget) == t.n_forget


# --------------------------------------------------------------------------------------------
# subclass: one fine class inside a coarse label space


@pytest.fixture(scope="module")
def fine_bundle():
    return uk.datasets.load(
        "synthetic", n_train=120, n_val=30, n_test=60, num_classes=3, fine_per_class=2, seed=4
    )


def test_synthetic_fine_labels_nest_in_the_classes(fine_bundle) -> None:
    for split in (fine_bundle.train, fine_bundle.val, fine_bundle.test):
        assert split.fine is not None
        assert np.array_equal(split.y.numpy(), split.fine.numpy() // 2)
    assert sorted(np.unique(fine_bundle.test.fine.numpy()).tolist()) == list(range(6))
    assert fine_bundle.fine_names == ("0.0", "0.1", "1.0", "1.1", "2.0", "2.1")
    plain = uk.datasets.load("synthetic", n_train=120, n_val=30, n_test=60, num_classes=3)
    assert plain.train.fine is None and plain.fine_names is None


def test_subclass_task_forgets_one_fine_class_and_splits_the_test_set_by_it(fine_bundle) -> None:
    t = uk.forget_task(fine_bundle, "subclass", subclasses=[3])
    fine_tr, fine_te = fine_bundle.train.fine.numpy(), fine_bundle.test.fine.numpy()
    assert np.array_equal(t.forget_idx, np.flatnonzero(fine_tr == 3))
    assert t.forget_subclasses == (3,) and t.forget_classes == ()
    # Labels stay coarse: the forgotten samples keep their super-class 1, which D_r still has.
    assert set(t.forget.y.tolist()) == {1} and (t.retain.y == 1).any()
    assert len(t.forget_test) == int((fine_te == 3).sum()) and set(t.forget_test.y.tolist()) == {1}
    assert len(t.test) == int((fine_te != 3).sum())
    assert len(t.test_full) == len(fine_bundle.test)
    assert t.describe()["forget_subclasses"] == [3]
    assert t.forget_only().forget_subclasses == (3,)
    other = uk.forget_task(fine_bundle, "subclass", subclasses=[2])
    assert t.id != other.id
    assert t.id == uk.forget_task(fine_bundle, "subclass", subclasses=[3]).id


def test_subclass_errors_name_the_problem(fine_bundle, bundle) -> None:
    with pytest.raises(DataError, match=r"needs fine labels.*'digits'"):
        uk.forget_task(bundle, "subclass", subclasses=[1])
    with pytest.raises(DataError, match="subclasses="):
        uk.forget_task(fine_bundle, "subclass")
    with pytest.raises(DataError, match=r"fine class\(es\) \[9\] do not occur"):
        uk.forget_task(fine_bundle, "subclass", subclasses=[9])
    with pytest.raises(DataError, match="that is the 'class' scenario"):
        uk.forget_task(fine_bundle, "subclass", subclasses=[2, 3])


def test_fine_labels_must_match_and_be_everywhere_or_nowhere() -> None:
    import torch

    from unlearnkit.datasets import DatasetBundle, Split

    x, y = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(DataError, match="fine labels must match"):
        Split(x, y, torch.tensor([0, 1]))
    with pytest.raises(DataError, match="every split carries fine labels or none"):
        DatasetBundle("d", Split(x, y, y * 2), Split(x, y), num_classes=2, input_shape=(2,))


def test_fine_labels_enter_the_fingerprint(fine_bundle) -> None:
    import dataclasses

    from unlearnkit.datasets import Split

    def without_fine(s):
        return None if s is None else Split(s.x, s.y)

    plain = dataclasses.replace(
        fine_bundle,
        train=without_fine(fine_bundle.train),
        val=without_fine(fine_bundle.val),
        test=without_fine(fine_bundle.test),
        fine_names=None,
    )
    assert plain.fingerprint != fine_bundle.fingerprint

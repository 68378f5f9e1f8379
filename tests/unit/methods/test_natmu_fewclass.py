"""NatMU on problems with few classes: forgetting a class of a 2- or 3-class problem runs.

Such problems have too few retain images of the partner classes for one unused partner per
hybrid; NatMU then reuses retain images (recorded in ``info``) instead of failing.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_wine

import unlearnkit as uk
from unlearnkit.methods.natmu import plan_partners, rebalance_targets


def sklearn_model_and_task(loader, **task_kwargs):
    x, y = loader(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    cut = int(0.75 * len(y))
    tr, te = perm[:cut], perm[cut:]
    bundle = uk.datasets.from_arrays(x[tr], y[tr], x[te], y[te], name=loader.__name__)
    factory = uk.models.ModelFactory.for_bundle("mlp", bundle)
    model = uk.train(factory(0), bundle.train, uk.TrainRecipe(epochs=5), seed=0)
    return model, uk.forget_task(bundle, **task_kwargs)


@pytest.mark.parametrize(
    ("loader", "forget_class", "n_per_sample"),
    [(load_breast_cancer, 1, 1), (load_wine, 0, 2), (load_wine, 1, 2)],
)
def test_forgetting_a_class_of_a_few_class_problem_runs(
    loader, forget_class: int, n_per_sample: int, capsys, caplog
) -> None:
    model, task = sklearn_model_and_task(loader, scenario="class", classes=[forget_class])
    with caplog.at_level(logging.INFO, logger="unlearnkit"):
        out = uk.run_unlearning(model, task, "natmu", seed=0)
    assert all(torch.isfinite(p).all() for p in out.model.parameters())
    info = out.info
    assert info["n_hybrids_per_sample"] == n_per_sample  # every wrong class, K - 1
    assert info["n_hybrids"] == task.n_forget * n_per_sample
    # The forget class outnumbers a partner class in the retain set: images are reused.
    assert info["partner_reuse"] > 0 and info["pool_refills"] > 0
    # Notices go through logging, nothing is printed.
    assert capsys.readouterr().out == ""
    notices = [r.getMessage() for r in caplog.records if r.name.startswith("unlearnkit")]
    assert any("reuse a retain image" in m for m in notices), notices
    assert any("exceeds the" in m for m in notices), notices


def test_large_random_share_of_a_three_class_problem_runs() -> None:
    # Half of wine's training set: guarded rebalancing finds every class at its cap.
    model, task = sklearn_model_and_task(load_wine, scenario="random", fraction=0.5, seed=0)
    out = uk.run_unlearning(model, task, "natmu", seed=0)
    assert all(torch.isfinite(p).all() for p in out.model.parameters())
    assert out.info["rebalanced"] and out.info["n_hybrids"] == 2 * task.n_forget


def test_guarded_rebalancing_keeps_a_target_no_class_has_room_for() -> None:
    # K = 3, 4 retain images per class (m = 4, cap = 3); 5 samples of class 0 all target 1, 2:
    # class 1 and 2 both overflow and no usable class has room, so the targets stay.
    targets = torch.tensor([[1, 2]] * 5)
    labels = torch.zeros(5, dtype=torch.long)
    out, info = rebalance_targets(
        targets, labels, torch.tensor([4, 4, 4]), generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(out, targets)
    assert info["kept_over_cap"] == 4 and info["reassigned"] == 0


def test_partner_reuse_keeps_labels_and_uses_every_image_before_repeating() -> None:
    # 2 classes: 7 forget samples of class 0 need 7 partners of class 1, which has 3.
    probs = torch.tensor([[0.9, 0.1]]).repeat(7, 1)
    labels = torch.zeros(7, dtype=torch.long)
    retain_labels = torch.tensor([1, 0, 1, 0, 1])
    plan = plan_partners(
        probs,
        labels,
        retain_labels,
        1,
        generator=torch.Generator().manual_seed(0),
        label_rule="topk",
        scenario="class",
        exclude_classes=(0,),
    )
    p = plan.partners.flatten().tolist()
    assert torch.equal(retain_labels[plan.partners], plan.targets)
    assert sorted(p[:3]) == [0, 2, 4] and sorted(p[3:6]) == [0, 2, 4]
    assert plan.info["partner_reuse"] == 4 and plan.info["pool_refills"] == 2

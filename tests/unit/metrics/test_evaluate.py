"""uk.evaluate with the original model: the collateral readout of class-wise scenarios."""

from __future__ import annotations

import pytest

import unlearnkit as uk
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


def test_class_scenarios_report_collateral_accuracy_against_the_original(bundle):
    task = tiny_task(bundle, "class")
    original = trained_tiny_model(bundle)
    same = uk.evaluate(original, task, original=original)
    assert same["collateral_acc_neighbours"] == 0.0
    assert 0.0 <= same["acc_neighbours"] <= 1.0
    retrained = uk.unlearn(original, task, "retrain", recipe=uk.TrainRecipe(epochs=3))
    out = uk.evaluate(retrained, task, reference=retrained, original=original)
    assert out["collateral_acc_neighbours"] == pytest.approx(
        out["acc_neighbours"] - same["acc_neighbours"]
    )
    assert out["ref_collateral_acc_neighbours"] == out["collateral_acc_neighbours"]
    assert "acc_neighbours" not in uk.evaluate(retrained, task)  # needs the original


def test_sample_wise_scenarios_have_no_neighbour_classes(bundle):
    task = tiny_task(bundle)
    original = trained_tiny_model(bundle)
    assert "acc_neighbours" not in uk.evaluate(original, task, original=original)

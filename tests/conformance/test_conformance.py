"""The conformance suite: every registered method obeys the library's method contract."""

from __future__ import annotations

import pytest

import unlearnkit as uk
from unlearnkit.testing import check_method

METHODS = uk.list_methods()


@pytest.mark.parametrize("name", METHODS)
def test_conformance_random(name: str) -> None:
    check_method(name)


@pytest.mark.parametrize("name", METHODS)
def test_conformance_class_scenario_with_batchnorm(name: str) -> None:
    check_method(name, scenario="class", bn=True)


@pytest.mark.parametrize(
    "name", [m for m in METHODS if "subclass" in uk.get_method(m).access.scenarios]
)
def test_conformance_subclass_scenario(name: str) -> None:
    """One fine class inside a super-class (labels stay coarse, the test set splits by fine
    label): every method that declares the scenario obeys the contract there too."""
    check_method(name, scenario="subclass")


def test_registry_refuses_duplicates() -> None:
    spec = uk.get_method("finetune")
    with pytest.raises(ValueError, match="already registered"):
        uk.register_method("ft", config=spec.config_cls, access=spec.access)(spec.fn)


def test_unknown_method_suggests_the_closest_name() -> None:
    with pytest.raises(uk.ConfigError, match="did you mean 'finetune'"):
        uk.get_method("finetun")


def test_aliases_resolve() -> None:
    assert uk.get_method("ga").name == "gradient_ascent"
    assert uk.get_method("ft").name == "finetune"

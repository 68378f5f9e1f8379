"""Config values: NaN and +-inf are errors in every float field, integer fields take integers
only, and the fields where a typo would run for days have an upper bound.

The rules live in one mechanism (``unlearnkit.optim.check_field_values``, run by every config
dataclass and by the config builder), so the tests sweep every field of every registered
method's config, of the optimizer and scheduler specs and of the training recipe.
"""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest
from typer.testing import CliRunner

import unlearnkit as uk
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.errors import ConfigError
from unlearnkit.methods import BaseConfig, get_method, list_methods
from unlearnkit.optim import FIELD_MAX, OptimizerSpec, SchedulerSpec

BAD_FLOATS = [float("nan"), float("inf"), float("-inf"), "nan", "inf"]
INF_ALLOWED = {("ssd", "selection_weighting"), ("lfssd", "selection_weighting")}


def _types(hint) -> set:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return {t for arg in typing.get_args(hint) for t in _types(arg)}
    return {hint}


def _fields(cls: type, kind: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    return [
        prefix + f.name for f in dataclasses.fields(cls) if f.init and kind in _types(hints[f.name])
    ]


def _method_fields(kind: type) -> list[tuple[str, str]]:
    out = []
    for name in list_methods():
        cls = get_method(name).config_cls
        out += [(name, f) for f in _fields(cls, kind)]
        if kind is float and "optimizer" in cls.field_names():
            out += [(name, f) for f in _fields(OptimizerSpec, float, "optimizer.")]
            out += [(name, f) for f in _fields(SchedulerSpec, float, "scheduler.")]
    return out


def test_the_sweep_finds_fields() -> None:
    assert ("finetune", "optimizer.weight_decay") in _method_fields(float)
    assert ("finetune", "epochs") in _method_fields(int)
    assert len(_method_fields(float)) > 3 * len(list_methods())


@pytest.mark.parametrize(("method", "key"), _method_fields(float))
def test_method_float_fields_reject_nan_and_inf(method: str, key: str) -> None:
    spec = get_method(method)
    for bad in BAD_FLOATS:
        if (method, key) in INF_ALLOWED and bad in (float("inf"), "inf"):
            spec.make_config({key: bad})  # inf is this field's documented "select nothing"
            continue
        with pytest.raises(ConfigError, match=rf"{key}\b.*finite"):
            spec.make_config({key: bad})


@pytest.mark.parametrize(("method", "key"), _method_fields(int))
def test_method_integer_fields_reject_fractions_and_bools(method: str, key: str) -> None:
    spec = get_method(method)
    for bad in (1.5, True, float("nan")):
        with pytest.raises(ConfigError, match=rf"{key}\b.*integer"):
            spec.make_config({key: bad})


def test_shortcut_names_the_nested_field() -> None:
    with pytest.raises(ConfigError, match=r"^finetune\.optimizer\.weight_decay must be a finite"):
        get_method("finetune").make_config({"weight_decay": "nan"})


def test_tuple_elements_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"optimizer\.betas"):
        get_method("finetune").make_config({"optimizer.betas": [0.9, float("nan")]})
    with pytest.raises(ConfigError, match=r"scheduler\.milestones.*integer"):
        get_method("finetune").make_config({"scheduler.milestones": [1.5]})


def test_ssd_keeps_inf_but_not_nan_or_minus_inf() -> None:
    ssd = get_method("ssd")
    assert ssd.make_config({"selection_weighting": "inf"}).selection_weighting == float("inf")
    for bad in ("nan", "-inf"):
        with pytest.raises(ConfigError, match="selection_weighting"):
            ssd.make_config({"selection_weighting": bad})


# -- direct construction (no builder) ------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "key", "prefix"),
    [(BaseConfig, f, "") for f in _fields(BaseConfig, float) + _fields(BaseConfig, int)]
    + [(OptimizerSpec, f, "optimizer.") for f in _fields(OptimizerSpec, float)]
    + [(SchedulerSpec, f, "scheduler.") for f in _fields(SchedulerSpec, float)]
    + [(SchedulerSpec, f, "scheduler.") for f in _fields(SchedulerSpec, int)]
    + [(uk.TrainRecipe, f, "recipe.") for f in _fields(uk.TrainRecipe, float)]
    + [(uk.TrainRecipe, f, "recipe.") for f in _fields(uk.TrainRecipe, int)],
)
def test_direct_construction_is_checked_too(cls: type, key: str, prefix: str) -> None:
    is_int = int in _types(typing.get_type_hints(cls)[key])
    for bad in (1.5, True) if is_int else (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ConfigError, match=rf"^{prefix}{key}\b"):
            cls(**{key: bad})


@pytest.mark.parametrize("key", _fields(uk.TrainRecipe, float) + _fields(uk.TrainRecipe, int))
def test_benchmark_spec_recipe_values_are_checked(key: str) -> None:
    is_int = int in _types(typing.get_type_hints(uk.TrainRecipe)[key])
    with pytest.raises(ConfigError, match=rf"^recipe\.{key}\b"):
        spec_from_dict({"recipe": {key: 1.5 if is_int else "nan"}})


# -- upper bounds ----------------------------------------------------------------------------


def _bounded() -> list[tuple[str, str, int]]:
    out = []
    for name in list_methods():
        cls = get_method(name).config_cls
        for f in cls.field_names():
            for klass in cls.__mro__:
                bound = FIELD_MAX.get(f"{klass.__name__}.{f}")
                if bound is not None:
                    break
            else:
                bound = FIELD_MAX.get(f)
            if bound is not None:
                out.append((name, f, bound))
    return out


def test_the_bounds_cover_the_long_running_fields() -> None:
    keys = {(m, f) for m, f, _ in _bounded()}
    assert {("finetune", "epochs"), ("finetune", "max_steps"), ("scrub", "msteps")} <= keys
    assert ("jit", "n_samples") in keys and ("influence", "n_samples") not in keys


@pytest.mark.parametrize(("method", "key", "bound"), _bounded())
def test_method_bounds_name_the_field_and_the_bound(method: str, key: str, bound: int) -> None:
    spec = get_method(method)
    with pytest.raises(ConfigError, match=rf"^{method}\.{key} must be <= {bound}, got {bound + 1}"):
        spec.make_config({key: bound + 1})
    try:
        spec.make_config({key: bound})
    except ConfigError as exc:  # another rule may object to the value, never the bound
        assert "<=" not in str(exc), exc


def test_typo_epochs_in_the_recipe_and_scenarios() -> None:
    with pytest.raises(ConfigError, match=r"^recipe\.epochs must be <= 10000"):
        spec_from_dict({"recipe": {"epochs": 1_000_000_000}})
    with pytest.raises(ConfigError, match=r"^recipe\.epochs must be <= 10000"):
        uk.TrainRecipe(epochs=1_000_000_000)
    with pytest.raises(ConfigError, match=r"^scenarios\[0\]\.hard_models must be <= 1000"):
        spec_from_dict({"scenarios": [{"name": "h", "hard": True, "hard_models": 100_000}]})


def test_cli_set_nan_is_a_config_error(tmp_path) -> None:
    from unlearnkit.cli import app

    args = ["bench", "--quick", "--methods", "finetune", "--set", "finetune.weight_decay=nan"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "optimizer.weight_decay must be a finite number, got nan" in res.output
    assert not (tmp_path / "out" / "results.db").exists()

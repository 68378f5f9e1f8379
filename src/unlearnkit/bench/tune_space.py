"""What ``unlearnkit tune`` searches: each method's search space and its starting point.

The starting point is the configuration the benchmark runs now (the method's preset plus the
spec's overrides, :func:`current_config`); searched values are laid over it. The space is the
library's digits space (:data:`DIGITS_SEARCH_SPACES`) where it has one, else the method's
registered ``search_space``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ..methods import get_method
from ..methods.base import Dist, choice, int_range, loguniform, uniform
from .spec import BenchSpec, ScenarioSpec

__all__ = [
    "DIGITS_SEARCH_SPACES",
    "conditional_dist",
    "current_config",
    "default_value",
    "resolve_search_space",
    "space_order",
    "space_text",
    "starting_point",
]

#: The library's digits search spaces, keyed by registry name, with config keys.
#: SCRUB's ``msteps`` is ``int(1, epochs)``: the table holds its widest range and the search
#: draws it in ``[1, epochs]`` once ``epochs`` is drawn (:func:`conditional_dist`).
DIGITS_SEARCH_SPACES: dict[str, dict[str, Dist]] = {
    "finetune": {"lr": loguniform(1e-3, 1e-1), "epochs": int_range(1, 30)},
    "gradient_ascent": {"lr": loguniform(1e-5, 5e-2), "epochs": int_range(1, 20)},
    "neggrad_plus": {
        "beta": uniform(0.5, 0.999),
        "lr": loguniform(1e-4, 1e-1),
        "epochs": int_range(1, 20),
    },
    "random_labels": {
        "lr": loguniform(1e-4, 1e-1),
        "epochs": int_range(1, 20),
        "exclude_true_label": choice([False, True]),
    },
    "l1_sparse": {
        "gamma": loguniform(1e-6, 1e-2),
        "lr": loguniform(1e-3, 1e-1),
        "epochs": int_range(1, 30),
    },
    "salun": {
        "threshold": uniform(0.1, 0.9),
        "lr": loguniform(1e-4, 1e-1),
        "epochs": int_range(1, 20),
    },
    "boundary_shrink": {
        "bound": choice([0.05, 0.1, 0.2]),
        "lr": loguniform(1e-5, 1e-1),
        "epochs": int_range(1, 20),
    },
    "boundary_expanding": {"lr": loguniform(1e-5, 1e-1), "epochs": int_range(1, 20)},
    "scrub": {
        "lr": loguniform(1e-4, 5e-2),
        "ce_weight": uniform(0.0, 1.0),
        "kl_weight": uniform(0.0, 1.0),
        "temperature": uniform(1.0, 5.0),
        "msteps": int_range(1, 10),
        "epochs": int_range(2, 10),
    },
    "ssd": {
        "selection_weighting": loguniform(1.0, 100.0),
        "dampening_constant": loguniform(0.05, 5.0),
    },
    "bad_teacher": {
        "lr": loguniform(1e-5, 1e-2),
        "temperature": uniform(0.5, 5.0),
        "epochs": int_range(1, 20),
        "retain_fraction": uniform(0.1, 1.0),
    },
    "fisher": {"alpha": loguniform(1e-9, 1e-4)},
    "influence": {"alpha": loguniform(0.05, 50.0)},
    "ugradsl": {
        "alpha": uniform(-1.5, -0.05),
        "p": uniform(0.2, 0.95),
        "lr": loguniform(1e-4, 5e-2),
        "epochs": int_range(1, 30),
    },
    "ugradsl_plus": {
        "alpha": uniform(-1.5, -0.05),
        "p": uniform(0.3, 0.95),
        "lr": loguniform(1e-3, 1e-1),
        "epochs": int_range(1, 20),
    },
    "natmu": {
        "lr": loguniform(1e-4, 1e-2),
        "weight_decay": uniform(0.0, 1e-3),
        "delta": uniform(-0.15, 0.15),
        "epochs": int_range(2, 15),
    },
    "jit": {
        "sigma": loguniform(0.01, 1.0),
        "lr": loguniform(1e-5, 1e-1),
        "n_samples": choice([10, 25, 50]),
        "mode": choice(["original", "robust"]),
        "epochs": choice([1, 2, 3]),
    },
}
DIGITS_SEARCH_SPACES["scrub_r"] = dict(DIGITS_SEARCH_SPACES["scrub"])
DIGITS_SEARCH_SPACES["lfssd"] = dict(DIGITS_SEARCH_SPACES["ssd"])

#: Dimensions whose range depends on another drawn value:
#: ``key -> (depends_on, make_dist, the range as text)``.
_CONDITIONAL: dict[str, dict[str, tuple[str, Callable[[Any], Dist], str]]] = {
    name: {"msteps": ("epochs", lambda e: int_range(1, int(e)), "int(1, epochs)")}
    for name in ("scrub", "scrub_r")
}


def resolve_search_space(
    method: str, search_space: Mapping[str, Dist] | None = None
) -> tuple[dict[str, Dist], str]:
    """The space a search uses and where it comes from.

    Returns:
        ``(space, source)`` with ``source`` one of ``"given"``, ``"digits search space"``
        (:data:`DIGITS_SEARCH_SPACES`) or ``"registered"`` (the method's ``search_space``).
    """
    mspec = get_method(method)
    if search_space is not None:
        space, source = dict(search_space), "given"
    elif mspec.name in DIGITS_SEARCH_SPACES:
        space, source = dict(DIGITS_SEARCH_SPACES[mspec.name]), "digits search space"
    else:
        space, source = dict(mspec.search_space), "registered"
    for key, dist in space.items():
        if not isinstance(dist, Dist):
            raise ConfigError(
                f"search space of {mspec.name!r}: {key!r} must be a Dist "
                "(loguniform/uniform/int_range/choice from unlearnkit.methods.base)"
            )
    return space, source


def space_order(method: str, space: Mapping[str, Dist]) -> list[str]:
    """The keys in the order they are drawn: sorted, a key whose range depends on another
    (:func:`conditional_dist`) after the others."""
    cond = _CONDITIONAL.get(get_method(method).name, {})
    return sorted(space, key=lambda k: (k in cond and cond[k][0] in space, k))


def conditional_dist(method: str, key: str, drawn: Mapping[str, Any]) -> Dist | None:
    """The range of ``key`` given the values drawn before it (SCRUB's ``msteps`` lies in
    ``[1, epochs]``), or None when ``key`` does not depend on a drawn value."""
    cond = _CONDITIONAL.get(get_method(method).name, {}).get(key)
    if cond is None or cond[0] not in drawn:
        return None
    return cond[1](drawn[cond[0]])


def space_text(method: str, space: Mapping[str, Dist]) -> dict[str, str]:
    """The space as text, ``{"lr": "loguniform(0.001, 0.1)", "msteps": "int(1, epochs)"}``."""
    cond = _CONDITIONAL.get(get_method(method).name, {})
    return {
        k: cond[k][2] if k in cond and cond[k][0] in space else str(v) for k, v in space.items()
    }


def current_config(spec: BenchSpec, sc: ScenarioSpec, method: str) -> tuple[str | None, dict]:
    """The preset and the overrides the benchmark runs for ``method`` in ``sc`` now.

    Config precedence as in :meth:`BenchSpec.method_entries`: preset < the spec's
    ``method_config`` < the scenario's ``method_config`` < a listed entry's own ``config``.
    """
    mspec = get_method(method)
    for e in spec.method_entries(sc):
        if get_method(e.method).name == mspec.name:
            return e.preset, dict(e.config)
    preset = spec.default_preset if spec.default_preset in mspec.presets else None
    extra = {**spec.method_config.get(mspec.name, {}), **sc.method_config.get(mspec.name, {})}
    return preset, extra


def default_value(config: Any, key: str) -> Any:
    """The value of a search-space key in a resolved config (its own field, else its
    optimizer's: ``lr``, ``weight_decay``...); None when neither has it."""
    if hasattr(config, key):
        return getattr(config, key)
    return getattr(getattr(config, "optimizer", None), key, None)


def starting_point(
    spec: BenchSpec, sc: ScenarioSpec, method: str, space: Mapping[str, Dist]
) -> tuple[str | None, dict[str, Any], Any]:
    """``(preset, overrides, resolved config)`` of the configuration the benchmark runs now.

    Raises:
        ConfigError: the method does not support the scenario, or a key of ``space`` is not a
            field of its config.
    """
    mspec = get_method(method)
    if sc.scenario not in mspec.access.scenarios:
        raise ConfigError(
            f"method {mspec.name!r} does not support scenario {sc.name!r} ({sc.scenario}); "
            "leave it out of --methods or --scenarios"
        )
    preset, base = current_config(spec, sc, mspec.name)
    config = mspec.make_config(base, preset=preset, scenario=sc.scenario)
    for key, dist in space.items():  # fail early on a key the config does not have
        try:
            mspec.make_config({**base, key: dist.grid(2)[0]}, preset=preset, scenario=sc.scenario)
        except ConfigError as exc:
            raise ConfigError(f"search space of {mspec.name!r}, key {key!r}: {exc}") from exc
    return preset, base, config

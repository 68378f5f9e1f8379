"""The one small error hierarchy of unlearnkit.

Every error a user can cause derives from :class:`UnlearnKitError`, and its message says what was
wrong and what to do about it. The CLI turns these into one line and exit code 2.
"""

from __future__ import annotations

__all__ = [
    "AccessError",
    "ConfigError",
    "DataError",
    "DegenerateScoresError",
    "UnlearnKitError",
]


class UnlearnKitError(Exception):
    """Base class of every error unlearnkit raises on purpose."""


class ConfigError(UnlearnKitError, ValueError):
    """A configuration value or key is invalid (unknown method, bad hyperparameter...)."""


class DataError(UnlearnKitError, ValueError):
    """Data are unusable: bad indices, empty forget set, missing file, wrong shapes..."""


class AccessError(UnlearnKitError):
    """A method needs data its access level or the task does not provide (e.g. no retain set)."""


class DegenerateScoresError(UnlearnKitError, ValueError):
    """An audit score is undefined for these populations (e.g. both sides constant, equal)."""

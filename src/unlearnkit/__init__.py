"""unlearnkit: machine unlearning for PyTorch classifiers, measured against retraining.

>>> import unlearnkit as uk
>>> bundle = uk.datasets.load("digits")
>>> task = uk.forget_task(bundle, scenario="random", fraction=0.1, seed=0)
>>> model = uk.train(uk.models.build("mlp", bundle), bundle.train, uk.TrainRecipe(epochs=5))
>>> new = uk.unlearn(model, task, method="finetune", seed=0)
"""

from __future__ import annotations

import logging

from . import datasets, memorisation, methods, models
from .api import UnlearnOutcome, run_unlearning, unlearn
from .errors import (
    AccessError,
    ConfigError,
    DataError,
    DegenerateScoresError,
    UnlearnKitError,
)
from .methods import describe_method, get_method, list_methods, register_method
from .tasks import ForgetTask, forget_task
from .training import TrainRecipe, train

__version__ = "0.1.0"

# A library configures no logging of its own: notices go to the "unlearnkit" logger, and the
# application (the CLI, or the user's) decides where they are shown.
logging.getLogger("unlearnkit").addHandler(logging.NullHandler())

__all__ = [
    "AccessError",
    "ConfigError",
    "DataError",
    "DegenerateScoresError",
    "ForgetTask",
    "TrainRecipe",
    "UnlearnKitError",
    "UnlearnOutcome",
    "__version__",
    "datasets",
    "describe_method",
    "evaluate",
    "forget",
    "forget_task",
    "get_method",
    "list_methods",
    "memorisation",
    "methods",
    "models",
    "register_method",
    "run_unlearning",
    "train",
    "unlearn",
]


def __getattr__(name: str):
    # evaluate() pulls in scikit-learn; import it lazily so `import unlearnkit` stays fast.
    if name == "evaluate":
        from .metrics.suite import evaluate

        return evaluate
    if name == "forget":  # Optuna and the data readers load on first use
        from .deletion.request import forget

        return forget
    raise AttributeError(f"module 'unlearnkit' has no attribute {name!r}")

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

# The test models are tiny: one thread is faster than two fighting over a shared CPU.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same global RNG state (tests must not depend on order)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield

"""One thread setting for every maths library of the process.

torch has its own intra-op pool, and NumPy, SciPy and scikit-learn compute through BLAS
(OpenBLAS, MKL...) and OpenMP pools of their own, which ``torch.set_num_threads`` leaves alone:
a run pinned to one torch thread would still spin two or more threads in a scikit-learn attack.
:func:`limit_threads` sets all of them together (the native pools through ``threadpoolctl``)
and restores every one afterwards.

>>> from unlearnkit.threads import limit_threads
>>> with limit_threads(1):
...     ...  # torch, BLAS and OpenMP all on one thread
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .errors import ConfigError

__all__ = ["check_threads", "limit_threads"]


def check_threads(threads: object) -> int | None:
    """Return ``threads`` as an int (``None`` passes through), or raise ConfigError."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)


def _load_native_pools() -> None:
    """Import the libraries whose native pools the limit must reach: threadpoolctl can only
    set the pools of libraries already loaded in the process."""
    import scipy.linalg  # noqa: F401  (SciPy's BLAS; NumPy's is loaded with numpy)
    import sklearn.utils  # noqa: F401  (scikit-learn's OpenMP runtime)


@contextlib.contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` threads in torch's intra-op pool and in every BLAS and
    OpenMP pool of the process; each one's previous setting is restored on exit, also after an
    error.

    Args:
        threads: the number of threads, or ``None`` to change nothing.

    Raises:
        ConfigError: ``threads`` is not a positive integer or None.
    """
    n = check_threads(threads)
    if n is None:
        yield
        return
    _load_native_pools()
    # The native pools' settings are read before anything changes, so that leaving the block
    # restores every one of them (torch's OpenMP runtime included) to where it was.
    with threadpool_limits(limits=n):
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)

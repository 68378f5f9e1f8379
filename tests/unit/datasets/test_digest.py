"""``tensor_digest``: the content hash behind run identities and caches must never drift."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from unlearnkit.datasets._bundle import tensor_digest


def _by_hand(*arrays: np.ndarray, extra=None) -> str:
    """sha256 over dtype, shape and the C-order bytes of each array, then ``repr(extra)``."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    if extra is not None:
        h.update(repr(extra).encode())
    return h.hexdigest()[:16]


def test_digest_is_the_hash_of_dtype_shape_and_bytes():
    g = torch.Generator().manual_seed(0)
    cases = [
        torch.randn(5, 3, 4, generator=g),
        torch.arange(10),
        torch.randn(4, 5, generator=g).t(),  # not contiguous: hashed in C order
        torch.randn(3, generator=g).half(),
        torch.tensor(3.0),  # 0-d
        torch.zeros(2, 0, 3),  # empty
        np.array([True, False]),
        np.arange(6, dtype=np.int64).reshape(2, 3)[:, ::2],
    ]
    for t in cases:
        a = t.numpy() if isinstance(t, torch.Tensor) else t
        assert tensor_digest(t) == _by_hand(a)
    assert tensor_digest(*cases[:3], extra={"k": 1}) == _by_hand(
        *(c.numpy() for c in cases[:3]), extra={"k": 1}
    )


def test_a_pinned_digest():
    # Stored results are keyed by these hashes: a change here orphans every results folder.
    assert tensor_digest(torch.arange(12, dtype=torch.float32).reshape(3, 4)) == _by_hand(
        np.arange(12, dtype=np.float32).reshape(3, 4)
    )
    assert tensor_digest(np.arange(4, dtype=np.int64)) == "4a871df19664c6cb"

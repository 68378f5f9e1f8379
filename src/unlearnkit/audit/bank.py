"""The oracle bank: trained originals, retrains and shadow models cached on disk.

Each entry is ``<key>.safetensors`` (the weights) plus ``<key>.json`` (metadata and the SHA-256
of the weights file), keyed by a content hash of everything that determines the model (dataset
fingerprint, forget set, architecture, recipe, seed, role). Writes are atomic (temporary file,
then rename), so a killed run leaves either a whole entry or none. A corrupt or truncated file
is detected by its checksum, removed and reported as a miss: it is retrained, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["OracleBank", "bank_key", "state_digest"]

log = logging.getLogger(__name__)


def bank_key(**parts: Any) -> str:
    """Content hash of JSON-able parts (sorted keys), 20 hex digits."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class OracleBank:
    """A directory of cached models.

    Example:
        >>> bank = OracleBank("runs/bank")
        >>> model, meta, hit = bank.get_or_train(key, factory, lambda: train_fn())
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.safetensors", self.root / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        weights, meta = self._paths(key)
        return weights.is_file() and meta.is_file()

    def keys(self) -> list[str]:
        """The stored models' keys (arrays excluded)."""
        return sorted(p.stem for p in self.root.glob("*.json") if not p.stem.endswith(".npy"))

    def _discard(self, key: str, why: str) -> None:
        log.warning("oracle bank: discarding entry %s (%s); it will be retrained", key, why)
        for p in self._paths(key):
            p.unlink(missing_ok=True)

    def load_meta(self, key: str) -> dict[str, Any] | None:
        _, meta_path = self._paths(key)
        try:
            return json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None

    def get(self, key: str, factory: Callable[[], nn.Module]) -> tuple[nn.Module, dict] | None:
        """Load entry ``key`` into ``factory()``'s model, or ``None`` if absent or corrupt."""
        weights, _ = self._paths(key)
        if not weights.is_file():
            return None
        meta = self.load_meta(key)
        if meta is None:
            self._discard(key, "unreadable metadata")
            return None
        if _sha256(weights) != meta.get("sha256"):
            self._discard(key, "checksum mismatch (corrupt or truncated file)")
            return None
        try:
            state = load_file(str(weights))
            model = factory()
            model.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is retrained
            self._discard(key, f"unloadable weights: {exc}")
            return None
        model.eval()
        return model, meta

    def put(self, key: str, model: nn.Module, meta: dict[str, Any] | None = None) -> None:
        """Store ``model`` under ``key`` (atomically) with JSON-able ``meta``."""
        weights, meta_path = self._paths(key)
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        _atomic_write(weights, lambda p: save_file(state, str(p)))
        record = {**(meta or {}), "key": key, "sha256": _sha256(weights)}
        _atomic_write(meta_path, lambda p: p.write_text(json.dumps(record, indent=1, default=str)))

    # -- arrays (e.g. memorisation scores): the same checksum sidecar and atomic writes --------

    def _array_paths(self, name: str) -> tuple[Path, Path]:
        return self.root / f"{name}.npy", self.root / f"{name}.npy.json"

    def get_array(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        """The array stored as ``name``, or ``None`` when absent, unverifiable or corrupt.

        A file without its checksum sidecar (written by an older version, or edited by hand), a
        checksum mismatch, an unreadable file or one of another ``shape`` is removed and
        reported as a miss, so the caller recomputes it instead of trusting it.
        """
        data, meta_path = self._array_paths(name)
        if not data.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = None
        why = None
        if not isinstance(meta, dict) or "sha256" not in meta:
            why = "no checksum sidecar"
        elif _sha256(data) != meta["sha256"]:
            why = "checksum mismatch (corrupt, truncated or edited file)"
        else:
            try:
                arr = np.load(data, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                why = f"unreadable: {exc}"
            else:
                if shape is not None and arr.shape != tuple(shape):
                    why = f"shape {arr.shape}, expected {tuple(shape)}"
                else:
                    return arr
        log.warning("oracle bank: discarding %s (%s); it will be recomputed", data.name, why)
        data.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        return None

    def put_array(self, name: str, arr: np.ndarray, meta: dict[str, Any] | None = None) -> None:
        """Store ``arr`` as ``name`` (atomically), with a sidecar holding its SHA-256."""
        data, meta_path = self._array_paths(name)

        def write(p: Path) -> None:
            with p.open("wb") as f:
                np.save(f, np.asarray(arr), allow_pickle=False)

        _atomic_write(data, write)
        record = {**(meta or {}), "name": name, "sha256": _sha256(data)}
        _atomic_write(meta_path, lambda p: p.write_text(json.dumps(record, indent=1, default=str)))

    def get_or_train(
        self,
        key: str,
        factory: Callable[[], nn.Module],
        train_fn: Callable[[], tuple[nn.Module, dict[str, Any]]],
    ) -> tuple[nn.Module, dict[str, Any], bool]:
        """Return ``(model, meta, hit)``: the cached entry, or ``train_fn()``'s result stored."""
        got = self.get(key, factory)
        if got is not None:
            return got[0], got[1], True
        model, meta = train_fn()
        self.put(key, model, meta)
        return model, self.load_meta(key) or meta, False


def state_digest(model: nn.Module) -> str:
    """Content hash of a model's weights (used to key caches on theta_o)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

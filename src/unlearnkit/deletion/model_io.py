"""Build a user's model from an import path; load and save its weights as plain state dicts.

A checkpoint is read without ever unpickling arbitrary objects: ``.safetensors`` files through
safetensors, anything else through ``torch.load(..., weights_only=True)``. The output is always
a safetensors file that loads into the user's model with no unlearnkit import.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, DataError

__all__ = [
    "build_model",
    "import_object",
    "load_checkpoint",
    "save_model",
    "sha256_file",
    "sha256_ids",
]

log = logging.getLogger(__name__)

# Dicts people commonly save around a state dict (training loops, Lightning-style wrappers).
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# Prefixes added by nn.DataParallel / DistributedDataParallel and by torch.compile.
_PREFIXES = ("module.", "_orig_mod.")


def one_line(exc: BaseException) -> str:
    """``"TypeError: message"`` with all whitespace runs collapsed, at most ~300 characters."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def few(items: Sequence[Any], n: int = 3) -> str:
    """The first ``n`` items as ``'a', 'b', 'c', ...`` for an error message."""
    shown = ", ".join(repr(v) for v in list(items)[:n])
    return shown + (", ..." if len(items) > n else "")


def import_object(spec: str, what: str = "--model") -> Any:
    """Import the callable that ``spec`` (``"pkg.module:name"``) points at.

    The current working directory is put on ``sys.path`` first (when neither it nor ``""`` is
    there), so a module beside the user's data is importable as it is from ``python -m``.
    ``name`` may be dotted (``"pkg.mod:Factory.build"``).

    Args:
        spec: ``MODULE:NAME``.
        what: the option being read, used in error messages (``"--model"``, ``"--data"``).

    Returns:
        The imported object (a class or function).

    Raises:
        ConfigError: no ``:`` in ``spec``; the module cannot be found (named) or raises on
            import (its exception in one line); the attribute is missing (a few names the
            module has are listed); the object is not callable.

    Example:
        >>> import_object("collections:OrderedDict").__name__
        'OrderedDict'
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigError(
            f"{what} must be an import path MODULE:NAME (e.g. mymodels:Net), got {spec!r}"
        )
    module_name, _, attr = (part.strip() for part in spec.partition(":"))
    if not module_name or not attr:
        raise ConfigError(
            f"{what} must be an import path MODULE:NAME (e.g. mymodels:Net), got {spec!r}"
        )
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise ConfigError(
                f"{what} {spec}: no module named {missing!r}; run from the folder that holds it "
                "or add that folder to PYTHONPATH"
            ) from exc
        raise ConfigError(
            f"{what} {spec}: importing {module_name!r} failed because it imports {missing!r}, "
            "which is not installed; install it"
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"{what} {spec}: importing {module_name!r} raised {one_line(exc)}; fix the module"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(obj) if not n.startswith("_"))
            own = [n for n in public if getattr(getattr(obj, n), "__module__", None) == module_name]
            names = own or public
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise ConfigError(
                f"{what} {spec}: {module_name}:{attr} has no attribute {part!r} "
                f"(it has: {shown or 'nothing public'}); check the name after ':'"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(
            f"{what} {spec}: {attr!r} is a {type(obj).__name__}, not a class or function; "
            "point at the class or function that builds it"
        )
    return obj


def build_model(spec: str, kwargs: Mapping[str, Any] | None = None, *, what: str = "--model"):
    """Import the class or factory ``spec`` and call it with ``kwargs`` to build the model.

    Args:
        spec: ``MODULE:NAME`` of an ``nn.Module`` class or a function returning one.
        kwargs: keyword arguments for the call (``--model-kwargs``).
        what: the option name used in error messages.

    Returns:
        The freshly built ``nn.Module``.

    Raises:
        ConfigError: everything :func:`import_object` raises; ``kwargs`` not a mapping with
            string keys; the call raising (its exception in one line); a result that is not an
            ``nn.Module``.
    """
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ConfigError(
            f"{what}-kwargs must be a JSON object of keyword arguments (e.g. "
            f"'{{\"width\": 64}}'), got {kwargs!r}"
        )
    factory = import_object(spec, what)
    try:
        model = factory(**kwargs)
    except Exception as exc:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ConfigError(
            f"{what} {spec}: calling it with ({args}) raised {one_line(exc)}; "
            f"check {what} and {what}-kwargs"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"{what} {spec} returned a {type(model).__name__}, not a torch.nn.Module; point "
            f"{what} at the model class or a function that returns the model"
        )
    return model


def _read_state(path: Path, what: str) -> Any:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise DataError(
                f"{what} {path} is not a readable safetensors file ({one_line(exc)}); save it "
                "with safetensors.torch.save_file(model.state_dict(), PATH)"
            ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise DataError(
                f"{what} {path} is not a plain state dict (a pickled object); save "
                "model.state_dict() with torch.save(model.state_dict(), PATH) and pass that"
            ) from exc
        bad = exc
    except Exception as exc:
        bad = exc
    raise DataError(
        f"{what} {path} is not a PyTorch checkpoint ({one_line(bad)}); give a state dict saved "
        "with torch.save(model.state_dict(), PATH) or a .safetensors file"
    ) from bad


def _is_state(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) or k.endswith("_extra_state") for k, v in obj.items())
    )


def _unwrap(obj: Any, path: Path, what: str) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise DataError(
            f"{what} {path} holds a {type(obj).__name__}, not a state dict; save "
            "model.state_dict() instead"
        )
    if not _is_state(obj):
        for key in _WRAPPER_KEYS:
            if _is_state(obj.get(key)):
                log.info("%s: using the state dict under key %r", path, key)
                return dict(obj[key])
        if not obj:
            raise DataError(f"{what} {path} is an empty state dict; save model.state_dict()")
        odd = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        raise DataError(
            f"{what} {path} is not a plain state dict: {len(odd)} entr(ies) hold no tensor "
            f"({few(odd)}); save model.state_dict(), or a dict with it under 'state_dict'"
        )
    return dict(obj)


def _strip_prefix(state: dict[str, Any], model_keys: set[str]) -> dict[str, Any]:
    if set(state) & model_keys:
        return state
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state) and not any(
            k.startswith(prefix) for k in model_keys
        ):
            log.info("checkpoint keys carry the prefix %r (a wrapped model); removed", prefix)
            return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, what: str = "--checkpoint"):
    """Load a state-dict checkpoint into ``model`` in place, with strict key and shape checks.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(path, map_location="cpu", weights_only=True)``, so a pickled object (for
    example ``torch.save(model)``) is refused rather than executed. A dict holding the state
    dict under ``"state_dict"``, ``"model_state_dict"`` or ``"model"`` is unwrapped, and a
    ``"module."`` (DataParallel) or ``"_orig_mod."`` (torch.compile) prefix on every key is
    removed.

    Args:
        model: the freshly built model.
        path: the checkpoint file.
        what: the option name used in error messages.

    Returns:
        ``model``, with the checkpoint's weights.

    Raises:
        DataError: a missing file; a file that is not a checkpoint; a pickled object; a
            non-state-dict content; missing or unexpected keys or shape mismatches (the first
            three of each are named).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"{what} {p}: no such file; give the state dict saved with "
            "torch.save(model.state_dict(), PATH) or a .safetensors file"
        )
    expected = model.state_dict()
    state = _strip_prefix(_unwrap(_read_state(p, what), p, what), set(expected))
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if isinstance(v, torch.Tensor)
        and isinstance(state.get(k), torch.Tensor)
        and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) ({few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) ({few(unexpected)})")
    if shapes:
        shown = ", ".join(shapes[:3]) + (", ..." if len(shapes) > 3 else "")
        problems.append(f"{len(shapes)} shape mismatch(es) ({shown})")
    if problems:
        raise DataError(
            f"{what} {p} does not fit the model: {'; '.join(problems)}; check that --model and "
            "--model-kwargs build the architecture the checkpoint was saved from"
        )
    try:
        with torch.no_grad():
            model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied into the parameter
        raise DataError(f"{what} {p} does not load into the model: {one_line(exc)}") from exc
    return model


def save_model(
    model: nn.Module, path: str | os.PathLike, *, metadata: Mapping[str, str] | None = None
) -> str:
    """Write ``model.state_dict()`` as a safetensors file and return the file's SHA-256.

    Tensors are moved to the CPU and made contiguous; a tensor that shares its storage with
    another entry (tied weights) or is a view into a larger buffer is cloned, since
    safetensors stores each tensor on its own. The file is written to a temporary name and
    renamed, so a crash never leaves a half-written model. It loads back with
    ``safetensors.torch.load_file(path)`` and ``model.load_state_dict(...)``.

    Args:
        model: the model to save.
        path: the output file (parent folders are created).
        metadata: optional string key/value pairs stored in the file header.

    Returns:
        The hex SHA-256 of the written file.

    Raises:
        DataError: a state-dict entry that is not a tensor; the file cannot be written.
    """
    from safetensors.torch import save_file

    state: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise DataError(
                f"state-dict entry {key!r} is a {type(value).__name__}, not a tensor; "
                "safetensors stores tensors only"
            )
        t = value.detach().to("cpu")
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        whole = storage.nbytes() == t.numel() * t.element_size() and t.is_contiguous()
        if ptr in seen or not whole or t.numel() == 0:
            t = t.clone(memory_format=torch.contiguous_format)
        seen.add(ptr)
        state[key] = t
    p = Path(path)
    tmp = p.with_name(p.name + ".part")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(tmp), metadata=dict(metadata) if metadata else None)
        os.replace(tmp, p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write the model to {p}: {one_line(exc)}") from exc
    return sha256_file(p)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_ids(ids: Sequence[Any]) -> str:
    """Hex SHA-256 of the sorted IDs (as strings), newline-joined, UTF-8 encoded.

    The hash does not depend on the order the IDs were listed in:

    >>> sha256_ids(["b", "a"]) == sha256_ids(["a", "b"])
    True
    """
    text = "\n".join(sorted(str(i) for i in ids))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

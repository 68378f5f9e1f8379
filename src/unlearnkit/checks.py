"""Checks run once at the front doors: is this model usable on this data, on this device?

Every public entry point that runs a user's model (:func:`~unlearnkit.run_unlearning`,
:func:`~unlearnkit.evaluate`, :func:`~unlearnkit.metrics.model_signals`,
:func:`~unlearnkit.train`) calls :func:`check_model` before any work starts, so a model that
returns a tuple, has the wrong number of outputs, takes another input size or has no parameters
fails at once with a one-line :class:`~unlearnkit.errors.ConfigError` instead of a traceback
deep inside a method (or, for too many outputs, a silently wrong result).

>>> import unlearnkit as uk
>>> from torch import nn
>>> bundle = uk.datasets.load("digits")
>>> check_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 7)), bundle)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
unlearnkit.errors.ConfigError: model outputs 7 scores per sample but the data have 10 classes; ...
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, DataError

__all__ = [
    "PRECISIONS",
    "auto_device",
    "check_device",
    "check_model",
    "check_precision",
    "check_run_inputs",
    "check_seed",
    "require_continuous_inputs",
]

_DEVICE_HELP = "use 'auto', 'cpu', 'cuda', 'cuda:0' or 'mps' (or a torch.device)"
#: The precisions a run can use: full float32, or float32 weights with bfloat16 / float16
#: compute under autocast (float16 with loss scaling).
PRECISIONS = ("fp32", "bf16", "fp16")
_PROBE = 2  # samples in the probe batch: two, so a BatchNorm in train mode could run too


def _one_line(text: Any) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def check_seed(seed: Any, name: str = "seed") -> int:
    """Return ``seed`` as an ``int``, or raise :class:`ConfigError` naming ``name``.

    A seed is a non-negative integer below ``2**64`` (Python or NumPy integer; not a bool, a
    float or a string: ``"1"`` or ``1.5`` would otherwise seed something else than meant).

    >>> check_seed(3)
    3
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(
            f"{name} must be an integer, got {type(seed).__name__} {seed!r}; pass e.g. {name}=0"
        )
    value = int(seed)
    if not 0 <= value < 2**64:
        raise ConfigError(f"{name} must be a non-negative integer below 2**64, got {value}")
    return value


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    backend = getattr(torch, kind, None)
    return bool(backend is not None and getattr(backend, "is_available", lambda: False)())


def auto_device() -> torch.device:
    """The best device this machine has: CUDA if available, else Apple's MPS, else the CPU."""
    if _available("cuda"):
        return torch.device("cuda")
    if _available("mps"):
        return torch.device("mps")
    return torch.device("cpu")


def check_device(device: Any) -> torch.device | None:
    """Return ``device`` as a :class:`torch.device` (``None`` stays ``None``: the model's own).

    ``"auto"`` picks :func:`auto_device`: CUDA, then MPS, then the CPU.

    Raises:
        ConfigError: not a device name, an accelerator this machine does not have (``"cuda"``
            without CUDA, ``"mps"`` off Apple silicon), or a device index beyond those present.

    >>> check_device("cpu")
    device(type='cpu')
    """
    if device is None:
        return None
    if isinstance(device, str) and device.strip().lower() == "auto":
        return auto_device()
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise ConfigError(
            f"device must be a device name or torch.device, got {type(device).__name__}; "
            + _DEVICE_HELP
        )
    try:
        dev = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(
            f"device {device!r} is not a device torch knows; {_DEVICE_HELP}"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "meta":
        raise ConfigError("device 'meta' holds no data and cannot run a model; " + _DEVICE_HELP)
    if not _available(dev.type):
        raise ConfigError(
            f"device {str(dev)!r} was requested but {dev.type} is not available on this machine "
            f"(torch {torch.__version__}); use device='auto' (the best device present), 'cpu', "
            "or leave device unset"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {str(dev)!r} does not exist: this machine has {torch.cuda.device_count()} "
            "CUDA device(s), numbered from 0"
        )
    return dev


def check_precision(precision: Any, device: Any = None) -> str:
    """Return ``precision`` (``None`` means ``"fp32"``) after checking it suits ``device``.

    ``"fp32"`` runs everything in float32 (the default, bit-identical to a run without any
    precision setting). ``"bf16"`` and ``"fp16"`` keep float32 weights and run forward passes
    and losses under :func:`torch.autocast`; ``"fp16"`` also scales the loss so small gradients
    survive, and needs a CUDA device.

    Raises:
        ConfigError: an unknown name, ``"fp16"`` off CUDA, or ``"bf16"`` on a GPU without
            bfloat16 support.

    >>> check_precision("bf16", "cpu")
    'bf16'
    """
    if precision is None:
        return "fp32"
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ConfigError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}; fp32 is the "
            "default, bf16 runs on CPUs and recent GPUs, fp16 on CUDA GPUs"
        )
    dev = check_device(device) or torch.device("cpu")
    if precision == "fp16" and dev.type != "cuda":
        raise ConfigError(
            f"precision 'fp16' needs a CUDA device (float16 with loss scaling); on {dev.type} "
            "use precision='bf16', the mixed precision CPUs support, or 'fp32'"
        )
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"precision 'bf16' is not supported by the GPU {str(dev)!r}; use precision='fp16' "
            "(with loss scaling) or 'fp32'"
        )
    return precision


def _probe_source(data: Any) -> tuple[torch.Tensor, int | None, int | None]:
    """``(probe inputs, K or None, highest label or None)`` of a task, bundle, split or pair."""
    bundle = getattr(data, "bundle", None)  # a ForgetTask
    if bundle is not None:
        # the forget set: data every method may read, even a forget-only one
        return data.forget.x[:_PROBE], int(bundle.num_classes), None
    if hasattr(data, "num_classes") and hasattr(data, "train"):  # a DatasetBundle
        return data.train.x[:_PROBE], int(data.num_classes), None
    if hasattr(data, "x") and hasattr(data, "y"):  # a Split or a DataView
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise DataError(
            f"cannot read inputs from a {type(data).__name__}; pass a dataset bundle, a forget "
            "task, a Split, a DataView or an (x, y) pair of tensors"
        )
    if not isinstance(x, torch.Tensor):
        raise DataError(f"inputs must be a torch tensor, got {type(x).__name__}")
    top = None
    if isinstance(y, torch.Tensor) and y.numel():
        top = int(y.max())
    return x[:_PROBE], None, top


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def _forward_probe(model: nn.Module, x: torch.Tensor, what: str) -> Any:
    """One forward pass in eval mode, no grad; modes and the global RNG left as they were."""
    modes = [(m, m.training) for m in model.modules()]
    dev = _model_device(model)
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            model.eval()
            with torch.no_grad():
                return model(x.to(dev))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(
            f"{what} fails on the data: a batch of shape {tuple(x.shape)} (inputs "
            f"{tuple(x.shape[1:])}, dtype {str(x.dtype).replace('torch.', '')}) raised "
            f"{type(exc).__name__}: {_one_line(exc)}; make the model take inputs of that shape, "
            "or load the data in the shape the model expects"
        ) from exc
    finally:
        for m, training in modes:
            m.training = training


def check_model(model: Any, data: Any, device: Any = None, *, what: str = "model") -> None:
    """Check that ``model`` is a classifier for ``data``: one probe forward on two samples.

    The probe runs in eval mode without gradients on the model's own device; it changes no
    weights, buffers, train/eval flags or RNG state. It checks that ``model`` is an
    ``nn.Module`` with parameters, that it runs on inputs of the data's shape, and that it
    returns one floating-point tensor of shape ``(batch, K)`` that is not its input.

    Args:
        model: the user's model.
        data: a :class:`~unlearnkit.ForgetTask` or dataset bundle (then ``K`` is the number of
            classes and the width must equal it), or a ``Split``, ``DataView`` or ``(x, y)``
            pair (then the width must exceed the largest label).
        device: the requested device, checked with :func:`check_device`.
        what: how messages name the model (``"reference"``, ``"original"``...).

    Raises:
        ConfigError: one line naming what is wrong and how to fix it.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{what} must be a torch nn.Module, got {type(model).__name__}")
    check_device(device)
    if next(iter(model.parameters()), None) is None:
        raise ConfigError(
            f"{what} ({type(model).__name__}) has no parameters, so there is nothing to train or "
            "unlearn; pass a classifier whose last layer has one output per class"
        )
    x, num_classes, top_label = _probe_source(data)
    if x.shape[0] == 0:
        return  # no data to probe with; the callers reject empty data themselves
    out = _forward_probe(model, x, what)
    fix = "make forward() return only the logits tensor (wrap the model if needed)"
    if isinstance(out, (tuple, list)):
        raise ConfigError(
            f"{what} returns a {type(out).__name__} of {len(out)} items, not one tensor; {fix}"
        )
    if isinstance(out, dict):
        raise ConfigError(f"{what} returns a dict (keys {sorted(map(str, out))[:5]}); {fix}")
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{what} returns a {type(out).__name__}, not a tensor; {fix}")
    if out is x or (out.shape == x.shape and torch.equal(out.cpu(), x.cpu())):
        raise ConfigError(
            f"{what} returns its input unchanged (an identity map), not class scores; pass a "
            "classifier whose last layer has one output per class"
        )
    n = x.shape[0]
    if out.dim() != 2 or out.shape[0] != n:
        expected = f"({n}, {num_classes})" if num_classes is not None else f"({n}, K)"
        raise ConfigError(
            f"{what} returns shape {tuple(out.shape)} for a batch of {n}; a classifier must "
            f"return {expected} logits (flatten or pool its last features before the head)"
        )
    if not out.is_floating_point():
        raise ConfigError(
            f"{what} returns {str(out.dtype).replace('torch.', '')} values; it must return "
            "floating-point logits (no argmax inside forward())"
        )
    width = int(out.shape[1])
    if num_classes is not None and width != num_classes:
        raise ConfigError(
            f"{what} outputs {width} scores per sample but the data have {num_classes} classes; "
            f"give its last layer {num_classes} outputs (e.g. uk.models.build(name, bundle))"
        )
    if top_label is not None and width <= top_label:
        raise ConfigError(
            f"{what} outputs {width} scores per sample but the labels go up to {top_label}; "
            f"give its last layer at least {top_label + 1} outputs (one per class)"
        )


def check_run_inputs(model: Any, task: Any, *, device: Any = None, seed: Any = 0) -> None:
    """The front-door checks of :func:`~unlearnkit.run_unlearning`: seed, device and model.

    Raises:
        ConfigError: a seed that is not a non-negative integer, an unavailable or malformed
            device, or a model that does not fit the task (see :func:`check_model`).
    """
    check_seed(seed)
    check_model(model, task, device)


def require_continuous_inputs(x: torch.Tensor, method: str) -> None:
    """Refuse integer (categorical) inputs for a method that perturbs inputs continuously.

    Raises:
        DataError: ``x`` is not floating point.
    """
    if not x.is_floating_point():
        raise DataError(
            f"{method} perturbs inputs with continuous noise and needs floating-point features; "
            f"these inputs are {str(x.dtype).replace('torch.', '')} (integer or categorical "
            "codes); use a method that does not perturb inputs, or encode the features as "
            "floats (e.g. one-hot) before from_arrays"
        )

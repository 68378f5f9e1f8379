"""Train many small models at once, each exactly as :func:`unlearnkit.train` would train it alone.

The Tier-C audits need banks of tens to hundreds of shadow or
reference models of one architecture and recipe. Trained one after another, a small model on a
small dataset spends much of its time in Python and per-kernel overhead; trained as one stacked
ensemble, the K members share every kernel call.

>>> import unlearnkit as uk
>>> from unlearnkit.audit.ensemble import train_ensemble
>>> bundle = uk.datasets.load("digits")
>>> factory = uk.models.ModelFactory.for_bundle("mlp", bundle)
>>> recipe = uk.TrainRecipe(epochs=2)
>>> models = train_ensemble(factory, [bundle.train] * 4, recipe, seeds=[0, 1, 2, 3])

Member ``k`` equals ``uk.train(factory(seeds[k]), datasets[k], recipe, seed=seeds[k])``:

* with the ``bmm`` backend (plain Flatten/Linear/ReLU stacks such as the library's ``mlp``) bit
  for bit on CPU, when ``train`` runs with the same number of intra-op threads (``workers > 1``
  trains on one thread per worker, so then it equals ``train`` on one thread). Mind that
  ``train`` itself is not bitwise reproducible across thread counts: a matrix product may take
  a different kernel, and a few epochs turn that rounding into differences near 1e-3;
* with the ``vmap`` backend (any other supported model) up to float rounding: batched kernels
  add in a different order (tests check 1e-5 after a few epochs; Adam, which divides by the
  gradient's scale, amplifies rounding at ReLU kinks more than SGD does).

How the equality is kept:

* **Initialisation**: every member is built by ``factory(seed_k)``, then the parameters are
  stacked along a new leading member axis.
* **Batch order**: each member keeps its own ``torch.Generator().manual_seed(seed_k)`` and draws
  one ``torch.randperm`` per epoch from it, as :class:`unlearnkit.data.BatchLoader` does; the
  members' index rows are gathered into one ``(K, B, ...)`` batch (augmentation, if any, is
  applied per member with the member's generator, in the loader's order). The last short batch
  is kept, as in the engine; members grouped together have equal data sizes, so their batches
  have equal sizes.
* **Gradients** (``bmm`` backend): the backward pass is written out rather than recorded by
  autograd, with the very operations autograd runs for one member alone: ``log_softmax``, the
  NLL gradient ``-1/B`` at the targets, ``_log_softmax_backward_data``, ``threshold_backward``
  for ReLU, and each linear layer's forward, input-gradient, weight-gradient and bias-gradient
  products on autograd's operand layouts for ``F.linear`` on a 2-D batch. Activations and
  gradients live in buffers reused at every step. Before training, every product of every
  layer shape is run once batched and once per member on random data; where the batched
  kernel rounds differently (with MKL on two threads, e.g., the head's 10-row weight
  gradient), that product runs as a loop over members.
* **Gradients** (``vmap`` backend): autograd through :func:`torch.func.vmap`; the per-member
  batch-mean cross-entropies are summed, and as members share no parameters, the gradient of
  the sum with respect to member ``k``'s slice is member ``k``'s own gradient.
* **Optimizer**: one optimizer of the recipe over the stacked tensors. SGD (momentum, Nesterov,
  weight decay), Adam and AdamW are elementwise in the parameters and their step counter is the
  same for every member, so one optimizer over stacked tensors is K independent optimizers. The
  learning-rate schedule is shared, as every member runs the same number of steps.

Speed: the stacked products do the same floating-point work as K separate trainings, so the
gain is the per-step overhead saved (Python, autograd, dispatch, small kernels, allocations),
largest for small models and small batches. ``benchmarks/bench_ensemble.py`` measures it
against sequential training at 1 and 2 threads, together with the compute floor (the step's
matrix products alone) that bounds any ensemble: on a 2-core machine K = 64 digits MLPs train
about 10x faster than one after another with hidden (64,), and about 2.7x with the benchmark's
hidden (256, 256), whose sequential training already spends 40 % of its time in those
products (ceiling 4.7x over one thread even at zero overhead).

Supported models: any model whose training-mode forward is deterministic and leaves its buffers
alone. Refused, with :class:`~unlearnkit.errors.ConfigError`: BatchNorm (batch statistics and
running-stat updates), InstanceNorm with running statistics, dropout with ``p > 0`` (its random
masks come from a global RNG stream that stacked members cannot reproduce), and, found by one
probing forward pass, any other module that changes a buffer or draws from the global RNG in
training mode. Constant buffers are fine. A model whose forward cannot run under
:func:`torch.func.vmap` fails with torch's error.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import DataView
from ..datasets import Split
from ..errors import ConfigError, DataError
from ..optim import build_optimizer, build_scheduler
from ..training import TrainingDiverged, TrainRecipe, _as_tensors
from .stacked_grads import _autograd_grads, _linear_chain, _StackedChain, _vmap_forward

__all__ = ["check_ensemble_compatible", "check_in_memory", "train_ensemble", "usable_cpus"]

log = logging.getLogger(__name__)

_BACKENDS = ("auto", "vmap", "bmm")

Data = Split | DataView | tuple[torch.Tensor, torch.Tensor]


@dataclass
class _Member:
    index: int
    seed: int
    x: torch.Tensor
    y: torch.Tensor
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None


def train_ensemble(
    factory: Callable[[int], nn.Module],
    datasets: Sequence[Data] | Data,
    recipe: TrainRecipe | None = None,
    seeds: Sequence[int | None] | None = None,
    *,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    backend: str = "auto",
    workers: int = 1,
) -> list[nn.Module]:
    """Train one model per seed, all at once, as :func:`unlearnkit.train` trains each alone.

    Args:
        factory: ``factory(seed)`` returns a freshly initialised model (e.g. a
            :class:`unlearnkit.models.ModelFactory`); every call must give the same architecture.
        datasets: one ``(x, y)`` pair, :class:`~unlearnkit.datasets.Split` or
            :class:`~unlearnkit.data.DataView` per member (members may have different data,
            e.g. complementary halves of an audit pool), or a single one shared by all members.
        recipe: the training recipe (default ``TrainRecipe()``).
        seeds: one seed per member; ``None`` entries resolve as in :func:`unlearnkit.train`
            (the recipe's seed, else 0). Default ``range(len(datasets))``.
        device: where to train (default: where ``factory`` puts the parameters).
        chunk_size: train at most this many members at a time (bounds memory; default all).
            Members whose data differ in size are always trained in separate groups.
        workers: train this many chunks at once, in threads with one intra-op thread each
            (CPU; the thread count is restored afterwards). Each group of members is split
            into ``workers`` equal chunks (each at most ``chunk_size``). On a busy machine
            this avoids the waits of several intra-op threads synchronising after every
            kernel.
        backend: ``"vmap"`` (:func:`torch.func.vmap` of a functional call, any supported model),
            ``"bmm"`` (batched matrix products, plain ``Flatten``/``Linear``/``ReLU`` stacks such
            as the library's ``mlp``; faster on CPU) or ``"auto"`` (``bmm`` where it applies).

    Returns:
        The trained models, in the order of ``seeds``, in eval mode, on the training device.

    Raises:
        ConfigError: unsupported model (see the module docstring), mismatched architectures,
            a bad ``chunk_size``/``backend``/``workers``, or ``seeds`` and ``datasets`` of
            different lengths.
        DataError: a dataset without labels, empty, or with inputs and labels of different
            lengths.
        TrainingDiverged: a member's loss became non-finite (its ``train()`` would raise too).
    """
    recipe = recipe or TrainRecipe()
    if backend not in _BACKENDS:
        raise ConfigError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise ConfigError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if isinstance(workers, bool) or int(workers) < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    workers = int(workers)
    datasets = _as_list(datasets, seeds)
    if seeds is None:
        seeds = list(range(len(datasets)))
    seeds = list(seeds)
    if len(seeds) != len(datasets):
        raise ConfigError(
            f"got {len(seeds)} seeds but {len(datasets)} datasets; pass one seed per dataset "
            "(or a single dataset shared by all members)"
        )
    members = []
    for k, (s, d) in enumerate(zip(seeds, datasets)):
        seed = s if s is not None else (recipe.seed if recipe.seed is not None else 0)
        x, y, aug = _as_tensors(d)
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"member {k}: inputs and labels differ in length ({x.shape[0]} vs {y.shape[0]})"
            )
        members.append(_Member(k, int(seed), x, y, aug if recipe.augment else None))

    # The factory and the compatibility probe touch the global RNG: both stay in this thread.
    jobs = []
    for chunk in _chunks(members, chunk_size, workers):
        models = [factory(m.seed) for m in chunk]
        if device is not None:
            for model in models:
                model.to(device)
        check_ensemble_compatible(models, chunk[0].x[:2], chunk[0].seed)
        jobs.append((models, chunk))
    if workers == 1 or len(jobs) == 1:
        for models, chunk in jobs:
            _train_chunk(models, chunk, recipe, backend)
    else:
        _train_in_threads(jobs, recipe, backend, workers)

    out: list[nn.Module | None] = [None] * len(members)
    for models, chunk in jobs:
        for m, model in zip(chunk, models):
            out[m.index] = model
    return out  # type: ignore[return-value]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity masks
        return max(1, os.cpu_count() or 1)


def _train_in_threads(
    jobs: list[tuple[list[nn.Module], list[_Member]]],
    recipe: TrainRecipe,
    backend: str,
    workers: int,
) -> None:
    """Train chunks concurrently, one intra-op thread each (restored afterwards).

    Independent chunks need no synchronisation, while one chunk on several intra-op threads
    synchronises after every kernel: on a busy machine those waits cost more than they save.
    """
    before = torch.get_num_threads()

    def job(item: tuple[list[nn.Module], list[_Member]]) -> None:
        torch.set_num_threads(1)
        _train_chunk(item[0], item[1], recipe, backend)

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(job, jobs):
                pass
    finally:
        torch.set_num_threads(before)


def check_in_memory(x: Any) -> None:
    """Raise :class:`ConfigError` when ``x`` is read from disk: the stacked trainer gathers
    every member's rows from in-memory tensors (such data train one model at a time)."""
    from ..datasets._lazy import is_lazy

    if is_lazy(x):
        raise ConfigError(
            "the data are read from disk batch by batch (image_folder), and train_ensemble "
            "gathers every member's rows from in-memory tensors"
        )


def check_ensemble_compatible(
    models: Sequence[nn.Module], probe: torch.Tensor | None = None, seed: int = 0
) -> None:
    """Raise :class:`ConfigError` unless ``models`` can be trained as one stacked ensemble.

    Checks that every model has the same parameter and buffer names and shapes, contains no
    BatchNorm, running-stat InstanceNorm or active dropout and, given a ``probe`` input batch,
    that one training-mode forward pass of the first model changes no buffer and draws nothing
    from the global RNG (the caller's RNG state is left untouched).
    """
    if not models:
        return
    first = models[0]
    for name, mod in first.named_modules():
        where = f"module {name or '<root>'!r} ({type(mod).__name__})"
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            raise ConfigError(
                f"train_ensemble cannot train models with BatchNorm ({where}): batch statistics "
                "and running-stat updates do not stack; train these models one at a time with "
                "unlearnkit.train, or use GroupNorm/LayerNorm"
            )
        if isinstance(mod, nn.modules.instancenorm._InstanceNorm) and mod.track_running_stats:
            raise ConfigError(
                f"train_ensemble cannot train InstanceNorm with running statistics ({where}); "
                "use track_running_stats=False or train the models one at a time"
            )
        if isinstance(mod, nn.modules.dropout._DropoutNd) and mod.p > 0:
            raise ConfigError(
                f"train_ensemble cannot reproduce dropout ({where}, p={mod.p}): its masks come "
                "from one global RNG stream per model; set p=0 or train the models one at a "
                "time with unlearnkit.train"
            )
    sig = _signature(first)
    if not sig[0]:
        raise ConfigError("train_ensemble needs models with trainable parameters")
    for k, model in enumerate(models[1:], start=1):
        if _signature(model) != sig:
            raise ConfigError(
                f"member {k} has different parameter/buffer names or shapes than member 0; "
                "the factory must build one architecture for every seed"
            )
    if probe is None:
        return
    dev = next(first.parameters()).device
    buffers = {n: b.detach().clone() for n, b in first.named_buffers()}
    was_training = first.training
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = torch.get_rng_state()
        first.train()
        with torch.no_grad():
            first(probe.to(dev))
        drew = not torch.equal(state, torch.get_rng_state())
    first.train(was_training)
    changed = [n for n, b in first.named_buffers() if not torch.equal(b, buffers[n])]
    with torch.no_grad():  # undo the probe's side effects before refusing or training
        for n, b in first.named_buffers():
            b.copy_(buffers[n])
    if changed:
        raise ConfigError(
            f"train_ensemble cannot train models whose buffers change in training "
            f"({', '.join(changed[:5])}); train these models one at a time with unlearnkit.train"
        )
    if drew:
        raise ConfigError(
            "train_ensemble cannot reproduce a model that draws random numbers in its forward "
            "pass (dropout-like noise): each member's stream would differ from its own "
            "train() run; train these models one at a time with unlearnkit.train"
        )


# --------------------------------------------------------------------------------------------
# Internals


def _as_list(datasets: Any, seeds: Sequence[int | None] | None) -> list[Data]:
    single = isinstance(datasets, (Split, DataView)) or (
        isinstance(datasets, tuple)
        and len(datasets) == 2
        and all(isinstance(t, torch.Tensor) for t in datasets)
    )
    if single:
        if seeds is None:
            raise ConfigError("with a single dataset shared by all members, pass seeds=")
        return [datasets] * len(seeds)
    if not isinstance(datasets, Sequence) or isinstance(datasets, (str, bytes)):
        raise DataError(
            "datasets must be a list of (x, y) pairs, Splits or DataViews (one per member)"
        )
    return list(datasets)


def _chunks(
    members: list[_Member], chunk_size: int | None, workers: int = 1
) -> list[list[_Member]]:
    """Group members by data size (equal batch sizes at every step) and sample shape, then
    cut each group into ``workers`` equal chunks, none larger than ``chunk_size``."""
    groups: dict[tuple, list[_Member]] = {}
    for m in members:
        groups.setdefault((tuple(m.x.shape), m.x.dtype, m.y.dtype), []).append(m)
    out = []
    for group in groups.values():
        size = -(-len(group) // workers)
        if chunk_size is not None:
            size = min(size, int(chunk_size))
        out += [group[i : i + size] for i in range(0, len(group), size)]
    return out


def _signature(model: nn.Module) -> tuple[tuple, tuple]:
    params = tuple(
        (n, tuple(p.shape), p.dtype, p.requires_grad) for n, p in model.named_parameters()
    )
    buffers = tuple((n, tuple(b.shape), b.dtype) for n, b in model.named_buffers())
    return params, buffers


def _train_chunk(
    models: list[nn.Module], members: list[_Member], recipe: TrainRecipe, backend: str
) -> list[nn.Module]:
    k_count = len(models)
    dev = next(models[0].parameters()).device
    n = int(members[0].x.shape[0])
    bs = recipe.batch_size

    ops = _linear_chain(models[0]) if backend != "vmap" else None
    if ops is not None and ops[0][0] != "flatten" and members[0].x.dim() != 2:
        ops = None  # Linear on the last axis of a >2-D input: not a chain of 2-D products
    if backend == "bmm" and ops is None:
        raise ConfigError(
            "backend='bmm' needs a plain Flatten/Linear/ReLU stack (the library's 'mlp' or an "
            "nn.Sequential of those, on vector inputs unless it starts with Flatten), got "
            f"{type(models[0]).__name__}; use backend='vmap'"
        )
    names = [n_ for n_, _ in models[0].named_parameters()]
    with torch.no_grad():
        leaves = {}
        for name in names:
            per = [dict(m.named_parameters())[name] for m in models]
            leaves[name] = torch.stack(per).requires_grad_(per[0].requires_grad)
        buffers = {
            name: torch.stack([dict(m.named_buffers())[name] for m in models])
            for name, _ in models[0].named_buffers()
        }
    if ops is not None:
        sizes = {min(bs, n)} | ({n % bs} if n > bs and n % bs else set())
        grads = _StackedChain(ops, leaves, sizes, k_count, dev).grads
    else:
        base = copy.deepcopy(models[0]).to("meta").train()
        grads = _autograd_grads(_vmap_forward(base, leaves, buffers), k_count)

    # Data: one shared tensor, or the members' tensors stacked; with augmentation, per member.
    augmented = any(m.augment is not None for m in members)
    shared = all(m.x is members[0].x and m.y is members[0].y for m in members)
    if not augmented:
        if shared:
            xs, ys = members[0].x.to(dev), members[0].y.to(dev)
        else:
            xs = torch.stack([m.x for m in members]).to(dev)
            ys = torch.stack([m.y for m in members]).to(dev)
    rows = torch.arange(k_count, device=dev).unsqueeze(1)
    gens = [torch.Generator().manual_seed(m.seed) for m in members]

    opt = _stacked_optimizer(list(leaves.values()), recipe)
    steps_per_epoch = -(-n // bs)
    sched_spec = recipe.scheduler_spec(steps_per_epoch)
    sched = build_scheduler(
        opt, sched_spec, recipe.epochs * steps_per_epoch if sched_spec.per_step else recipe.epochs
    )
    # Nothing below draws from the global RNG (random forward passes are refused), so unlike
    # the engine there is no forked global RNG to seed; that also keeps this thread-safe.
    for epoch in range(recipe.epochs):
        orders = torch.stack([torch.randperm(n, generator=g) for g in gens])
        total = torch.zeros(k_count, device=dev)
        for start in range(0, n, bs):
            idx = orders[:, start : start + bs]
            if augmented:
                xb, yb = _augmented_batch(members, gens, idx, dev)
            else:
                idx = idx.to(dev)
                xb, yb = (xs[idx], ys[idx]) if shared else (xs[rows, idx], ys[rows, idx])
            per = grads(xb, yb)
            opt.step()
            total += per
            if sched is not None and sched_spec.per_step:
                sched.step()
        if sched is not None and not sched_spec.per_step:
            sched.step()
        mean_loss = (total / steps_per_epoch).tolist()
        bad = [m.index for m, v in zip(members, mean_loss) if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"training loss of member(s) {bad[:10]} became non-finite in epoch "
                f"{epoch + 1}; lower the recipe's lr"
            )
        log.debug("epoch %d mean loss %.4f", epoch + 1, sum(mean_loss) / k_count)

    with torch.no_grad():
        for k, model in enumerate(models):
            params = dict(model.named_parameters())
            for name in names:
                params[name].copy_(leaves[name][k])
            model.eval()
    return models


def _stacked_optimizer(params: list[torch.Tensor], recipe: TrainRecipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over the stacked tensors: the engine's own implementation.

    Torch's fused SGD kernel would save passes over memory (about 4 % of the ensemble's time on
    the digits MLP) but rounds differently from the engine's SGD on some shapes (about 1 ulp per
    step on the tiny test models), and the oracle bank shares models between ensemble and
    one-at-a-time training under one key: they must be equal bit for bit.
    """
    return build_optimizer(params, recipe.optimizer_spec())


def _augmented_batch(
    members: list[_Member], gens: list[torch.Generator], idx: torch.Tensor, dev: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather and augment each member's batch with its own generator, as BatchLoader does."""
    xb, yb = [], []
    for m, g, rows in zip(members, gens, idx):
        x = m.x[rows]
        if m.augment is not None:
            x = m.augment(x, g)
        xb.append(x)
        yb.append(m.y[rows])
    return torch.stack(xb).to(dev), torch.stack(yb).to(dev)

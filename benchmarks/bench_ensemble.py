"""Ensemble training vs training the same K models one after another.

Trains K digits MLPs (the digits benchmark model: ``mlp``, hidden (256, 256), on the 1078
training samples of ``digits``) with the default ``TrainRecipe()`` (SGD, lr 0.05, momentum 0.9,
weight decay 5e-4, 60 epochs, batch size 64):

* **sequential**: K calls of ``unlearnkit.train``, one after another, once with 1 and once
  with 2 torch intra-op threads (``--seq-threads``): the sequential baseline at its best
  thread count is the honest one;
* **ensemble**: one ``train_ensemble`` call with ``workers`` threads (one intra-op thread each;
  default: every usable CPU).

The variants alternate over the repeats (the order rotates), and the medians of wall-clock
and process CPU time are compared. Every ensemble member is checked against its sequential
twin trained on one thread (bit for bit expected).

It also prints the **compute floor**: the matrix products of one training step of one model
alone (forward, weight and input gradients; hot caches, one thread), timed with nothing else.
No implementation doing the same float32 arithmetic can train a member-step faster than
``floor / cores``, so ``sequential / (floor / cores)`` bounds the speed-up any ensemble can
reach on this machine for this model.

    python benchmarks/bench_ensemble.py                              # K=64, 60 epochs, 3 repeats
    python benchmarks/bench_ensemble.py --epochs 20 --repeats 3      # quicker
    python benchmarks/bench_ensemble.py --hidden 64 --epochs 20      # a smaller MLP

Wall-clock ratios need an otherwise idle machine: the load average before and after is printed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

import torch

import unlearnkit as uk
from unlearnkit.audit.ensemble import train_ensemble, usable_cpus


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - platform without load averages
        return "n/a"


def compute_floor(sizes: list[int], batch: int, repeats: int = 400) -> float:
    """Seconds per training step of one model spent in its matrix products alone (1 thread).

    Per linear layer: the forward ``addmm``, the weight gradient ``g^T x`` and, except for the
    first layer (whose input needs no gradient), the input gradient ``g W``, on fixed random
    operands that stay in cache: the float32 work of a step at the machine's best speed.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    ops = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        x = torch.randn(batch, fan_in, generator=gen)
        w = torch.randn(fan_out, fan_in, generator=gen)
        b = torch.randn(fan_out, generator=gen)
        g = torch.randn(batch, fan_out, generator=gen)
        out, gw, gx = torch.empty(batch, fan_out), torch.empty_like(w), torch.empty_like(x)
        ops.append(lambda x=x, w=w, b=b, out=out: torch.addmm(b, x, w.t(), out=out))
        ops.append(lambda g=g, x=x, gw=gw: torch.mm(g.t(), x, out=gw))
        if i > 0:
            ops.append(lambda g=g, w=w, gx=gx: torch.mm(g, w, out=gx))
    try:
        best = float("inf")
        for _ in range(5):  # the minimum of 5 blocks: the floor, not a typical time
            start = time.perf_counter()
            for _ in range(repeats):
                for op in ops:
                    op()
            best = min(best, (time.perf_counter() - start) / repeats)
    finally:
        torch.set_num_threads(before)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=64, help="number of models")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's 60 epochs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="MLP widths")
    ap.add_argument(
        "--seq-threads", type=int, nargs="*", default=[1, 2], help="sequential baselines"
    )
    ap.add_argument("--workers", type=int, default=None, help="default: usable CPUs")
    ap.add_argument("--backend", default="auto", choices=("auto", "vmap", "bmm"))
    ap.add_argument("--chunk-size", type=int, default=None)
    args = ap.parse_args(argv)

    workers = args.workers or usable_cpus()
    bundle = uk.datasets.load("digits")
    factory = uk.models.ModelFactory("mlp", (1, 8, 8), 10, (1, 8, 8), {"hidden": args.hidden})
    recipe = uk.TrainRecipe() if args.epochs is None else uk.TrainRecipe(epochs=args.epochs)
    seeds = list(range(args.k))
    data = bundle.train
    n = len(data.x)
    steps = recipe.epochs * -(-n // recipe.batch_size)
    print(
        f"K={args.k} digits MLP (hidden {tuple(args.hidden)}), n={n}, recipe: {recipe.optimizer} "
        f"lr={recipe.lr} momentum={recipe.momentum} wd={recipe.weight_decay} "
        f"epochs={recipe.epochs} batch={recipe.batch_size} ({steps} steps per model); "
        f"torch {torch.__version__}, {usable_cpus()} usable CPUs; ensemble: backend="
        f"{args.backend}, workers={workers}, chunk_size={args.chunk_size}"
    )
    print(f"load average before: {_load()}")

    def sequential(threads: int):
        def run():
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return [uk.train(factory(s), data, recipe, seed=s) for s in seeds]
            finally:
                torch.set_num_threads(before)

        return run

    def ensemble():
        return train_ensemble(
            factory,
            data,
            recipe,
            seeds,
            backend=args.backend,
            chunk_size=args.chunk_size,
            workers=workers,
        )

    variants = {f"sequential, {t} thread{'s' * (t > 1)}": sequential(t) for t in args.seq_threads}
    variants["ensemble"] = ensemble
    torch.set_num_threads(1)
    train_ensemble(factory, data, uk.TrainRecipe(epochs=1), [0, 1], workers=workers)  # warm-up
    uk.train(factory(0), data, uk.TrainRecipe(epochs=1), seed=0)

    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    max_diff = 0.0
    names = list(variants)
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        got = {}
        for name in order:
            got[name], wall, cpu = _timed(variants[name])
            times[name].append((wall, cpu))
            print(f"  repeat {r + 1} {name:>22}: wall {wall:8.2f} s   cpu {cpu:8.2f} s", flush=True)
        twin = "sequential, 1 thread"
        if twin in got:
            for a, b in zip(got["ensemble"], got[twin]):
                for p, q in zip(a.parameters(), b.parameters()):
                    max_diff = max(max_diff, float((p - q).detach().abs().max()))
    print(f"load average after: {_load()}")

    label = f"median of {args.repeats}" if args.repeats > 1 else "one run"
    med = {
        name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for name, v in times.items()
    }
    per_step = {name: wall / (args.k * steps) for name, (wall, _) in med.items()}
    for name, (wall, cpu) in med.items():
        print(
            f"{name:>22} ({label}): wall {wall:8.2f} s   cpu {cpu:8.2f} s   "
            f"({per_step[name] * 1e3:.3f} ms wall per model-step)"
        )
    ens = med["ensemble"][0]
    for name, (wall, _) in med.items():
        if name != "ensemble":
            print(f"speed-up over {name}: {wall / ens:.2f}x wall")
    if "sequential, 1 thread" in med:
        print(f"max |ensemble - sequential on 1 thread| over all parameters: {max_diff:.3g}")

    floor = compute_floor([64, *args.hidden, 10], recipe.batch_size)
    cores = usable_cpus()
    print(
        f"compute floor: {floor * 1e3:.3f} ms of matrix products per model-step (1 thread), "
        f"i.e. {floor / cores * 1e3:.3f} ms on {cores} cores; the ensemble runs at "
        f"{per_step['ensemble'] * cores / floor:.2f}x the floor"
    )
    for name, step in per_step.items():
        if name != "ensemble":
            print(f"  ceiling for any ensemble over {name}: {step * cores / floor:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

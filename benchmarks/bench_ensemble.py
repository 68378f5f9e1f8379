"""Ensemble training vs training the same K models one after another (METRICS.md 3.2, 6.3).

Trains K digits MLPs (the digits benchmark model: ``mlp``, hidden (256, 256), on the 1078
training samples of ``digits``) with the default ``TrainRecipe()`` (SGD, lr 0.05, momentum 0.9,
weight decay 5e-4, 60 epochs, batch size 64), once with K calls of ``unlearnkit.train`` and once
with one ``train_ensemble`` call, alternating the order over repeats, and prints the median wall
and process-CPU times and their ratios. It also checks that every ensemble member equals its
sequentially trained twin.

    python benchmarks/bench_ensemble.py                    # K=64, 60 epochs, 3 repeats
    python benchmarks/bench_ensemble.py --threads 1 --workers 2   # 2 cores, no OpenMP waits
    python benchmarks/bench_ensemble.py --threads 1 --repeats 1 --epochs 10

Wall-clock ratios need an otherwise idle machine: the load average before and after is printed.
Process CPU time (all threads of this process) is less sensitive to other processes, but with
several intra-op threads it also counts threads spinning while they wait for each other.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import unlearnkit as uk
from unlearnkit.audit.ensemble import train_ensemble


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - platform without load averages
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=64, help="number of models")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's 60 epochs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--backend", default="auto", choices=("auto", "vmap", "bmm"))
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1, help="train_ensemble(workers=...)")
    ap.add_argument("--skip-sequential", action="store_true")
    args = ap.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    bundle = uk.datasets.load("digits")
    factory = uk.models.ModelFactory("mlp", (1, 8, 8), 10, (1, 8, 8), {})
    recipe = uk.TrainRecipe() if args.epochs is None else uk.TrainRecipe(epochs=args.epochs)
    seeds = list(range(args.k))
    data = bundle.train
    print(
        f"K={args.k} digits MLP (hidden 256, 256), n={len(data.x)}, recipe: {recipe.optimizer} "
        f"lr={recipe.lr} momentum={recipe.momentum} wd={recipe.weight_decay} "
        f"epochs={recipe.epochs} batch={recipe.batch_size}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs; backend={args.backend}, "
        f"chunk_size={args.chunk_size}, workers={args.workers}"
    )
    print(f"load average before: {_load()}")

    def sequential():
        return [uk.train(factory(s), data, recipe, seed=s) for s in seeds]

    def ensemble():
        return train_ensemble(
            factory,
            [data] * args.k,
            recipe,
            seeds,
            backend=args.backend,
            chunk_size=args.chunk_size,
            workers=args.workers,
        )

    train_ensemble(factory, [data] * 2, uk.TrainRecipe(epochs=1), [0, 1])  # warm-up
    times: dict[str, list[tuple[float, float]]] = {"sequential": [], "ensemble": []}
    max_diff = 0.0
    for r in range(args.repeats):
        order = ["ensemble", "sequential"] if r % 2 else ["sequential", "ensemble"]
        if args.skip_sequential:
            order = ["ensemble"]
        got = {}
        for name in order:
            got[name], wall, cpu = _timed(sequential if name == "sequential" else ensemble)
            times[name].append((wall, cpu))
            print(f"  repeat {r + 1} {name:>10}: wall {wall:8.2f} s   cpu {cpu:8.2f} s", flush=True)
        if "sequential" in got:
            for a, b in zip(got["ensemble"], got["sequential"]):
                for p, q in zip(a.parameters(), b.parameters()):
                    max_diff = max(max_diff, float((p - q).detach().abs().max()))
    print(f"load average after: {_load()}")

    med = {
        name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for name, v in times.items()
        if v
    }
    label = f"median of {args.repeats}" if args.repeats > 1 else "one run"
    for name, (wall, cpu) in med.items():
        print(
            f"{name:>10} ({label}): wall {wall:8.2f} s   cpu {cpu:8.2f} s   "
            f"({wall / args.k * 1e3:.1f} ms wall per model)"
        )
    if "sequential" in med:
        (sw, sc), (ew, ec) = med["sequential"], med["ensemble"]
        print(f"speed-up (sequential / ensemble): wall {sw / ew:.2f}x   cpu {sc / ec:.2f}x")
        print(f"max |ensemble - sequential| over all members' parameters: {max_diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training-engine throughput against a plain hand-written PyTorch loop.

Same model (the digits benchmark MLP), same data (digits' training split), same batch size,
same optimizer; the two are run alternately (ABAB...) so that machine noise hits both alike,
and the medians of the repeats are compared.

    python benchmarks/bench_training.py [--repeats 7] [--epochs 20] [--arch mlp]

Target: engine throughput >= 0.95x the plain loop.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import unlearnkit as uk


def plain_loop(model, x, y, epochs: int, batch_size: int, lr: float, seed: int) -> None:
    """The loop a user would write by hand: shuffle, slice, step."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--arch", default="mlp", choices=uk.models.available())
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    bundle = uk.datasets.load("digits")
    factory = uk.models.ModelFactory.for_bundle(args.arch, bundle)
    x, y = bundle.train.x, bundle.train.y
    recipe = uk.TrainRecipe(epochs=args.epochs, batch_size=args.batch_size, lr=0.05)
    steps = args.epochs * -(-len(y) // args.batch_size)

    def run_engine(seed: int) -> float:
        m = factory(seed)
        t0 = time.perf_counter()
        uk.train(m, bundle.train, recipe, seed=seed)
        return time.perf_counter() - t0

    def run_plain(seed: int) -> float:
        m = factory(seed)
        t0 = time.perf_counter()
        plain_loop(m, x, y, args.epochs, args.batch_size, 0.05, seed)
        return time.perf_counter() - t0

    run_engine(0), run_plain(0)  # warm-up
    t_engine, t_plain = [], []
    for r in range(args.repeats):
        t_engine.append(run_engine(r))
        t_plain.append(run_plain(r))
    me, mp = statistics.median(t_engine), statistics.median(t_plain)
    print(
        f"model {args.arch}, digits train n={len(y)}, batch {args.batch_size}, "
        f"{args.epochs} epochs = {steps} steps, {args.repeats} interleaved repeats, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"plain loop : median {mp:.3f} s  ({steps / mp:,.0f} steps/s)")
    print(f"engine     : median {me:.3f} s  ({steps / me:,.0f} steps/s)")
    print(f"engine throughput / plain loop = {mp / me:.3f}x (target >= 0.95x)")


if __name__ == "__main__":
    main()

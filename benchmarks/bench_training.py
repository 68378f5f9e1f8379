"""Training-engine throughput against a plain hand-written PyTorch loop, per architecture.

For each model (the digits benchmark's ``mlp``, ``cnn_small`` and, when it is registered, a
narrow ``resnet18`` of width 8), on digits' training split: the same initial weights, data,
batch size and optimizer; the engine (:func:`unlearnkit.train`) and the plain loop are run
alternately (ABAB...) so that machine noise hits both alike, and the medians of the repeats
are compared: of wall-clock time and of the process's CPU time (on a shared machine other
processes stretch the wall clock of whichever loop they interrupt; CPU time is what each loop
itself costs).

    python benchmarks/bench_training.py [--repeats 7] [--archs mlp,cnn_small,resnet18]
                                        [--threads 1] [--batch-size 64]

Target: engine throughput >= 0.95x the plain loop for every model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import unlearnkit as uk

#: Per architecture: model options and epochs (each timed run lasts about half a second on
#: one CPU thread).
MODELS: dict[str, tuple[dict, int]] = {
    "mlp": ({}, 20),
    "cnn_small": ({}, 10),
    "resnet18": ({"width": 8}, 3),
}


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


def compare(
    arch: str, bundle, repeats: int, batch_size: int, epochs: int | None
) -> tuple[float, float]:
    """Print the medians of both loops for ``arch``; return engine / plain throughput by
    wall-clock and by CPU time."""
    options, default_epochs = MODELS[arch]
    epochs = epochs or default_epochs
    factory = uk.models.ModelFactory.for_bundle(arch, bundle, **options)
    x, y = bundle.train.x, bundle.train.y
    recipe = uk.TrainRecipe(epochs=epochs, batch_size=batch_size, lr=0.05)
    steps = epochs * -(-len(y) // batch_size)

    def timed(fn) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w0, time.process_time() - c0

    def run_engine(seed: int) -> tuple[float, float]:
        m = factory(seed)
        return timed(lambda: uk.train(m, bundle.train, recipe, seed=seed))

    def run_plain(seed: int) -> tuple[float, float]:
        m = factory(seed)
        return timed(lambda: plain_loop(m, x, y, epochs, batch_size, 0.05, seed))

    run_engine(0), run_plain(0)  # warm-up
    engine, plain = [], []
    for r in range(repeats):  # ABBA...: neither loop always runs first
        if r % 2 == 0:
            engine.append(run_engine(r))
            plain.append(run_plain(r))
        else:
            plain.append(run_plain(r))
            engine.append(run_engine(r))
    params = sum(p.numel() for p in factory(0).parameters())
    opts = ", ".join(f"{k}={v}" for k, v in options.items())
    print(f"{arch}{f' ({opts})' if opts else ''}: {params:,} parameters, {steps} steps")
    ratios = []
    for i, clock in enumerate(("wall", "CPU")):
        me = statistics.median(t[i] for t in engine)
        mp = statistics.median(t[i] for t in plain)
        ratios.append(mp / me)
        print(
            f"  {clock:4s} time: plain loop median {mp:.3f} s ({steps / mp:,.0f} steps/s), "
            f"engine {me:.3f} s ({steps / me:,.0f} steps/s): engine / plain = {mp / me:.3f}x"
        )
    return ratios[0], ratios[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--archs", default="mlp,cnn_small,resnet18")
    ap.add_argument("--epochs", type=int, default=None, help="default: per architecture")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    bundle = uk.datasets.load("digits")
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    unknown = [a for a in archs if a not in MODELS]
    if unknown:
        raise SystemExit(f"unknown architecture(s) {unknown}; choose from {sorted(MODELS)}")
    print(
        f"digits train n={len(bundle.train.y)}, batch {args.batch_size}, {args.repeats} "
        f"interleaved repeats, torch threads {torch.get_num_threads()}, CPU"
    )
    ratios = {}
    for arch in archs:
        if arch not in uk.models.available():
            print(f"{arch}: not registered in unlearnkit.models; skipped")
            continue
        ratios[arch] = compare(arch, bundle, args.repeats, args.batch_size, args.epochs)
    summary = ", ".join(f"{a} {w:.3f}x wall, {c:.3f}x CPU" for a, (w, c) in ratios.items())
    print(f"summary, engine / plain loop (target >= 0.95x): {summary}")


if __name__ == "__main__":
    main()

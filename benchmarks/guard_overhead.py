"""Cost of the unlearning loop's divergence guard: the same runs with the guard on and off.

The guard (:meth:`unlearnkit.methods.RunContext.step`) checks each loss for non-finite values
and keeps a copy of the last good weights. Here each method runs through the front door on
MNIST-shaped synthetic data (1x28x28, 10 classes) from the same trained model, seed and config,
with the guard on and off one after the other (in alternating order: neither always runs
first). The overhead is the median of the paired ratios on / off of the process's CPU time (a
slow spell of a shared machine stretches both halves of a pair alike; CPU time leaves out the
time other processes hold the cores); the quartiles of the ratios show the noise. The "off"
runs use a private switch that exists for this measurement only.

A second figure times :meth:`~unlearnkit.methods.RunContext.step` itself: blocks of plain
cross-entropy steps on the same model and context, without the fixed costs of a run
(copying the model, building the method's data).

    python benchmarks/guard_overhead.py [--repeats 15] [--methods finetune,neggrad_plus,natmu]
                                        [--archs mlp,cnn_small] [--steps N] [--threads 1]
                                        [--batch-size 64] [--data mnist-shaped|digits]

``--data digits`` measures on the default benchmark's data and model instead: scikit-learn's
8x8 digits and the (256, 256) MLP of ``unlearnkit bench`` (about 85k parameters, whose weights,
gradients and momentum fit in a core's L2 cache, against 269k for the MNIST-shaped MLP).

Target: guard on / off <= 1.03 for every method.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F
from _mnist_shaped import mnist_shaped

import unlearnkit as uk
from unlearnkit.methods import RunContext
from unlearnkit.threads import limit_threads

#: Optimizer steps per run, per architecture (each run lasts about a second on one thread).
STEPS = {"mlp": 300, "cnn_small": 30}

#: Per method: its config for the measurement (the batch size comes from ``--batch-size``;
#: 64, the digits presets', by default).
CONFIGS: dict[str, dict] = {
    "finetune": {"lr": 0.01},
    "neggrad_plus": {"lr": 0.01},
    "natmu": {"lr": 0.01},
}


def run_once(model, task, method: str, config: dict, guard: bool) -> tuple[float, float, int]:
    """One run; returns wall seconds, CPU seconds and the number of steps."""
    RunContext._guard = guard
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        out = uk.run_unlearning(model, task, method, config, seed=0)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    finally:
        RunContext._guard = True
    if out.diverged:
        raise SystemExit(f"{method} diverged; lower the learning rate of the measurement")
    return wall, cpu, out.steps


def interleave(run, repeats: int) -> list[tuple[float, float]]:
    """``(on, off)`` pairs of ``run(guard)``, the two halves of a pair adjacent in time and in
    alternating order (ABBA...), after one warm-up of each."""
    run(True), run(False)
    pairs = []
    for r in range(repeats):
        if r % 2 == 0:
            on = run(True)
            pairs.append((on, run(False)))
        else:
            off = run(False)
            pairs.append((run(True), off))
    return pairs


def summarise(label: str, pairs: list[tuple[float, float]], unit: str, scale: float) -> float:
    """Print the medians and the median of the paired ratios (with its quartiles); return it.

    A paired ratio compares runs made one after the other, so a slow spell of the machine
    stretches both halves alike; its median is the overhead estimate."""
    ratios = sorted(on / off for on, off in pairs)
    q1, med, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    m_on = statistics.median(p[0] for p in pairs) * scale
    m_off = statistics.median(p[1] for p in pairs) * scale
    print(
        f"  {label:22s} guard off {m_off:8.3f} {unit}, on {m_on:8.3f} {unit}: "
        f"on / off = {med:.3f} (quartiles {q1:.3f}-{q3:.3f})"
    )
    return med


def compare(model, task, method: str, steps: int, repeats: int, batch_size: int) -> float:
    """Print the CPU times of the method's runs with and without the guard; return on / off."""
    config = {**CONFIGS[method], "batch_size": batch_size, "epochs": 100, "max_steps": steps}
    n_steps = run_once(model, task, method, config, True)[2]
    pairs = interleave(lambda guard: run_once(model, task, method, config, guard)[1], repeats)
    return summarise(f"{method} ({n_steps} steps)", pairs, "s", 1.0)


def step_level(model, task, repeats: int, batch_size: int, block: int = 100) -> float:
    """Print the CPU time of one step through ``ctx.step`` with and without the guard (blocks
    of ``block`` plain cross-entropy steps); return on / off."""
    work = copy.deepcopy(model)  # the trained model stays as it is for the method runs
    ctx = RunContext.for_task(work, task, seed=0)
    opt = torch.optim.SGD(work.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = task.retain.x, task.retain.y
    bs = batch_size
    batches = [(x[i : i + bs], y[i : i + bs]) for i in range(0, min(len(y), bs * 50), bs)]
    work.train()

    def run(guard: bool) -> float:
        RunContext._guard = guard
        try:
            t0 = time.process_time()
            for i in range(block):
                xb, yb = batches[i % len(batches)]
                if not ctx.step(opt, F.cross_entropy(work(xb), yb)):
                    raise SystemExit("the step-level measurement diverged")
            return (time.process_time() - t0) / block
        finally:
            RunContext._guard = True

    return summarise("ctx.step, per step", interleave(run, repeats), "ms", 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--methods", default="finetune,neggrad_plus,natmu")
    ap.add_argument("--archs", default="mlp,cnn_small")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: STEPS)")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", choices=("mnist-shaped", "digits"), default="mnist-shaped")
    args = ap.parse_args()

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {sorted(CONFIGS)}")
    with limit_threads(args.threads):  # torch, BLAS and OpenMP alike
        measure(args, methods)


def measure(args: argparse.Namespace, methods: list[str]) -> None:
    """Build the data and models, run every comparison and print the summary."""
    if args.data == "digits":
        bundle = uk.datasets.load("digits", seed=0)
        shape = "digits 8x8 (the default benchmark's data)"
    else:
        bundle = mnist_shaped(args.n_train)
        shape = f"synthetic 1x28x28, n_train={args.n_train}"
    task = uk.forget_task(bundle, scenario="random", fraction=0.1, seed=0)
    print(
        f"{shape}, 10 classes, batch {args.batch_size}, "
        f"{args.repeats} interleaved repeats, torch threads {torch.get_num_threads()}, CPU; "
        f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    results = {}
    for arch in [a.strip() for a in args.archs.split(",") if a.strip()]:
        steps = args.steps or STEPS.get(arch, 60)
        # the default benchmark's MLP on digits (hidden 256, 256); the builder's default else
        kwargs = {"hidden": (256, 256)} if args.data == "digits" and arch == "mlp" else {}
        model = uk.models.build(arch, bundle, **kwargs)
        model = uk.train(model, bundle.train, uk.TrainRecipe(epochs=1, batch_size=128), seed=0)
        print(f"{arch}: {sum(p.numel() for p in model.parameters()):,} parameters")
        results[(arch, "ctx.step")] = step_level(model, task, args.repeats, args.batch_size)
        for method in methods:
            results[(arch, method)] = compare(
                model, task, method, steps, args.repeats, args.batch_size
            )
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    summary = ", ".join(f"{a}/{m} {r:.3f}" for (a, m), r in results.items())
    print(f"summary, guard on / off in CPU time (target <= 1.03): {summary}")


if __name__ == "__main__":
    main()

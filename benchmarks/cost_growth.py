"""How the cost of training, unlearning and evaluating grows with the data set size.

On MNIST-shaped synthetic data (1x28x28 inputs, 10 classes, a test split one sixth of the
training split, as MNIST's 60,000 / 10,000) at several sizes, each stage is timed: training the
MLP for one epoch, one run of each method (one epoch, random 10 % forget set), and
:func:`unlearnkit.evaluate` against a Retrain, with the Retrain's attacks computed ("cold") and
remembered from an earlier call ("cached"); the SVC attack alone (:func:`mia_svc` on the
model's signals) is shown too. Sizes run in turn inside each repeat (so machine noise is spread
over all of them) and each time is the median of the repeats, in CPU time of the process (on a
shared machine other processes stretch the wall clock, not the work a stage does).

The exponent of a stage is the least-squares slope of log(time) against log(size): 1 is linear
growth, 2 quadratic; the slope between neighbouring sizes is shown too. Target: every stage
about 1 (at most 1.15). The SVC attack's fit is quadratic in its shadow-set size until the
per-side cap (``SVC_CAP``) binds, then bounded: between sizes below the cap its slope is about
2, above it at most 1.

    python benchmarks/cost_growth.py [--sizes 5000,20000,60000] [--repeats 3] [--threads 1]
                                     [--methods finetune,gradient_ascent,...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from itertools import pairwise

import numpy as np
import torch
from _mnist_shaped import mnist_shaped

import unlearnkit as uk
from unlearnkit.metrics.functional.mia import mia_svc
from unlearnkit.metrics.suite import clear_reference_cache, model_signals
from unlearnkit.threads import limit_threads

METHODS = (
    "finetune",
    "gradient_ascent",
    "neggrad_plus",
    "random_labels",
    "salun",
    "l1_sparse",
    "scrub",
    "ssd",
    "bad_teacher",
    "natmu",
)
RECIPE = uk.TrainRecipe(epochs=1, batch_size=128, lr=0.05)


def cpu_time(fn) -> tuple[float, object]:
    """CPU seconds of the process spent in ``fn()``, and its result."""
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


class Size:
    """One data set size: its bundle, task, trained original and Retrain (built once)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.bundle = mnist_shaped(n, label_noise=0.05)
        self.task = uk.forget_task(self.bundle, scenario="random", fraction=0.1, seed=0)
        self.factory = uk.models.ModelFactory.for_bundle("mlp", self.bundle)
        self.original = uk.train(self.factory(0), self.bundle.train, RECIPE, seed=0)
        self.retrain = uk.run_unlearning(
            self.original, self.task, "retrain", recipe=RECIPE, model_factory=self.factory, seed=1
        ).model
        self.unlearned = self.original

    def stages(self, methods: tuple[str, ...]) -> dict[str, float]:
        """CPU seconds of every stage at this size (one repeat)."""
        out: dict[str, float] = {}
        out["train (1 epoch)"], _ = cpu_time(
            lambda: uk.train(self.factory(1), self.bundle.train, RECIPE, seed=1)
        )
        for m in methods:
            out[f"unlearn: {m}"], outcome = cpu_time(
                lambda m=m: uk.run_unlearning(
                    self.original, self.task, m, {"epochs": 1}, model_factory=self.factory, seed=0
                )
            )
            if m == "finetune":
                self.unlearned = outcome.model
        clear_reference_cache()
        out["evaluate (Retrain cold)"], _ = cpu_time(
            lambda: uk.evaluate(self.unlearned, self.task, reference=self.retrain)
        )
        out["evaluate (Retrain cached)"], _ = cpu_time(
            lambda: uk.evaluate(self.original, self.task, reference=self.retrain)
        )
        sig = model_signals(self.unlearned, self.task)
        out["mia_svc alone"], _ = cpu_time(lambda: mia_svc(sig.retain, sig.test, sig.forget))
        return out


def slope(sizes: list[int], times: list[float]) -> float:
    """Least-squares slope of log(time) on log(size)."""
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="5000,20000,60000", help="training-set sizes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=1, help="threads of every maths library")
    args = ap.parse_args()

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if len(sizes) < 2:
        raise SystemExit("give at least two sizes to fit an exponent")
    with limit_threads(args.threads):  # torch, BLAS and OpenMP alike
        measure(sizes, methods, args.repeats)


def measure(sizes: list[int], methods: tuple[str, ...], repeats: int) -> None:
    """Time every stage at every size and print the table of medians and exponents."""
    load0 = os.getloadavg()[0]
    print(
        f"MNIST-shaped synthetic data, sizes {sizes}, {repeats} repeats, torch threads "
        f"{torch.get_num_threads()}, {os.cpu_count()} cores, load average at start {load0:.2f}"
    )
    t0 = time.perf_counter()
    data = [Size(n) for n in sizes]
    data[0].stages(methods)  # warm-up: first-call costs (imports, caches) are not growth
    print(f"set-up (data, originals, Retrains, warm-up): {time.perf_counter() - t0:.0f} s")
    times: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in range(repeats):
        for d in data if r % 2 == 0 else data[::-1]:
            for stage, t in d.stages(methods).items():
                times[stage][d.n].append(t)
        print(f"repeat {r + 1} done, load average {os.getloadavg()[0]:.2f}", flush=True)

    head = "".join(f"{n:>10,}" for n in sizes)
    steps = "".join(f"{f'{a // 1000}k-{b // 1000}k':>9s}" for a, b in pairwise(sizes))
    print(f"\n{'stage (median CPU s)':28s}{head}  exponent (fit){steps}")
    worst = ("", 0.0)
    for stage, by_n in times.items():
        med = [statistics.median(by_n[n]) for n in sizes]
        k = slope(sizes, med)
        if stage != "mia_svc alone" and k > worst[1]:
            worst = (stage, k)
        local = "".join(
            f"{slope([a, b], [ta, tb]):9.2f}"
            for (a, b), (ta, tb) in zip(pairwise(sizes), pairwise(med))
        )
        print(f"{stage:28s}" + "".join(f"{t:10.2f}" for t in med) + f"  {k:14.2f}{local}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f} (start {load0:.2f})")
    print(f"steepest stage: {worst[0]} with exponent {worst[1]:.2f} (target <= 1.15)")


if __name__ == "__main__":
    main()

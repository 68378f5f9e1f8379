"""What the SVC attack's per-side shadow cap costs in accuracy of the estimate, and saves in time.

:func:`unlearnkit.metrics.functional.mia.mia_svc` fits its kernel SVC on at most ``cap`` shadow
members and ``cap`` shadow non-members, a seeded uniform draw: the fit costs about
quadratically in its rows, so the cap bounds it. Here, on MNIST-shaped synthetic data (60,000
training samples by default, 10,000 test samples, 5 % noisy labels, a random 10 % forget set),
an MLP trained for 10 epochs (long enough to memorise some of its noisy labels, so that the
attack has a signal to find) and the same model fine-tuned on the retain set for 2 epochs are
attacked with each cap over several attack
seeds (each seed draws other shadow rows). For every cap the table gives the mean
MIA-Efficacy over the seeds, its std over the seeds (the estimate's own noise), the shift of
the mean against the largest cap given (``none`` = all of the smaller side), and the median CPU
seconds of one call.

    python benchmarks/svc_cap.py [--n-train 60000] [--caps 1000,2000,5000,none] [--seeds 8]
                                 [--epochs 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _mnist_shaped import mnist_shaped

import unlearnkit as uk
from unlearnkit.metrics.functional.mia import mia_svc
from unlearnkit.metrics.suite import model_signals
from unlearnkit.threads import limit_threads


def _cap(text: str) -> int | None:
    return None if text.strip().lower() == "none" else int(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-train", type=int, default=60_000)
    ap.add_argument("--caps", default="1000,2000,5000,none")
    ap.add_argument("--seeds", type=int, default=8, help="attack seeds per cap")
    ap.add_argument("--epochs", type=int, default=10, help="training epochs of the original")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    caps = [_cap(c) for c in args.caps.split(",") if c.strip()]
    with limit_threads(args.threads):
        run(args.n_train, caps, args.seeds, args.epochs)


def run(n_train: int, caps: list[int | None], seeds: int, epochs: int) -> None:
    load0 = os.getloadavg()[0]
    bundle = mnist_shaped(n_train, label_noise=0.05)
    task = uk.forget_task(bundle, scenario="random", fraction=0.1, seed=0)
    factory = uk.models.ModelFactory.for_bundle("mlp", bundle)
    recipe = uk.TrainRecipe(epochs=epochs, batch_size=128, lr=0.05)
    original = uk.train(factory(0), bundle.train, recipe, seed=0)
    tuned = uk.run_unlearning(original, task, "finetune", {"epochs": 2}, seed=0).model
    models = {"original": model_signals(original, task), "finetune": model_signals(tuned, task)}
    n_r, n_te, n_f = (
        len(models["original"].retain),
        len(models["original"].test),
        len(task.forget),
    )
    print(
        f"MNIST-shaped synthetic data: {n_r:,} retain, {n_te:,} test, {n_f:,} forget samples; "
        f"MLP trained {epochs} epochs; "
        f"{seeds} attack seeds per cap; {os.cpu_count()} cores, load average {load0:.2f}"
    )
    rows: dict[tuple[str, str], tuple[float, float, float]] = {}
    for name, sig in models.items():
        for cap in caps:
            vals, secs = [], []
            for seed in range(seeds):
                t0 = time.process_time()
                vals.append(
                    mia_svc(sig.retain, sig.test, sig.forget, seed=seed, cap=cap)["mia_efficacy"]
                )
                secs.append(time.process_time() - t0)
            rows[name, str(cap)] = (
                float(np.mean(vals)),
                float(np.std(vals, ddof=1)),
                statistics.median(secs),
            )
    ref = str(caps[-1])
    print(f"\n{'model':10s}{'cap/side':>10s}{'mean':>9s}{'std':>8s}{'shift':>9s}{'CPU s':>8s}")
    for (name, cap), (m, s, t) in rows.items():
        side = min(n_r, n_te) if cap == "None" else min(n_r, n_te, int(cap))
        shift = m - rows[name, ref][0]
        print(f"{name:10s}{side:>10,}{m:9.4f}{s:8.4f}{shift:+9.4f}{t:8.2f}")
    print(f"\nshift: the mean against cap {ref}; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

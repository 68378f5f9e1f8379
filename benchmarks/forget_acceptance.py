"""How often does ``uk.forget(method="auto")`` meet the deletion acceptance test?

For several forget sets on a user-style tabular model (BatchNorm + Dropout, trained with a plain
PyTorch loop; the same model as the end-to-end tests), run ``uk.forget`` with ``method="auto"``
and a wall-clock budget, retrain the model without the forget rows (the gold standard), and
report per forget set:

* the forget-set accuracy of the original, the unlearned and the retrained model, and whether
  the unlearned one lies in the retrained one's 95 % Wilson interval;
* held-out accuracy before and after (the test asks for at most 3 points lost);
* the method ``auto`` chose and the proxy verdict.

    python benchmarks/forget_acceptance.py [--sets 3] [--budget-s 60] [--n-forget 80]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.usermodels import tabular  # noqa: E402

import unlearnkit as uk  # noqa: E402
from unlearnkit.deletion.request import judge  # noqa: E402


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=3, help="forget sets (seeds 0..N-1)")
    ap.add_argument("--budget-s", type=float, default=60.0)
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--n-held", type=int, default=400)
    ap.add_argument("--n-forget", type=int, default=80)
    args = ap.parse_args(argv)
    x, y = tabular.make_data(args.n_train, seed=0)
    xh, yh = tabular.make_data(args.n_held, seed=1)
    model = tabular.train(x, y, seed=0)
    held_before = tabular.accuracy(model, xh, yh)
    print(
        "| set | chosen | verdict (failed) | forget acc: original | unlearned | "
        "retrain [95 % CI] | "
        "in CI | held-out before → after | retrain passes the verdict | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    hits = gold_hits = 0
    for s in range(args.sets):
        f = np.sort(np.random.default_rng(100 + s).choice(args.n_train, args.n_forget, False))
        keep = np.setdiff1d(np.arange(args.n_train), f)
        retrained = tabular.train(x[keep], y[keep], seed=1)
        t0 = time.perf_counter()
        res = uk.forget(
            model,
            data=(x, y),
            held_out=(xh, yh),
            forget_ids=f.tolist(),
            budget_s=args.budget_s,
            seed=0,
        )
        secs = time.perf_counter() - t0
        acc_r = tabular.accuracy(retrained, x[f], y[f])
        lo, hi = wilson(acc_r, len(f))
        acc_u = tabular.accuracy(res.model, x[f], y[f])
        inside = lo <= acc_u <= hi
        hits += inside
        failed = [k for k, ok in res.evidence["verdict"]["criteria"].items() if not ok]
        gold = judge(
            retrained, model, data=(x, y), held_out=(xh, yh), forget_ids=f.tolist(), seed=0
        )
        gold_hits += gold["passed"]
        print(
            f"| {s} | {res.evidence['method']['name']} | "
            f"{'pass' if res.passed else 'not (' + ', '.join(failed) + ')'} | "
            f"{tabular.accuracy(model, x[f], y[f]):.3f} | {acc_u:.3f} | {acc_r:.3f} "
            f"[{lo:.3f}, {hi:.3f}] | {'yes' if inside else 'no'} | {held_before:.3f} → "
            f"{tabular.accuracy(res.model, xh, yh):.3f} | {'yes' if gold['passed'] else 'no'} | "
            f"{secs:.0f} |",
            flush=True,
        )
    print(f"\nforget accuracy inside the retrain's interval: {hits} of {args.sets}")
    print(f"the retrained model itself passes the verdict: {gold_hits} of {args.sets}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

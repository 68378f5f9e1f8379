"""How often does a model retrained without the forget rows fail the ``forget`` verdict?

The gold standard of a deletion should pass; this measures the verdict's false-rejection rate
on the user-style tabular model of the tests. Per forget set (80 of 800 rows), per held-out
split seed (3) and per retrain seed (2), the retrained model is scored with the criteria at two
levels: 95 % per test, and the verdict's Bonferroni level (``calibrate.VERDICT_LEVEL``).

    python benchmarks/verdict_gold_standard.py [--sets 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.usermodels import tabular  # noqa: E402

from unlearnkit.deletion import calibrate as cal  # noqa: E402
from unlearnkit.deletion import request as rq  # noqa: E402
from unlearnkit.deletion.inputs import read_data  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=8)
    args = ap.parse_args(argv)
    n_train, n_held, n_forget = 800, 400, 80
    x, y = tabular.make_data(n_train, seed=0)
    xh, yh = tabular.make_data(n_held, seed=1)
    model = tabular.train(x, y, seed=0)
    train = read_data((x, y))
    held = read_data((xh, yh), like=train, what="--held-out")
    levels = (0.95, cal.VERDICT_LEVEL)
    failed = {lv: 0 for lv in levels}
    by_criterion: dict[float, dict[str, int]] = {lv: {} for lv in levels}
    n = 0
    for s in range(args.sets):
        f = np.sort(np.random.default_rng(100 + s).choice(n_train, n_forget, False))
        keep = np.setdiff1d(np.arange(n_train), f)
        golds = [tabular.train(x[keep], y[keep], seed=rs) for rs in (1, 2)]
        for hs in (0, 1, 2):
            task = rq.build_task(model, train, held, positions=f, classes=None, seed=hs)
            for lv in levels:
                stats = cal.original_stats(model, task, split="test", level=lv)
                for g in golds:
                    crit = cal.proxy_score(g, task, original_stats=stats, split="test")
                    bad = [k for k, c in crit["criteria"].items() if not c["passed"]]
                    failed[lv] += bool(bad)
                    for k in bad:
                        by_criterion[lv][k] = by_criterion[lv].get(k, 0) + 1
            n += 2
        print(f"set {s}: {n} verdicts so far", file=sys.stderr, flush=True)
    for lv in levels:
        print(
            f"level {lv:.4f} per test: {failed[lv]} of {n} retrained models fail "
            f"({by_criterion[lv] or 'none'})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

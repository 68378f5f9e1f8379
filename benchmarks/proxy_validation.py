"""How good is the retrain-free calibration? Score its choices against a real Retrain on digits.

For each scenario of the built-in digits spec (random-10pct, class-3, hard-10pct), each seed
replicate and each method: the method's defaults, the retrain-free calibration's choice and the
benchmark's retrain-tuned config, each scored by Avg. Gap (points) to the real Retrain beside the
noise floor (:func:`unlearnkit.bench.proxy_check.run_proxy_check`; the same section appears in
the report of a benchmark folder that holds ``proxy-check.json``).

    python benchmarks/proxy_validation.py [--methods natmu,salun,gradient_ascent,finetune]
        [--scenarios random-10pct,class-3,hard-10pct] [--seeds 0] [--trials 100]
        [--budget-s 20] [--out runs/proxy-validation]

Trained models (originals, retrains, memorisation scores) live in ``<out>/bank`` and are reused
by later runs (and by ``unlearnkit bench --out <out>``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from unlearnkit.bench.proxy_check import markdown, run_proxy_check
from unlearnkit.bench.spec import default_spec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="natmu,salun,gradient_ascent,finetune")
    p.add_argument("--scenarios", default="random-10pct,class-3,hard-10pct")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--trials", type=int, default=100, help="trial cap of each calibration")
    p.add_argument("--budget-s", type=float, default=20.0, help="time cap of each calibration")
    p.add_argument("--out", default="runs/proxy-validation")
    args = p.parse_args(argv)
    spec = dataclasses.replace(default_spec(), seeds=tuple(args.seeds))
    t0 = time.perf_counter()
    check = run_proxy_check(
        spec,
        args.out,
        methods=args.methods.split(","),
        trials=args.trials,
        budget_s=args.budget_s,
        scenarios=args.scenarios.split(","),
        say=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(markdown(check))
    print(f"{len(check['rows'])} rows in {time.perf_counter() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

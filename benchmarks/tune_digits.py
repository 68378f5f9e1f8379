"""Regenerate the digits benchmark's tuning documents with ``unlearnkit tune``.

    python benchmarks/tune_digits.py [--methods finetune,ssd] [--scenarios random-10pct,class-3]
                                     [--trials 16] [--seeds 2] [--cache runs/tune-digits]
                                     [--docs docs] [--quick]

The same search as ``unlearnkit tune --out <cache> --seeds 2`` on the built-in digits spec
(resumable: the studies live in ``<cache>/tune.db``, the models in ``<cache>/bank``), then
``<docs>/tuning-digits.md`` and ``<docs>/tuning-digits.yaml`` written from every stored study.
The yaml's ``scenarios:`` block holds the configs to carry into
``src/unlearnkit/bench/digits.yaml``. The hard set: ``--scenarios hard-10pct --docs
docs/tuning-hard``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from unlearnkit.bench.spec import default_spec
from unlearnkit.bench.tune_report import summary_table, write_outputs
from unlearnkit.bench.tuning import run_tuning


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--methods", default=None, help="comma-separated (default: all the spec runs)")
    ap.add_argument("--scenarios", default=None, help="comma-separated scenario names")
    ap.add_argument("--trials", type=int, default=16, help="trials per method and scenario")
    ap.add_argument("--seeds", type=int, default=2, help="seed replicates each trial averages")
    ap.add_argument("--cache", default="runs/tune-digits", help="folder of tune.db and the bank")
    ap.add_argument("--docs", default="docs", help="folder of the two documents")
    ap.add_argument("--quick", action="store_true", help="smoke run: short training")
    args = ap.parse_args(argv)
    spec = default_spec().quick() if args.quick else default_spec()
    split = lambda s: s.split(",") if s else None  # noqa: E731
    results = run_tuning(
        spec,
        args.cache,
        methods=split(args.methods),
        scenarios=split(args.scenarios),
        n_trials=args.trials,
        replicates=min(args.seeds, len(spec.seeds)),
        echo=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/tune_digits.py", *argv])
    md, ym = write_outputs(
        args.docs,
        spec,
        results,
        command,
        markdown_name="tuning-digits.md",
        yaml_name="tuning-digits.yaml",
    )
    print(summary_table(results))
    print(f"wrote {md} and {ym}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

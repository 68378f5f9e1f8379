"""Cost of a tier-C audit from scratch: the N = 64 epsilon audit of fine-tuning on digits.

Runs ``run_audit(method="finetune", kind="epsilon", n_models=64)`` on the built-in digits spec
in a fresh (temporary) run directory, so every model is trained: 1 original, 64 Retrains,
64 Retrain′ (the control), plus 64 unlearning runs. Prints the total wall-clock time and its
breakdown (training, unlearning runs, scoring = forward passes + the NeurIPS scorer, other =
set-up, bank and store I/O), the CPU time and the load average, since a measurement on a busy
machine says little.

    python benchmarks/bench_audit.py [--models 64] [--method finetune] [--kind epsilon]
                                     [--threads N] [--out DIR] [--repeat-cached]

Target (acceptance): at most 5 minutes for N = 64 on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from unlearnkit.audit.report import format_audit_text
from unlearnkit.audit.runner import run_audit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--method", default="finetune")
    ap.add_argument("--kind", default="epsilon", choices=("epsilon", "ulira", "rmia"))
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads during the audit (run_audit's default 1)",
    )
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a fresh temp)")
    ap.add_argument(
        "--repeat-cached",
        action="store_true",
        help="after the run, delete results.db and rerun with the bank warm (no training)",
    )
    args = ap.parse_args()

    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.mkdtemp(prefix="bench_audit_")
        out = Path(tmp)
    elif out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; the benchmark needs a fresh run directory")
    try:
        load0 = os.getloadavg()
        c0 = time.process_time()
        t0 = time.perf_counter()
        result = run_audit(
            method=args.method,
            kind=args.kind,
            n_models=args.models,
            out_dir=out,
            echo=lambda m: print(m, flush=True),
            threads=args.threads,
        )
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        load1 = os.getloadavg()
        t = result["timings"]
        print()
        print(format_audit_text(result))
        print()
        threads = result["record"]["provenance"]["torch_threads"]
        print(
            f"{args.kind} audit of {args.method}, N = {args.models}: {wall:.1f} s wall "
            f"({wall / 60:.2f} min), {cpu:.1f} s CPU; torch threads {threads}, "
            f"{os.cpu_count()} cores; load average {load0[0]:.1f} -> {load1[0]:.1f}"
        )
        print(f"  models trained      {result['trained']}")
        print(f"  unlearning runs     {result['unlearning_runs']}")
        for name in ("training", "unlearning", "scoring", "other"):
            print(f"  {name:<18}  {t[name]:7.1f} s  ({100 * t[name] / t['total']:4.1f} %)")
        print(f"  {'total':<18}  {t['total']:7.1f} s   (target <= 300 s on 2 cores)")
        if args.repeat_cached:
            (out / "results.db").unlink()
            for suffix in ("-wal", "-shm"):
                Path(str(out / "results.db") + suffix).unlink(missing_ok=True)
            t0 = time.perf_counter()
            again = run_audit(
                method=args.method,
                kind=args.kind,
                n_models=args.models,
                out_dir=out,
                threads=args.threads,
            )
            print(
                f"rerun with a warm bank: {time.perf_counter() - t0:.1f} s, "
                f"trained {again['trained']}, unlearning runs {again['unlearning_runs']}"
            )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

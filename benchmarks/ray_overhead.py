"""Wall time of the default benchmark with ``--backend ray`` against a local run, and how often
each reference model is trained.

Local and Ray runs alternate (L R L R ...; each into a fresh folder, so every model trains),
and the medians of their wall times give the overhead ratio Ray / local. All Ray runs share
one Ray session (``ray.init`` on this machine with ``--cpus`` CPUs): its start-up is reported
on its own, and the first Ray run, which also starts the worker processes, is reported beside
the median. After every Ray run the oracle bank is read: the distinct originals, Retrains and
Retrain′ models it holds, against the trainings the run reports (equal: none was trained
twice), and the run's rows are compared with the local run's (equal, timings aside).

    python benchmarks/ray_overhead.py [--full] [--repeats 3] [--cpus N] [--json PATH]

``--full`` times the default benchmark itself (3 replicates, 80 epochs: long on a laptop);
the default is its ``--quick`` version (1 replicate, 15 epochs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from unlearnkit.bench.runner import run_benchmark
from unlearnkit.bench.spec import default_spec
from unlearnkit.bench.store import open_existing

ROLES = ("original", "retrain", "retrain_prime")


def bank_roles(out: Path) -> Counter:
    """Distinct models of each reference role in ``out/bank`` (one metadata file each)."""
    roles: Counter = Counter()
    for meta in (out / "bank").glob("*.json"):
        if meta.name.endswith(".npy.json"):
            continue
        role = json.loads(meta.read_text()).get("role")
        if role in ROLES:
            roles[role] += 1
    return roles


def rows(out: Path) -> dict[str, dict[str, float]]:
    with open_existing(out) as store:
        return {r.key: r.metrics for r in store.rows()}


def timing(name: str) -> bool:
    return "seconds" in name or name.startswith("rte")


def same_rows(a: dict, b: dict) -> bool:
    """Equal keys and equal metrics (NaN equals NaN), wall-clock times aside."""
    if set(a) != set(b):
        return False
    for key, ma in a.items():
        mb = b[key]
        for name, va in ma.items():
            if timing(name):
                continue
            vb = mb.get(name)
            if not (va == vb or (math.isnan(va) and vb is not None and math.isnan(vb))):
                return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="the full default benchmark")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    import ray

    spec = default_spec() if args.full else default_spec().quick()
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    print(f"{spec.name}: {args.repeats} local and {args.repeats} Ray runs, interleaved")
    print(f"Ray session start ({args.cpus} CPUs): {ray_start:.1f} s")
    times: dict[str, list[float]] = {"local": [], "ray": []}
    checks = []
    root = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    try:
        for i in range(args.repeats):
            outs = {}
            for backend in ("local", "ray") if i % 2 == 0 else ("ray", "local"):
                out = root / f"{backend}-{i}"
                t = time.perf_counter()
                summary = run_benchmark(spec, out, backend=backend)
                times[backend].append(time.perf_counter() - t)
                assert not summary.failures, summary.failures
                outs[backend] = (out, summary)
                print(f"  run {i + 1} {backend:5s}: {times[backend][-1]:7.1f} s")
            (r_out, r_sum), (l_out, _) = outs["ray"], outs["local"]
            roles = bank_roles(r_out)
            checks.append(
                {
                    "bank": dict(roles),
                    "distinct_models": sum(roles.values()),
                    "trainings": r_sum.trained,
                    "rows_equal_local": same_rows(rows(l_out), rows(r_out)),
                }
            )
            for out in (r_out, l_out):
                shutil.rmtree(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        ray.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["ray"] / med["local"]
    print(f"median local {med['local']:.1f} s, Ray {med['ray']:.1f} s: Ray / local {ratio:.2f}")
    print(f"first Ray run (starts the workers): {times['ray'][0]:.1f} s")
    for i, c in enumerate(checks):
        once = "each trained once" if c["trainings"] == c["distinct_models"] else "RETRAINED"
        print(
            f"  run {i + 1}: bank {c['bank']}; {c['trainings']} trainings for "
            f"{c['distinct_models']} models ({once}); rows equal local: {c['rows_equal_local']}"
        )
    if args.json is not None:
        result = {
            "spec": spec.name,
            "cpus": args.cpus,
            "ray_start_s": ray_start,
            "times_s": times,
            "median_s": med,
            "ratio": ratio,
            "checks": checks,
        }
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

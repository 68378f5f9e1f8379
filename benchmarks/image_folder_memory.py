"""Peak memory of ``evaluate`` on a disk-backed image folder, at growing folder sizes.

For each size N (training images; the test split has N / 5) a folder of 32x32 RGB PNGs in 10
classes is generated once (kept under ``--out``), and a fresh Python process per (size, mode)
loads it, builds ``--model`` (default ``cnn_small``), makes a 10 % random forget task and
runs ``uk.evaluate`` (with ZRF's random teacher, so every split is read twice). A thread
samples the process's resident set size (RSS) every 2 ms. Reported per run: the RSS before
``evaluate`` (after a warm-up evaluation on a tiny folder, so imports are not counted), the
peak RSS during it, and the growth (peak minus before).

Modes: ``disk`` is the ``image_folder`` bundle as loaded (images decoded batch by batch);
``disk-untrimmed`` the same with ``UNLEARNKIT_MALLOC_TRIM=0`` (the heap's freed pages are not
handed back between evaluation batches); ``memory`` decodes every split into tensors first
(what an in-memory loader holds), for comparison. ``--repeats R`` runs each mode R times,
interleaved. On ``disk`` the peak should stay flat as N grows; in ``memory`` it grows with the
data (N * 3 * 32 * 32 * 4 bytes of training inputs alone).

The growth also holds the model's activations for one evaluation batch (up to 1024 rows):
with ``cnn_small`` that is several hundred MB and the same at every size; ``--model mlp``
leaves little besides the data's share.

    python benchmarks/image_folder_memory.py [--sizes 1000 4000 16000] [--model NAME]
                                             [--modes disk disk-untrimmed memory]
                                             [--repeats R] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CLASSES = 10
SIDE = 32


def make_folder(root: Path, n_train: int) -> Path:
    """``root/train/c<k>/`` and ``root/test/c<k>/`` PNGs (noise around a class colour)."""
    from PIL import Image

    done = root / ".complete"
    if done.is_file():
        return root
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_train // 5)):
        for k in range(CLASSES):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True, exist_ok=True)
            centre = rng.integers(0, 256, 3)
            for i in range(n // CLASSES):
                noise = rng.normal(0, 40, (SIDE, SIDE, 3))
                img = np.clip(centre + noise, 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i:05d}.png", compress_level=1)
    done.write_text("ok")
    return root


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(root: str, warm: str, mode: str, arch: str) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    import torch

    import unlearnkit as uk
    from unlearnkit.datasets import Split
    from unlearnkit.datasets._lazy import LazyImages

    torch.set_num_threads(1)

    def bundle_of(path: str):
        b = uk.datasets.load("image_folder", root=path, val_fraction=0.1)
        if mode == "memory":  # (disk-untrimmed: disk, the env switch set by main)
            for name in ("train", "val", "test"):
                s = getattr(b, name)
                setattr(b, name, Split(s.x[:], s.y))
        return b

    def run(path: str):
        b = bundle_of(path)
        model = uk.models.build(arch, b)
        task = uk.forget_task(b, "random", fraction=0.1, seed=0)
        return b, model, task

    b, model, task = run(warm)
    uk.evaluate(model, task)  # warm-up: imports and first-call allocations
    b, model, task = run(root)
    views_lazy = isinstance(task.retain.x, LazyImages)
    before = _rss_bytes()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    uk.evaluate(model, task)
    seconds = time.perf_counter() - t0
    stop.set()
    t.join()
    peak[0] = max(peak[0], _rss_bytes())
    print(
        json.dumps(
            {
                "n_train_files": len(b.train) + (len(b.val) if b.val is not None else 0),
                "mode": mode,
                "rss_before_mb": before / 2**20,
                "peak_mb": peak[0] / 2**20,
                "growth_mb": (peak[0] - before) / 2**20,
                "seconds": seconds,
                "task_views_on_disk": views_lazy,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["disk", "memory"],
        choices=["disk", "disk-untrimmed", "memory"],
    )
    ap.add_argument("--repeats", type=int, default=1, help="interleaved runs per size and mode")
    ap.add_argument("--model", default="cnn_small", help="architecture (uk.models.build)")
    ap.add_argument("--out", type=Path, default=None, help="where the folders are kept")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    out = args.out or Path(tempfile.gettempdir()) / "unlearnkit_image_folder_memory"
    warm = make_folder(out / "warm", 100)
    rows = []
    for n in args.sizes:
        t0 = time.perf_counter()
        root = make_folder(out / f"n{n}", n)
        print(f"folder of {n} training images ready ({time.perf_counter() - t0:.1f} s)")
        for rep in range(args.repeats):
            for mode in args.modes if rep % 2 == 0 else args.modes[::-1]:
                cmd = [sys.executable, __file__, "--child", str(root), str(warm), mode, args.model]
                env = dict(os.environ)
                if mode == "disk-untrimmed":  # the heap's freed pages are not handed back
                    env["UNLEARNKIT_MALLOC_TRIM"] = "0"
                res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(
                    f"  {mode:14s} RSS before {r['rss_before_mb']:7.1f} MB"
                    f"  peak {r['peak_mb']:7.1f} MB  growth {r['growth_mb']:6.1f} MB"
                    f"  ({r['seconds']:.1f} s)"
                )
    if any(not r["task_views_on_disk"] for r in rows if r["mode"].startswith("disk")):
        print(
            "note: the task's forget/retain views held decoded tensors (ForgetTask built them by "
            "indexing the inputs instead of Split.subset), so 'disk' is not flat here"
        )
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""GPU check: every registered method on a ResNet-18 at mixed precision, and the training
engine's throughput against a bare PyTorch loop on the same GPU.

    python benchmarks/gpu_check.py [--precision bf16] [--steps 3] [--repeats 5]

1. Trains a ResNet-18 (``uk.models.build("resnet18", input_shape=(3, 32, 32),
   num_classes=10)``) for one epoch on CIFAR-shaped random data with the engine, then runs
   every registered method for a few optimizer steps (``max_steps``) at ``--precision``
   (default ``bf16``) on a 10 % random forget task, printing time, steps, peak GPU memory
   and whether the run diverged. Statistics-only methods (Fisher, influence, SSD) run on a
   capped number of samples.
2. Times :func:`unlearnkit.train` against a bare loop (shuffle, slice, ``.to(device)``,
   step) on the same GPU, data and precision, alternately (ABAB...), and prints the medians
   and the ratio (target >= 0.95x).

Exit codes: 0 when everything ran (also on a machine without CUDA, where there is nothing to
check: it says so); 1 when ``resnet18`` is not registered or any method failed.
``--device cpu --width 8`` runs the same check on the CPU with a narrow ResNet-18 (a dry run
of this script; fp16 is refused there).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

import unlearnkit as uk
from unlearnkit.checks import check_device, check_precision

#: Extra config per method so that a statistics pass stays short (optimizer-step methods get
#: ``max_steps`` instead).
SHORT = {
    "fisher": {"max_samples": 16},
    "influence": {"n_samples": 32},
}


def cifar_like(n_train: int, seed: int = 0):
    """Random 3x32x32 images in 10 Gaussian classes (a CIFAR-10-shaped bundle)."""
    return uk.datasets.load(
        "synthetic",
        n_train=n_train,
        n_val=64,
        n_test=128,
        num_classes=10,
        input_shape=(3, 32, 32),
        separation=1.0,
        seed=seed,
    )


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def peak_mb(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")


def check_methods(args, dev: torch.device, width: dict) -> list[str]:
    """Run every method briefly; return the names of those that failed."""
    bundle = cifar_like(args.n_train)
    task = uk.forget_task(bundle, "random", fraction=0.1, seed=0)
    recipe = uk.TrainRecipe(epochs=1, batch_size=64, lr=0.05, precision=args.precision)
    factory = uk.models.ModelFactory.for_bundle("resnet18", bundle, **width)
    t0 = time.perf_counter()
    model = uk.train(factory(0), bundle.train, recipe, seed=0, device=dev)
    sync(dev)
    layout = (
        "channels-last"
        if next(p for p in model.parameters() if p.dim() == 4).is_contiguous(
            memory_format=torch.channels_last
        )
        else "contiguous"
    )
    print(
        f"original: resnet18 {sum(p.numel() for p in model.parameters()):,} parameters, trained "
        f"1 epoch at {args.precision} in {time.perf_counter() - t0:.1f} s ({layout} weights)"
    )
    failed = []
    print(f"{'method':20s} {'seconds':>8s} {'steps':>6s} {'peak MB':>8s}  diverged")
    for name in uk.list_methods():
        config = {"max_steps": args.steps, **SHORT.get(name, {})}
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        try:
            out = uk.run_unlearning(
                model,
                task,
                name,
                config,
                seed=0,
                recipe=recipe,
                model_factory=factory,
                device=dev,
                precision=args.precision,
            )
            sync(dev)
        except Exception as exc:  # noqa: BLE001 - report every method, then fail
            failed.append(name)
            print(f"{name:20s} FAILED {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3, file=sys.stdout)
            continue
        print(
            f"{name:20s} {time.perf_counter() - t0:8.2f} {out.steps:6d} {peak_mb(dev):8.0f}  "
            f"{out.diverged}"
        )
    return failed


def bare_loop(model, x, y, epochs, batch_size, lr, seed, dev, dtype) -> None:
    """What a user writes by hand: shuffle, slice, copy to the device, autocast, step."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    scaler = torch.amp.GradScaler(dev.type) if dtype == torch.float16 else None
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x[idx].to(dev), y[idx].to(dev)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(xb), yb)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()


def check_throughput(args, dev: torch.device, width: dict) -> float:
    """Engine vs bare loop at ``args.precision``; returns the ratio of median throughputs."""
    bundle = cifar_like(args.throughput_samples, seed=1)
    x, y = bundle.train.x, bundle.train.y
    epochs, bs = 2, 256
    recipe = uk.TrainRecipe(epochs=epochs, batch_size=bs, lr=0.05, precision=args.precision)
    factory = uk.models.ModelFactory.for_bundle("resnet18", bundle, **width)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    channels_last = args.precision != "fp32" and dev.type == "cuda"

    def timed(fn) -> float:
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        return time.perf_counter() - t0

    def engine(seed: int) -> float:
        m = factory(seed).to(dev)
        return timed(lambda: uk.train(m, bundle.train, recipe, seed=seed))

    def bare(seed: int) -> float:
        m = factory(seed).to(dev)
        if channels_last:  # the same layout the engine picks, so only the loops differ
            m = m.to(memory_format=torch.channels_last)
        return timed(lambda: bare_loop(m, x, y, epochs, bs, 0.05, seed, dev, dtype))

    engine(0), bare(0)  # warm-up (cuDNN autotuning, allocator)
    t_engine, t_bare = [], []
    for r in range(args.repeats):
        if r % 2 == 0:
            t_engine.append(engine(r))
            t_bare.append(bare(r))
        else:
            t_bare.append(bare(r))
            t_engine.append(engine(r))
    steps = epochs * -(-len(y) // bs)
    me, mb = statistics.median(t_engine), statistics.median(t_bare)
    print(
        f"throughput, resnet18 at {args.precision}, batch {bs}, {steps} steps, {args.repeats} "
        f"interleaved repeats on {dev}:"
    )
    print(f"  bare loop: median {mb:.3f} s ({steps * bs / mb:,.0f} samples/s)")
    print(f"  engine   : median {me:.3f} s ({steps * bs / me:,.0f} samples/s)")
    print(f"  engine / bare loop = {mb / me:.3f}x (target >= 0.95x)")
    return mb / me


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per method")
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--throughput-samples", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    ap.add_argument("--width", type=int, default=None, help="resnet18 width (default 64)")
    args = ap.parse_args()

    if args.device != "cpu" and not torch.cuda.is_available():
        print(f"no CUDA device on this machine (torch {torch.__version__}); nothing to check")
        return 0
    if "resnet18" not in uk.models.available():
        print(
            "resnet18 is not registered in unlearnkit.models (available: "
            f"{', '.join(uk.models.available())}); this check needs it"
        )
        return 1
    dev = check_device(args.device)
    check_precision(args.precision, dev)
    width = {"width": args.width} if args.width else {}
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"device {dev} ({name}), torch {torch.__version__}, precision {args.precision}")
    failed = check_methods(args, dev, width)
    check_throughput(args, dev, width)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print(f"all {len(uk.list_methods())} methods ran at {args.precision} on {dev}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

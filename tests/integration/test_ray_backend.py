"""``--backend ray``: the same rows as a local run, each reference trained once, killed workers
retried, failed tasks reported, a killed driver resumed, tuning workers sharing a study.

One two-CPU Ray cluster serves the whole module (starting one costs about ten seconds); the
tests that need it are skipped when Ray is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from unlearnkit.audit.runner import run_audit
from unlearnkit.bench.runner import run_benchmark
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.bench.store import open_existing

from .._helpers import run_cli
from .._image_folders import make_folder
from ..unit.audit_runner._tiny import FT, TINY, ULIRA_OPTIONS, N

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed")

#: One scenario, one method: Original, Retrain, Retrain' and finetune cells.
SPEC = {**TINY, "threads": 1, "scenarios": TINY["scenarios"][:1]}


def _timing(name: str) -> bool:
    """Metrics and record fields that are wall-clock times (they differ run to run)."""
    return "seconds" in name or name.startswith("rte") or name in ("provenance", "timings")


def _differences(a, b, path: str = "") -> list[str]:
    """Where two results differ, timings aside (NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a if not _timing(k) for d in _differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    try:
        same = np.array_equal(np.asarray(a), np.asarray(b))
    except (TypeError, ValueError):
        same = a == b
    return [] if same else [f"{path}: {a!r} != {b!r}"]


def _rows(out: Path) -> dict[str, tuple[dict, dict]]:
    with open_existing(out) as store:
        return {r.key: (r.metrics, r.record) for r in store.rows()}


class _KillOnce:
    """The spec's model factory, whose first call inside a Ray worker kills that worker's
    process (once: the marker file says it happened)."""

    def __init__(self, inner, marker: Path) -> None:
        self.inner, self.marker, self.driver = inner, marker, os.getpid()

    def __call__(self, seed: int):
        if os.getpid() != self.driver and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(seed)

    def describe(self):
        return self.inner.describe()


class _AlwaysFails:
    """A model factory that raises an unexpected error in every Ray worker."""

    def __init__(self, inner) -> None:
        self.inner, self.driver = inner, os.getpid()

    def __call__(self, seed: int):
        if os.getpid() != self.driver:
            raise OSError("the disk holding the data went away")
        return self.inner(seed)

    def describe(self):
        return self.inner.describe()


def _warm() -> int:
    import unlearnkit.audit.ray_backend  # noqa: F401
    import unlearnkit.bench.runner  # noqa: F401
    from unlearnkit.bench.ray_backend import warm_imports

    warm_imports()
    return os.getpid()


@pytest.fixture(scope="module")
def cluster():
    """A two-CPU Ray cluster for the module, its two workers already warm; its address."""
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need no tests/
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        warm = ray.remote(_warm)
        ray.get([warm.remote(), warm.remote()])
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("local-bench")
    summary = run_benchmark(spec_from_dict(SPEC), out)
    assert summary.computed == 4 and not summary.failures
    return out, summary


@needs_ray
def test_bench_equals_local_and_a_killed_worker_is_retried(cluster, local_bench, tmp_path):
    from unlearnkit.datasets import load

    spec = spec_from_dict(SPEC)
    factory = spec.model.factory_for(load(spec.dataset.name, **spec.dataset.options))
    marker = tmp_path / "killed-once"
    summary = run_benchmark(
        spec, tmp_path / "ray", backend="ray", model_factory=_KillOnce(factory, marker)
    )
    assert marker.exists()  # a worker died mid-run...
    assert not summary.failures  # ...its task ran again
    assert summary.computed == 4 and summary.trained == local_bench[1].trained == 3
    local, ray_rows = _rows(local_bench[0]), _rows(tmp_path / "ray")
    assert set(local) == set(ray_rows)
    for key in local:
        assert _differences(local[key], ray_rows[key]) == [], key


@needs_ray
def test_a_task_failing_every_try_is_recorded_not_dropped(cluster, tmp_path):
    from unlearnkit.datasets import load

    spec = spec_from_dict(SPEC)
    factory = spec.model.factory_for(load(spec.dataset.name, **spec.dataset.options))
    summary = run_benchmark(
        spec, tmp_path, backend="ray", max_retries=1, model_factory=_AlwaysFails(factory)
    )
    assert summary.computed == 0
    assert sorted(f[1] for f in summary.failures) == sorted(
        ["Original", "Retrain", "Retrain′ (noise floor)", "finetune"]
    )
    assert all("OSError: the disk holding the data went away" in f[3] for f in summary.failures)
    with open_existing(tmp_path) as store:
        assert store.count() == 0


_DRIVER = textwrap.dedent(
    """
    import json, os, signal, sys
    from unlearnkit.bench import store
    from unlearnkit.bench.runner import run_benchmark
    from unlearnkit.bench.spec import spec_from_dict

    put, written = store.ResultStore.put, []

    def put_then_die(self, row, identity=None):
        put(self, row, identity)
        written.append(row.key)
        if len(written) == 2:  # the driver dies right after its second row
            os.kill(os.getpid(), signal.SIGKILL)

    store.ResultStore.put = put_then_die
    spec = spec_from_dict(json.loads(sys.argv[1]))
    run_benchmark(spec, sys.argv[2], backend="ray", address=sys.argv[3])
    """
)


@needs_ray
def test_a_killed_driver_resumes_without_recomputing(cluster, local_bench, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    out = tmp_path / "run"
    spec = {**SPEC, "methods": [{"method": "finetune"}, {"method": "gradient_ascent"}]}
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(spec), str(out), cluster],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    before = _rows(out)
    assert len(before) == 2
    summary = run_benchmark(spec_from_dict(spec), out, backend="ray")
    assert (summary.reused, summary.computed, summary.failures) == (2, 3, [])
    after = _rows(out)
    assert len(after) == 5 and set(before) <= set(after)
    for key in before:  # the finished cells were not computed again
        assert _differences(before[key], after[key]) == []
    local = _rows(local_bench[0])
    for key in set(local) & set(after):
        assert _differences(local[key], after[key]) == [], key


@needs_ray
@pytest.mark.parametrize(
    "kind, options", [("epsilon", None), ("rmia", None), ("ulira", ULIRA_OPTIONS)]
)
def test_audit_equals_local(cluster, tmp_path, kind, options):
    spec = spec_from_dict({**TINY, "threads": 1})
    args = dict(method="finetune", kind=kind, n_models=N, config=FT, spec=spec, options=options)
    local = run_audit(out_dir=tmp_path / "local", **args)
    ray_ = run_audit(out_dir=tmp_path / "ray", backend="ray", **args)
    # every bank model trained once, though both rows need some (epsilon: the N Retrains)
    assert ray_["trained"] == local["trained"]
    assert ray_["unlearning_runs"] == local["unlearning_runs"]
    for part in ("metrics", "retrain", "record", "retrain_record"):
        assert _differences(local[part], ray_[part]) == [], part
    again = run_audit(out_dir=tmp_path / "ray", backend="ray", **args)
    assert again["reused"] and again["trained"] == 0


@needs_ray
@pytest.mark.parametrize(
    "kind, options", [("epsilon", None), ("rmia", None), ("ulira", ULIRA_OPTIONS)]
)
def test_audit_of_images_read_from_disk_equals_local(cluster, tmp_path, kind, options):
    # The tasks get the data as file lists (LazyImages pickle as their file names) and read
    # the images themselves, batch by batch: the folder must be where every node sees it.
    from unlearnkit.bench.ray_backend import pack, unpack
    from unlearnkit.datasets import load
    from unlearnkit.datasets._lazy import LazyImages

    root = make_folder(tmp_path / "imgs", n_train=24, n_test=12)
    folder = {"root": str(root), "val_fraction": 0.25}
    spec = spec_from_dict({**TINY, "threads": 1, "dataset": {"name": "image_folder", **folder}})
    bundle = load("image_folder", **folder)
    shipped = unpack(pack(bundle))
    assert isinstance(shipped.train.x, LazyImages) and shipped.fingerprint == bundle.fingerprint
    assert len(pack(bundle.train.x)) < bundle.train.x[:].numel()  # names, not pixels
    args = dict(method="finetune", kind=kind, n_models=N, config=FT, spec=spec, options=options)
    local = run_audit(out_dir=tmp_path / "local", **args)
    ray_ = run_audit(out_dir=tmp_path / "ray", backend="ray", **args)
    assert ray_["trained"] == local["trained"]
    for part in ("metrics", "retrain", "record", "retrain_record"):
        assert _differences(local[part], ray_[part]) == [], part


@needs_ray
def test_an_audit_whose_helpers_cannot_run_still_finishes(cluster, tmp_path):
    # Each task asks for the whole cluster: while a row runs (and is not waiting for a
    # result), no helper task can start, so the rows train the groups themselves (66 models:
    # two groups per request, the second one offered to a helper).
    spec = spec_from_dict({**TINY, "threads": 1, "resources": {"cpus": 2}})
    args = dict(method="finetune", kind="epsilon", n_models=66, config=FT, spec=spec)
    local = run_audit(out_dir=tmp_path / "local", **args)
    ray_ = run_audit(out_dir=tmp_path / "ray", backend="ray", **args)
    assert ray_["trained"] == local["trained"] == 2 * 66 + 1
    assert _differences(local["metrics"], ray_["metrics"]) == []


@needs_ray
def test_tune_workers_share_the_study(cluster, tmp_path):
    import optuna
    import ray

    from unlearnkit.bench.tune_store import open_storage
    from unlearnkit.bench.tuning import run_tuning
    from unlearnkit.methods.base import int_range, loguniform

    dataset = {**TINY["dataset"], "n_train": 600}
    spec = spec_from_dict({**SPEC, "dataset": dataset})
    # trials of a few tenths of a second, long enough for both workers to take some
    space = {"finetune": {"epochs": int_range(150, 200), "lr": loguniform(1e-3, 1e-2)}}
    ray.get([ray.remote(_warm).remote() for _ in range(2)])  # two idle workers, ready
    lines: list[str] = []
    results = run_tuning(
        spec,
        tmp_path,
        methods=["finetune"],
        n_trials=8,
        backend="ray",
        workers=2,
        heartbeat_s=1,
        search_spaces=space,
        echo=lines.append,
    )
    assert [len([t for t in r.trials if t.state == "complete"]) for r in results] == [8]
    trial_lines = [ln for ln in lines if ": Avg. Gap" in ln]
    assert len(trial_lines) == 8
    assert len([ln for ln in trial_lines if "] default " in ln]) == 1  # trial 0, queued once
    by_worker = {ln.split("]")[0] for ln in trial_lines}
    assert by_worker == {"[ray worker 1", "[ray worker 2"}, trial_lines
    stored = optuna.load_study(study_name="finetune@rnd", storage=open_storage(tmp_path))
    assert sorted(t.number for t in stored.trials) == list(range(8))


def test_without_ray_the_commands_exit_2_with_the_install_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    for args in (
        ["bench", "--quick", "--backend", "ray"],
        ["audit", "--method", "finetune", "--backend", "ray"],
        ["tune", "--quick", "--backend", "ray"],
    ):
        code, err = run_cli(*args, "--out", str(tmp_path / args[0]))
        assert code == 2, err
        assert err.strip() == (
            'error: --backend ray needs Ray, which is not installed: pip install -e ".[ray]"'
        )
        assert not (tmp_path / args[0]).exists()


def test_a_bad_backend_or_a_lone_address_exits_2(tmp_path):
    code, err = run_cli("bench", "--quick", "--backend", "spark", "--out", str(tmp_path))
    assert code == 2 and "--backend must be one of local, ray" in err
    code, err = run_cli("tune", "--quick", "--address", "auto", "--out", str(tmp_path))
    assert code == 2 and "--address needs --backend ray" in err
    args = ("audit", "--method", "finetune", "--backend", "ray", "--address", "head-node")
    code, err = run_cli(*args, "--out", str(tmp_path))
    assert code == 2 and "is not auto, HOST:PORT or ray://HOST:PORT" in err
    assert not tmp_path.joinpath("results.db").exists()


def test_spec_resources_set_each_task_and_are_checked():
    from unlearnkit.bench.ray_backend import RayOptions
    from unlearnkit.errors import ConfigError

    spec = spec_from_dict({**SPEC, "resources": {"cpus": 2, "gpus": 0.25}})
    opts = RayOptions.for_spec(spec, None, 3).task()
    assert (opts["num_cpus"], opts["num_gpus"], opts["max_retries"]) == (2.0, 0.25, 3)
    with pytest.raises(ConfigError, match=r"resources\.gpus must be a number >= 0"):
        spec_from_dict({**SPEC, "resources": {"gpus": -1}})
    with pytest.raises(ConfigError, match="needs GPUs for each task"):
        RayOptions.for_spec(spec_from_dict(SPEC), None, 2).check_device("cuda")

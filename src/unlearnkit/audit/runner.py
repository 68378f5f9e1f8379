"""Run the strong (tier C) audits, always beside the same audit of Retrain.

>>> from unlearnkit.audit.runner import run_audit
>>> result = run_audit(method="finetune", kind="epsilon", n_models=16, out_dir="runs/audit")
>>> result["metrics"]["F"], result["retrain"]["F"]  # the method and its Retrain ceiling

Three kinds, one module each:

* ``"epsilon"`` (:mod:`~unlearnkit.audit.epsilon`) — the NeurIPS-2023 challenge score: per-example
  ε and the H-score of N unlearning runs against N Retrains.
* ``"ulira"`` (:mod:`~unlearnkit.audit.ulira`) — U-LiRA on a bank of shadow models, each
  unlearning M random forget sets.
* ``"rmia"`` (:mod:`~unlearnkit.audit.rmia`) — offline RMIA of the unlearned model against a
  Retrain, with a bank of reference models.

What the banks train on (pool P, negatives H, population Z) and with which seeds is the audit
data plan of :mod:`~unlearnkit.audit.plan`; :class:`~unlearnkit.audit.session._Audit` holds one
call's resolved inputs and gives the kinds their models.

Every trained model (original, Retrains, shadows, U-LiRA retrains) is cached in
``out_dir/bank`` (:class:`~unlearnkit.audit.bank.OracleBank`; keys shared with the benchmark,
so a benchmark's original and Retrains are reused), and every result is a row of kind
``"audit"`` in ``out_dir/results.db``, keyed by a content hash of everything that determines
it. The Retrain control is its own row, keyed without the method, so it is computed once and
shared by every audited method.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bench.runner import provenance, spec_record
from ..bench.spec import BenchSpec, default_spec
from ..checks import check_device
from ..errors import ConfigError
from ..threads import limit_threads
from . import epsilon, rmia, ulira
from .bank import bank_key
from .plan import ALPHAS, AUDIT_VERSION, CI_ALPHA, KINDS, OPTION_DEFAULTS
from .session import _Audit

__all__ = ["ALPHAS", "AUDIT_VERSION", "CI_ALPHA", "KINDS", "OPTION_DEFAULTS", "run_audit"]

#: The module computing each kind: ``key_parts(audit)`` and ``compute(audit, method, control)``.
_KIND_MODULES = {"epsilon": epsilon, "ulira": ulira, "rmia": rmia}


def run_audit(
    *,
    method: str,
    kind: str,
    n_models: int,
    scenario: str | None = None,
    config: dict[str, Any] | None = None,
    preset: str | None = "digits",
    spec: BenchSpec | None = None,
    out_dir: str | Path,
    echo: Callable[[str], None] | None = None,
    device: torch.device | str | None = None,
    options: dict[str, Any] | None = None,
    threads: int | None = None,
    model_factory: Callable[[int], Any] | None = None,
    backend: str = "local",
    address: str | None = None,
    max_retries: int = 2,
    progress: Any = None,
) -> dict[str, Any]:
    """Audit ``method`` with a tier-C audit and the same audit of Retrain; store and return it.

    Args:
        method: registered method name or alias.
        kind: ``"epsilon"`` (NeurIPS-2023 ε / H-score), ``"ulira"`` or ``"rmia"``.
        n_models: N — unlearned and retrained models per side (epsilon), shadow splits
            (ulira, even) or reference models ``2R`` (rmia, even).
        scenario: name of one of the spec's scenarios (default: its first; ulira: random
            forget sets, so only a ``random`` scenario may be named, which sets the fraction).
        config: the method's config overrides, a flat dict of its fields (``--set`` values).
            Precedence: preset < the spec's ``method_config`` < the scenario's < ``config``.
        preset: a preset of the method; the default ``"digits"`` applies only when the method
            has it, any other name must exist.
        spec: the benchmark spec giving dataset, model, recipe, scenarios and seeds (default:
            the built-in digits spec).
        out_dir: run directory: ``results.db`` (rows of kind ``"audit"``) and ``bank/``.
        echo: progress callback (e.g. ``print``); default: the module logger.
        device: where to train and run (default: CPU, or where the factory builds models).
        options: kind-specific knobs, see :data:`OPTION_DEFAULTS`.
        threads: torch intra-op threads while the audit runs (the caller's setting is restored
            afterwards); default: the spec's ``threads`` (the built-in digits spec: 1; a spec
            without one leaves torch's setting). One thread suits the many small models an
            audit trains: on a busy 2-core machine, threads spinning at OpenMP barriers made the
            N = 64 digits epsilon audit take 674 s with 2 threads against 68 s with 1.
        model_factory: a function ``seed -> freshly initialised nn.Module`` (or a
            :class:`~unlearnkit.models.ModelFactory`) replacing the spec's model; the spec's
            ``model.checkpoint``, if any, is still the audited original.
        backend: ``"local"``, or ``"ray"``: the rows and the model banks run as tasks on the
            Ray cluster at ``address`` (default: a new one on this machine), each retried up
            to ``max_retries`` times; the rows equal the local ones
            (:mod:`unlearnkit.audit.ray_backend`).
        progress: a :class:`unlearnkit.progress.Progress`, told the models the audit needs
            (trained, found in the bank, or unlearned) as each is ready; with Ray, when the
            rows are done.

    Returns:
        A dict with ``kind``, ``method``, ``label``, ``access``, ``preset``, ``config``,
        ``scenario``, ``n_models``, ``key`` / ``control_key`` (store keys), ``metrics`` (the
        method's scalars), ``retrain`` (the Retrain control's scalars, same keys), ``record``
        / ``retrain_record`` (arrays, quantiles, provenance), ``reused`` (both rows came from
        the store), ``trained`` (models trained by this call), ``unlearning_runs``,
        ``timings`` (seconds: ``training``, ``unlearning``, ``scoring``, ``other``,
        ``total``) and ``out_dir``.

    Raises:
        ConfigError: unknown kind, method, preset, scenario, option or config key; ``n_models``
            below 2 (or odd for ulira/rmia, or 2 for rmia without ``options={"a": ...}``); a
            scenario the method does not support.
        DataError: data that cannot support the audit (e.g. no held-out points of a forgotten
            class for rmia).
    """
    t_start = time.perf_counter()
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1
    ):
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
    execute = None
    if backend != "local" or address is not None:
        from ..bench.ray_backend import check_backend
        from .ray_backend import AuditExecutor

        check_backend(backend, address)
        execute = AuditExecutor(spec if spec is not None else default_spec(), address, max_retries)
    device = check_device(device if device is not None or spec is None else spec.device)
    audit = _Audit.create(
        method=method,
        kind=kind,
        n_models=n_models,
        scenario=scenario,
        config=config,
        preset=preset,
        spec=spec,
        out_dir=out_dir,
        echo=echo,
        device=device,
        options=options,
        model_factory=model_factory,
    )
    audit.progress = progress
    audit.model_given = model_factory is not None
    if threads is None:
        threads = getattr(audit.spec, "threads", None)
    try:
        with limit_threads(threads):  # torch's pool and the BLAS/OpenMP ones alike
            result = _run(audit, execute)
    finally:
        audit.close()
    total = time.perf_counter() - t_start
    t = audit.timings
    t["total"] = total
    t["other"] = max(0.0, total - t["training"] - t["unlearning"] - t["scoring"])
    result["timings"] = dict(t)
    return result


def _run_meta(audit: _Audit) -> dict[str, Any]:
    """The spec, data set and provenance the report prints, for a folder no benchmark has
    described yet (a benchmark's own record, of the same context, is kept)."""
    if audit.store.get_meta("spec") is not None:
        return {}
    return {
        "spec": spec_record(audit.spec, audit.factory, audit.model_given),
        "dataset": audit.bundle.describe(),
        "provenance": provenance(),
    }


def _run(audit: _Audit, execute: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Both rows from the store, the missing ones computed by the kind's module and stored."""
    base = audit._base_key()
    kind = _KIND_MODULES[audit.kind]
    kind_parts = kind.key_parts(audit)
    control_key = bank_key(**base, **kind_parts, control="retrain")
    key = bank_key(
        **base,
        **kind_parts,
        method=audit.mspec.name,
        config=audit.cfg.to_dict(),
        control_key=control_key,
    )
    audit.store.admit(audit.context, dict(audit._identity(c) for c in (False, True)))
    audit.store.begin(audit.context, **_run_meta(audit))
    row, crow = audit._find(key), audit._find(control_key)
    if row is None or crow is None:
        audit.say(
            f"{audit.kind} audit of {audit.label} with N = {audit.n} "
            f"({'the method' if row is None else ''}"
            f"{' and ' if row is None and crow is None else ''}"
            f"{'the Retrain control' if crow is None else ''} to compute)"
        )
        total = kind.work(audit, row is None, crow is None)
        if audit.progress is not None:
            audit.progress.start(total)
        if execute is not None:  # another backend computes the missing rows
            m_part, c_part = execute(audit.kind, audit, row is None, crow is None)
        else:
            m_part, c_part = kind.compute(audit, row is None, crow is None)
        if audit.progress is not None:
            audit.progress.set(total, status="scored")
        if crow is None:
            c_metrics, c_record = c_part
            c_record = {**audit._record_base(), **c_record}
            audit._put(True, control_key, c_metrics, c_record)
            crow = audit._find(control_key)  # as stored (JSON round trip), like a reuse
        if row is None:
            m_metrics, m_record = m_part
            m_record = {
                **audit._record_base(),
                "method": audit.mspec.name,
                "preset": audit.preset,
                "config": audit.cfg.to_dict(),
                "config_overrides": audit.user_config,
                "access": audit.mspec.access_for(audit.cfg).label,
                "control_key": control_key,
                **m_record,
            }
            audit._put(False, key, m_metrics, m_record)
            row = audit._find(key)
        reused = False
    else:
        audit.say(f"{audit.kind} audit of {audit.label} (N = {audit.n}) found in the store")
        reused = True
    return {
        "kind": audit.kind,
        "method": audit.mspec.name,
        "label": audit.label,
        "access": audit.mspec.access_for(audit.cfg).label,
        "preset": audit.preset,
        "config": audit.cfg.to_dict(),
        "scenario": audit.scenario_name,
        "n_models": audit.n,
        "key": key,
        "control_key": control_key,
        "metrics": dict(row.metrics),
        "retrain": dict(crow.metrics),
        "record": row.record,
        "retrain_record": crow.record,
        "reused": reused,
        "trained": audit.trained,
        "unlearning_runs": audit.unlearning_runs,
        "out_dir": str(audit.out),
    }

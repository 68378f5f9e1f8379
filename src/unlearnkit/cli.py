"""The ``unlearnkit`` command line: a thin layer over the library.

Errors a user can cause end with exit code 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer
import yaml

from .bench.spec import yaml_error_line
from .errors import ConfigError, UnlearnKitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Machine unlearning for PyTorch classifiers, measured against retraining.",
    pretty_exceptions_enable=False,
)


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {' '.join(msg.split())}", err=True)
    raise typer.Exit(code)


def _yaml_value(key: str, raw: str) -> Any:
    """A ``--set`` value, parsed as YAML (``3``, ``0.1``, ``[1, 2]``, ``true``...)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {key}: cannot parse value {raw!r}: {yaml_error_line(exc)}"
        ) from None


_DEVICE_OPTION_HELP = (
    "Where to train and run: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps "
    "(default: the spec's device, else the CPU)."
)
_BACKEND_OPTION_HELP = (
    "local, or ray: run the work as tasks on a Ray cluster (Ray comes with the package's ray "
    "extra); the results equal a local run's."
)
_ADDRESS_OPTION_HELP = (
    "With --backend ray: the cluster, auto (the one 'ray start' runs here) or HOST:PORT "
    "(default: a new one on this machine)."
)
_PRECISION_OPTION_HELP = (
    "fp32, bf16 (mixed precision on CPUs and recent GPUs) or fp16 (CUDA only); sets the "
    "recipe's precision, part of the results' identity (default: the spec's, else fp32)."
)


def _run_device(spec: Any, device: str | None, precision: str | None) -> tuple[Any, Any]:
    """``(spec, device)``: the spec with ``--device``/``--precision`` applied, and its device
    resolved and checked against this machine and the precision (``None``: today's CPU)."""
    from .bench.spec import default_spec, with_run_settings
    from .checks import check_device, check_precision

    if precision is not None and spec is None:
        spec = default_spec()
    if spec is not None:
        spec = with_run_settings(spec, device=device, precision=precision)
        device = spec.device
    dev = check_device(device)
    check_precision(spec.precision if spec is not None else "fp32", dev)
    return spec, dev


def _parse_sets(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``method.key=value`` pairs into {method: {key: value}} (values parsed as YAML)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        key, raw = pair.split("=", 1)
        value = _yaml_value(key, raw)
        if "." not in key:
            raise ConfigError(
                f"--set key must be METHOD.FIELD (e.g. finetune.lr=0.01), got {key!r}"
            )
        method, field = key.split(".", 1)
        out.setdefault(method, {})[field] = value
    return out


@app.command()
def bench(
    spec_path: Path | None = typer.Argument(
        None, metavar="[SPEC]", help="YAML benchmark spec (default: the built-in digits spec)."
    ),
    quick: bool = typer.Option(False, "--quick", help="Smoke run: one seed, short training."),
    out: Path = typer.Option(
        Path("unlearnkit-results"), "--out", help="Run directory (results.db, report.md)."
    ),
    methods: str | None = typer.Option(
        None, "--methods", help="Comma-separated subset of methods to run."
    ),
    seeds: int | None = typer.Option(None, "--seeds", min=1, help="Number of replicates."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a method's config: METHOD.FIELD=VALUE (repeatable)."
    ),
    detail: bool = typer.Option(False, "--detail", help="Also print the detail tables."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="torch threads (default: the spec's setting)."
    ),
    relearn: bool = typer.Option(
        False,
        "--relearn",
        help="Add relearn time and the Anamnesis Index (short fine-tunes of every model).",
    ),
    device: str | None = typer.Option(None, "--device", help=_DEVICE_OPTION_HELP),
    precision: str | None = typer.Option(None, "--precision", help=_PRECISION_OPTION_HELP),
    configs: Path | None = typer.Option(
        None,
        "--configs",
        help="Tuned method configs: the tuned.yaml of 'unlearnkit tune' (default: the spec's).",
    ),
    backend: str = typer.Option("local", "--backend", help=_BACKEND_OPTION_HELP),
    address: str | None = typer.Option(None, "--address", help=_ADDRESS_OPTION_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="No progress; only the final summary."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also print which model trains now and other detail."
    ),
) -> None:
    """Run a benchmark (resumable), print the tables, write OUT/results.db and OUT/report.md."""
    from .bench.report import aggregate, tables_md
    from .bench.runner import run_benchmark
    from .bench.spec import MethodEntry, default_spec, load_spec
    from .bench.store import open_existing

    try:
        _check_backend(backend, address)
        spec = load_spec(spec_path) if spec_path is not None else default_spec()
        if quick:
            spec = spec.quick()
        if seeds is not None:
            spec = dataclasses.replace(spec, seeds=tuple(range(seeds)))
        if threads is not None:
            spec = dataclasses.replace(spec, threads=threads)
        if relearn:
            spec = dataclasses.replace(spec, relearn=True)
        overrides = _parse_sets(set_)
        if overrides:
            from .methods import get_method

            merged = {k: dict(v) for k, v in spec.overrides.items()}
            for m, kv in overrides.items():
                merged.setdefault(get_method(m).name, {}).update(kv)
            spec = dataclasses.replace(spec, overrides=merged)
        if methods is not None:
            wanted = [m.strip() for m in methods.split(",") if m.strip()]
            if not wanted:
                raise ConfigError(
                    f"--methods {methods!r} names no method; give a comma-separated list such "
                    "as finetune,salun ('unlearnkit methods' lists them)"
                )
            by_name = {e.method: e for e in spec.method_entries()}
            from .methods import get_method

            entries = []
            for w in wanted:
                name = get_method(w).name
                entries.append(by_name.get(name, MethodEntry(name)))
            spec = dataclasses.replace(spec, methods=tuple(entries))
        from .bench.configs import load_configs

        spec, configs_label = load_configs(spec, configs)
        spec, dev = _run_device(spec, device, precision)
        spec.validate()
        from .progress import Progress

        with Progress(desc="bench", unit="cells", quiet=quiet, verbose=verbose) as display:
            summary = run_benchmark(
                spec,
                out,
                echo=display.note,
                device=dev,
                configs=configs_label,
                backend=backend,
                address=address,
                progress=display,
            )
            if spec.proxy_check is not None and not summary.failures:
                _proxy_check(spec, out, dev, display.note)
        _refresh_report(out)
        with open_existing(out) as store:
            typer.echo(tables_md(aggregate(store), detail=detail))
    except UnlearnKitError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: finished cells are saved in {out}/results.db; run the same command "
            "again to resume",
            err=True,
        )
        raise typer.Exit(130) from None
    typer.echo(
        f"{summary.computed} cells computed, {summary.reused} reused, {summary.trained} models "
        f"trained in {summary.seconds:.1f} s; report: {out / 'report.md'}",
        err=True,
    )
    if summary.failures:
        for sc, label, rep, msg in summary.failures:
            typer.echo(f"failed: [{sc}] {label} replicate {rep}: {msg}", err=True)
        raise typer.Exit(1)


def _proxy_check(spec, out: Path, device, say) -> None:
    """The spec's retrain-free calibration check, into OUT/proxy-check.json (reused if done)."""
    from .bench.proxy_check import run_proxy_check

    pc = spec.proxy_check
    run_proxy_check(
        spec,
        out,
        methods=pc.methods,
        trials=pc.trials,
        budget_s=pc.budget_s,
        replicates=pc.replicates,
        say=say,
        device=device,
    )


@app.command()
def report(
    run_dir: Path = typer.Argument(..., metavar="DIR", help="A benchmark run directory."),
    fmt: str = typer.Option("md", "--format", help="md, html, json, csv or parquet."),
    long: bool = typer.Option(
        False,
        "--long",
        help="csv/json/parquet: one row per scenario, row, config and seed, every metric a "
        "column (fractions of 1, as evaluate() returns them).",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Write here instead of stdout (html default: DIR/report.html; parquet default: "
        "DIR/results-long.parquet or DIR/results-summary.parquet).",
    ),
) -> None:
    """Aggregate a results store: mean ± std per scenario and method, or every replicate."""
    from .bench.report import LEGACY_NOTE, render
    from .bench.store import open_existing
    from .report.long import export

    formats = ("md", "html", "json", "csv", "parquet")
    if fmt not in formats:
        _fail(f"unknown format {fmt!r}; use {', '.join(formats)}")
    if long and fmt in ("md", "html"):
        _fail(f"--long exports rows, not a {fmt} report; use --format csv, json or parquet")
    if output is None and fmt == "html":
        output = run_dir / "report.html"
    if output is None and fmt == "parquet":
        output = run_dir / f"results-{'long' if long else 'summary'}.parquet"
    try:
        with open_existing(run_dir) as store:
            if store.legacy:
                typer.echo(f"note: {LEGACY_NOTE}", err=True)
            body = export(store, fmt, long) if long or fmt == "parquet" else render(store, fmt)
    except UnlearnKitError as exc:
        _fail(str(exc))
    if output is None:
        typer.echo(body)
        return
    try:
        if isinstance(body, bytes):
            output.write_bytes(body)
        else:
            output.write_text(body if body.endswith("\n") else body + "\n", encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {output} ({exc.strerror or exc}); give another --output FILE")
    typer.echo(f"wrote {output}", err=True)


@app.command("methods")
def methods_cmd(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the registered methods with their access levels."""
    from .methods import get_method, list_methods

    rows = []
    for name in list_methods():
        spec = get_method(name)
        rows.append(
            {
                "name": name,
                "aliases": list(spec.aliases),
                "access": spec.access.level,
                "summary": spec.summary,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        alias = f" (aliases: {', '.join(r['aliases'])})" if r["aliases"] else ""
        typer.echo(f"{r['name']:<{width}}  {r['access']:<17}  {r['summary']}{alias}")


@app.command()
def describe(
    name: str = typer.Argument(..., help="Method name or alias."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a method's access level and every config field with its default."""
    from .methods import describe_method

    try:
        d = describe_method(name)
    except UnlearnKitError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(d, indent=1, default=str))
        return
    acc = d["access"]
    typer.echo(f"{d['name']}: {d['summary']}")
    if d["aliases"]:
        typer.echo(f"aliases: {', '.join(d['aliases'])}")
    typer.echo(f"access: {acc['level']}")
    flags = [k for k in ("needs_val", "needs_recipe", "needs_model_factory") if acc[k]]
    typer.echo(
        f"  reads forget: {acc['uses_forget']} (labels: {acc['forget_labels']}), reads retain: "
        f"{acc['uses_retain']} (labels: {acc['retain_labels']})"
        + (f", {', '.join(flags)}" if flags else "")
    )
    typer.echo(f"config ({d['config']}):")
    for f in d["fields"]:
        help_ = f"  # {f['help']}" if f["help"] else ""
        typer.echo(f"  {f['name']}: {f['type']} = {json.dumps(f['default'], default=str)}{help_}")
    if d["presets"]:
        typer.echo("presets:")
        helps = d.get("preset_help", {})
        for p, vals in d["presets"].items():
            help_ = f"  # {helps[p]}" if helps.get(p) else ""
            typer.echo(f"  {p}: {json.dumps(vals, default=str)}{help_}")
    if d["search_space"]:
        typer.echo("search space:")
        for k, v in d["search_space"].items():
            typer.echo(f"  {k}: {v}")


@app.command()
def audit(
    method: str = typer.Option(..., "--method", help="Method to audit (name or alias)."),
    kind: str = typer.Option("epsilon", "--kind", help="epsilon, ulira or rmia."),
    models: int = typer.Option(
        16,
        "--models",
        help="N: unlearned and retrained models (epsilon), shadow splits "
        "(ulira) or reference models (rmia).",
    ),
    scenario: str | None = typer.Option(
        None, "--scenario", help="Scenario name of the spec (default: its first)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override the method's config: FIELD=VALUE (repeatable)."
    ),
    spec_path: Path | None = typer.Option(
        None, "--spec", help="Benchmark spec (default: the built-in digits spec)."
    ),
    out: Path = typer.Option(Path("unlearnkit-results"), "--out", help="Run directory."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="torch threads (default: the spec's setting)."
    ),
    device: str | None = typer.Option(None, "--device", help=_DEVICE_OPTION_HELP),
    precision: str | None = typer.Option(None, "--precision", help=_PRECISION_OPTION_HELP),
    backend: str = typer.Option("local", "--backend", help=_BACKEND_OPTION_HELP),
    address: str | None = typer.Option(None, "--address", help=_ADDRESS_OPTION_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="No progress; only the final summary."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also print which models train now and other detail."
    ),
) -> None:
    """Run a strong audit (per-example epsilon, U-LiRA or RMIA) of a method beside the same
    audit of Retrain."""
    from .audit.report import format_audit_text
    from .audit.runner import run_audit
    from .bench.spec import load_spec

    try:
        _check_backend(backend, address)
        config: dict[str, Any] = {}
        for pair in set_:
            key, _, raw = pair.partition("=")
            if not _ or not key:
                raise ConfigError(f"--set expects FIELD=VALUE, got {pair!r}")
            config[key] = _yaml_value(key, raw)
        spec = load_spec(spec_path) if spec_path is not None else None
        spec, dev = _run_device(spec, device, precision)
        from .progress import Progress

        with Progress(desc="audit", unit="models", quiet=quiet, verbose=verbose) as display:
            result = run_audit(
                method=method,
                kind=kind,
                n_models=models,
                scenario=scenario,
                config=config,
                spec=spec,
                out_dir=out,
                echo=display.note,
                threads=threads,
                device=dev,
                backend=backend,
                address=address,
                progress=display,
            )
        _refresh_report(out)
    except UnlearnKitError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted: trained models are kept in the bank; rerun to resume", err=True)
        raise typer.Exit(130) from None
    typer.echo(format_audit_text(result))


def _check_backend(backend: str, address: str | None) -> None:
    from .bench.ray_backend import check_backend

    check_backend(backend, address)


def _register_commands() -> None:
    """The commands that live in their own modules (forget, tune)."""
    from .deletion.cli import forget_cmd

    app.command("forget")(forget_cmd)
    from .bench.tune_cli import tune_cmd

    app.command("tune")(tune_cmd)


_register_commands()


def _refresh_report(out: Path) -> None:
    """Rewrite OUT/report.md and OUT/report.html from the store (benchmark tables, plots,
    claims, audits), each atomically."""
    from .report.bench import write_reports

    write_reports(out)


def main() -> None:
    """Console-script entry point: every error a user can cause is one line and exit code 2
    (click's usage errors included, which it would print over several lines)."""
    _show_notices()
    try:
        code = app(standalone_mode=False, prog_name="unlearnkit")
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C or end of input outside a command's own handling
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors (typer's bundled click)
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(0)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        typer.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except UnlearnKitError as exc:  # anything a command did not catch itself
        typer.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


class _Notices(logging.Handler):
    """The library's warnings (divergence, partner reuse...) on the current stderr, one line
    each, each distinct message once per command (a search repeats them trial after trial)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = " ".join(record.getMessage().split())
            if msg in self.seen:
                return
            self.seen.add(msg)
            sys.stderr.write(f"{record.levelname.lower()}: {msg}\n")
        except Exception:  # noqa: BLE001 - logging must never break a command
            self.handleError(record)


def _show_notices() -> None:
    logger = logging.getLogger("unlearnkit")
    for h in [h for h in logger.handlers if isinstance(h, _Notices)]:
        logger.removeHandler(h)  # a fresh set of seen messages for every command
    logger.addHandler(_Notices(logging.WARNING))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    main()

"""``unlearnkit tune``: tune a benchmark's method configs on its validation split, locally or
on Ray (registered in ``cli.py``).

Exit codes: 0 done; 2 bad input (one line on stderr); 130 interrupted (finished trials are
kept: the same command resumes).
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["tune_cmd"]


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


def _fail(msg: str) -> None:
    typer.echo(f"error: {' '.join(str(msg).split())}", err=True)
    raise typer.Exit(2)


def _names(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        from ..errors import ConfigError

        raise ConfigError(f"{option} {text!r} names nothing; give a comma-separated list")
    return names


def _command(spec_path: Path | None, options: dict[str, object]) -> str:
    """The command as a user would type it (for the generated document)."""
    parts = ["unlearnkit", "tune"] + ([str(spec_path)] if spec_path is not None else [])
    for flag, value in options.items():
        if value is True:
            parts.append(flag)
        elif value not in (None, False):
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def tune_cmd(
    spec_path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[SPEC]", help="YAML benchmark spec (default: the built-in digits spec)."
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Smoke run: one seed, short training.")
    ] = False,
    methods: Annotated[
        str | None,
        typer.Option(help="Comma-separated methods (default: every method the spec runs)."),
    ] = None,
    trials: Annotated[
        int,
        typer.Option(
            help="Finished trials per method and scenario, the current config included; the "
            "same for every method. A larger number continues the stored studies."
        ),
    ] = 16,
    budget_s: Annotated[
        float | None,
        typer.Option(
            "--budget-s",
            help="Also stop each method's study once its trials have used this many seconds.",
        ),
    ] = None,
    scenarios: Annotated[
        str | None,
        typer.Option(help="Comma-separated scenario names (default: all of the spec's)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder of tune.db, tuned.yaml and tuning.md.")] = Path(
        "unlearnkit-tune"
    ),
    seeds: Annotated[
        int | None,
        typer.Option(help="Seed replicates each trial averages (default: all of the spec's)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler.")] = 0,
    bank: Annotated[
        Path | None,
        typer.Option(
            help="Model bank (default OUT/bank; a benchmark's OUT/bank shares its original models)."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads (default: the spec's setting).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Where to train and run: auto, cpu, cuda, cuda:N or mps.")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="local, or ray: Ray workers run the trials, sharing the studies (Ray comes "
            "with the package's ray extra)."
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="With --backend ray: the cluster, auto (the one 'ray start' runs here) or "
            "HOST:PORT (default: a new one on this machine)."
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="No progress; only the final table.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Also print every trial's score and config."),
    ] = False,
) -> None:
    """Tune method configs on the validation split (Optuna, resumable); write OUT/tuned.yaml
    (use it with 'unlearnkit bench SPEC --configs OUT/tuned.yaml') and OUT/tuning.md."""
    from ..checks import check_device
    from ..errors import UnlearnKitError
    from ..progress import Progress
    from .ray_backend import check_backend
    from .spec import default_spec, load_spec, with_run_settings
    from .tune_report import pruning_note, summary_table, write_outputs
    from .tuning import run_tuning

    options = {
        "--quick": quick,
        "--methods": methods,
        "--scenarios": scenarios,
        "--trials": trials,
        "--budget-s": budget_s,
        "--seeds": seeds,
        "--seed": seed or None,
        "--out": out,
    }
    try:
        check_backend(backend, address)
        spec = load_spec(spec_path) if spec_path is not None else default_spec()
        if quick:
            spec = spec.quick()
        if threads is not None:
            spec = dataclasses.replace(spec, threads=threads)
        spec = with_run_settings(spec, device=device)
        with Progress(desc="tune", unit="trials", quiet=quiet, verbose=verbose) as display:
            results = run_tuning(
                spec,
                out,
                methods=_names(methods, "--methods"),
                scenarios=_names(scenarios, "--scenarios"),
                n_trials=trials,
                budget_s=budget_s,
                replicates=seeds,
                seed=seed,
                bank_dir=bank,
                echo=display.note,
                device=check_device(spec.device),
                backend=backend,
                address=address,
                progress=display,
            )
        md, ym = write_outputs(out, spec, results, _command(spec_path, options))
    except UnlearnKitError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _echo(
            f"interrupted: finished trials are saved in {out / 'tune.db'}; run the same command "
            "again to resume"
        )
        raise typer.Exit(130) from None
    typer.echo(f"Tuned configs of {spec.name} (validation Avg. Gap, pp):\n")
    typer.echo(summary_table(results))
    typer.echo("\n" + pruning_note(results))
    bench = _command(spec_path, {"--quick": quick, "--configs": ym}).replace(" tune", " bench", 1)
    _echo(f"wrote {ym} and {md}; run the tuned configs with: {bench}")

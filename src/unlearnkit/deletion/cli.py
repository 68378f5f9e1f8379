"""``unlearnkit forget``: a deletion request from the command line (registered in ``cli.py``).

Exit codes: 0 the unlearned model passes every acceptance criterion; 3 it was written but does
not pass (the report says which criterion failed and what to try); 2 bad input (one line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

__all__ = ["forget_cmd"]


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


def _fail(msg: str) -> None:
    typer.echo(f"error: {' '.join(str(msg).split())}", err=True)
    raise typer.Exit(2)


def _recipe(path: Path | None):
    """The training recipe of ``--recipe`` (TrainRecipe fields in YAML), or None."""
    if path is None:
        return None
    from ..bench.spec import read_yaml
    from ..methods.config import build_dataclass
    from ..training import TrainRecipe

    data = read_yaml(path, "--recipe")
    return build_dataclass(TrainRecipe, data if data is not None else {}, "recipe")


class _Progress:
    """Calibration progress on stderr (:class:`unlearnkit.progress.Progress`): seconds of the
    budget used, trials so far and the method being calibrated."""

    def __init__(self, budget_s: float, quiet: bool) -> None:
        from ..progress import Progress

        self.trials = 0
        self.display = Progress(budget_s, desc="calibrating", unit="s", quiet=quiet)

    def __call__(self, info: dict[str, Any]) -> None:
        self.trials += 1
        elapsed = float(info.get("elapsed_s", self.display.done))
        status = f"trial {self.trials}, {info.get('method', '')}"
        self.display.set(elapsed, status=status)

    def close(self) -> None:
        self.display.close()


def forget_cmd(
    model: str = typer.Option(
        ...,
        "--model",
        help="Import path PKG.MODULE:FACTORY of the class or function that "
        "builds your nn.Module (imported from the current directory or PYTHONPATH).",
    ),
    model_kwargs: str = typer.Option(
        "{}", "--model-kwargs", help="JSON object of keyword arguments for FACTORY."
    ),
    checkpoint: Path = typer.Option(
        ...,
        "--checkpoint",
        help="The trained state dict: .safetensors, or a torch file loaded "
        "with weights_only=True (never an arbitrary unpickle).",
    ),
    data: str = typer.Option(
        ...,
        "--data",
        help="The training data the model saw: CSV, Parquet, NPZ (x, y, ids), an "
        "image folder (one sub-folder per class) or PKG.MODULE:FUNCTION returning a Dataset.",
    ),
    held_out: str = typer.Option(
        ...,
        "--held-out",
        help="Data the model never saw, from the same distribution (its "
        "validation or test split), in the same form; half calibrates, half grades the result.",
    ),
    label_column: str = typer.Option("y", "--label-column", help="Label column (CSV/Parquet)."),
    id_column: str = typer.Option("id", "--id-column", help="ID column (CSV/Parquet)."),
    forget_ids: Path | None = typer.Option(
        None,
        "--forget-ids",
        help="Text/CSV file of the IDs to delete, one per line (image "
        "folders: paths relative to the folder; NPZ/Dataset without ids: row positions).",
    ),
    forget_class: list[str] = typer.Option(
        [], "--forget-class", help="Delete a whole class instead (repeatable)."
    ),
    method: str = typer.Option(
        "auto",
        "--method",
        help="auto (calibrate every method the data permits, equal budgets, "
        "keep the best) or a method name ('unlearnkit methods').",
    ),
    budget_s: float = typer.Option(
        60.0, "--budget-s", help="Calibration budget in seconds (wall clock)."
    ),
    trials: int | None = typer.Option(
        None,
        "--trials",
        min=1,
        help="Also stop each method's search after N trials (equal trial budgets; with an "
        "ample --budget-s the result no longer depends on the machine's speed).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds the held-out split, the search and the run."),
    zero_shot: bool = typer.Option(
        False, "--zero-shot", help="--data holds only the rows to delete: forget-only methods."
    ),
    reference: str = typer.Option(
        "none",
        "--reference",
        help="none, or retrain: also retrain without the rows (needs "
        "--recipe) and add the retrain-referenced gaps to the report.",
    ),
    recipe: Path | None = typer.Option(
        None, "--recipe", help="YAML training recipe (TrainRecipe fields) for --reference retrain."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output folder: model.safetensors, evidence.json, report.md, "
        "report.html, calibration.db (re-running resumes the calibration).",
    ),
    previous: Path | None = typer.Option(
        None,
        "--previous",
        help="The folder of the earlier request whose model.safetensors is --checkpoint "
        "(found automatically when the checkpoint sits in it): chains the requests.",
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."
    ),
    precision: str = typer.Option(
        "fp32", "--precision", help="fp32, bf16 (CPU or recent GPUs) or fp16 (CUDA only)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Delete rows (or classes) from your own trained model, with evidence for an auditor.

    Exit 0: passed; 3: written but not passed (see report.md); 2: bad input.
    """
    from ..bench.lock import RunLock
    from ..errors import UnlearnKitError
    from .chain import check_link, find_previous, load_previous
    from .inputs import read_ids
    from .model_io import build_model, load_checkpoint, sha256_file
    from .report import verdict_sentence
    from .request import forget

    progress = None
    created = not out.exists()
    try:
        if out.exists() and not out.is_dir():
            raise _bad(f"--out {out} is a file, not a folder; give a folder path")
        if not (budget_s > 0) or budget_s != budget_s or budget_s == float("inf"):
            raise _bad(f"--budget-s must be a positive number of seconds, got {budget_s}")
        if reference not in ("none", "retrain"):
            raise _bad(f"--reference must be none or retrain, got {reference!r}")
        if (forget_ids is None) == (not forget_class):
            raise _bad("give --forget-ids FILE or --forget-class LABEL (one of them)")
        try:
            kwargs = json.loads(model_kwargs)
        except json.JSONDecodeError as exc:
            raise _bad(
                f"--model-kwargs is not valid JSON: {exc.msg} at column {exc.colno}"
            ) from None
        if not isinstance(kwargs, dict):
            raise _bad(f"--model-kwargs must be a JSON object, got {model_kwargs!r}")
        net = build_model(model, kwargs)
        if not checkpoint.is_file():
            raise _bad(f"--checkpoint {checkpoint} not found")
        load_checkpoint(net, checkpoint)
        ckpt_sha = sha256_file(checkpoint)
        if previous is None:
            previous = find_previous(checkpoint)
        if previous is not None:
            check_link(load_previous(previous), ckpt_sha)
        ids = read_ids(forget_ids, id_column=id_column) if forget_ids is not None else None
        rec = _recipe(recipe)
        if reference == "retrain" and rec is None:
            raise _bad("--reference retrain needs --recipe RECIPE.yaml (how the model was trained)")

        def factory(s: int):
            import torch

            torch.manual_seed(s)
            return build_model(model, kwargs)

        with RunLock(out, "forget"):
            progress = _Progress(budget_s, quiet)
            result = forget(
                net,
                data=data,
                held_out=held_out,
                forget_ids=ids,
                forget_classes=forget_class or None,
                method=method,
                budget_s=budget_s,
                trials=trials,
                seed=seed,
                zero_shot=zero_shot,
                label_column=label_column,
                id_column=id_column,
                storage=out / "calibration.db",
                recipe=rec,
                model_factory=factory,
                reference=reference,
                progress=progress,
                previous=previous,
                device=device,
                precision=precision,
            )
            progress.close()
            paths = result.save(out, input_sha256=ckpt_sha)
    except UnlearnKitError as exc:
        if progress is not None:
            progress.close()
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a request refused before any work leaves nothing behind
        _fail(str(exc))
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        _echo(
            f"interrupted: the calibration so far is kept in {out / 'calibration.db'}; run the "
            "same command again to resume"
        )
        raise typer.Exit(130) from None
    _echo(f"wrote {paths['model']}, {paths['evidence']}, {paths['report_md']}, "
          f"{paths['report_html']}")  # fmt: skip
    _echo(verdict_sentence(result.evidence))
    raise typer.Exit(0 if result.passed else 3)


def _bad(msg: str):
    from ..errors import ConfigError

    return ConfigError(msg)

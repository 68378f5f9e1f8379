"""The command line's table of bad inputs: every one ends with exit code 2 and one line on
stderr (no traceback), and leaves an existing results folder byte for byte as it was.

Each row builds its input in a fresh copy of a finished results folder (``D``) and a scratch
folder (``T``), runs the console entry point in-process, and compares the folders before and
after. The API's half of the table is ``test_bad_inputs_api.py``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .._helpers import run_cli
from .test_cli import TINY_SPEC
from .test_run_identity import snapshot

SPEC = {**TINY_SPEC, "seeds": [0], "methods": [TINY_SPEC["methods"][0]]}


@dataclass
class Ctx:
    D: Path  # a finished results folder of SPEC
    T: Path  # scratch
    spec: Path  # SPEC as YAML

    def write_spec(self, name: str, data=None, *, text: str | None = None, raw=None) -> str:
        p = self.T / name
        if raw is not None:
            p.write_bytes(raw)
        elif text is not None:
            p.write_text(text)
        else:
            p.write_text(yaml.safe_dump(data))
        return str(p)

    def spec_with(self, **changes) -> str:
        return self.write_spec("changed.yaml", {**SPEC, **changes})

    def recipe_with(self, **changes) -> str:
        return self.spec_with(recipe={**SPEC["recipe"], **changes})

    def db(self) -> Path:
        return self.D / "results.db"


def _garble(c: Ctx) -> None:
    data = bytearray(c.db().read_bytes())
    data[len(data) // 2 : len(data) // 2 + 2048] = b"\xa5" * 2048  # a page in the middle
    data[:16] = b"garbage garbage!"  # and the header
    c.db().write_bytes(bytes(data))


def _bad_json_row(c: Ctx) -> None:
    con = sqlite3.connect(c.db())
    con.execute("UPDATE cells SET metrics = '{not json' WHERE rowid = 1")
    con.commit()
    con.close()


def _wrong_schema(c: Ctx) -> None:
    c.db().unlink()
    con = sqlite3.connect(c.db())
    con.execute("CREATE TABLE cells (key TEXT, something TEXT)")
    con.commit()
    con.close()


def _other_app_db(c: Ctx) -> None:
    c.db().unlink()
    con = sqlite3.connect(c.db())
    con.execute("CREATE TABLE users (id INTEGER)")
    con.commit()
    con.close()


def _empty_db(c: Ctx) -> None:
    c.db().write_bytes(b"")


def _not_sqlite(c: Ctx) -> None:
    c.db().write_text("these are my notes, not a database\n" * 20)


def _file(c: Ctx) -> str:
    p = c.T / "afile"
    p.write_text("keep me")
    return str(p)


def _readonly(c: Ctx, monkeypatch) -> None:
    # root may write anywhere, so the refusal is exercised through os.access
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m, **k: False if Path(p) == c.D and m & os.W_OK else real(p, m)
    )


Row = tuple[str, Callable[[Ctx], list[str]], Callable[..., None] | None, str]

ROWS: list[Row] = [
    # -- the results folder --
    ("out-is-a-file", lambda c: ["bench", str(c.spec), "--out", _file(c)], None, "is a file"),
    ("out-under-a-file", lambda c: ["bench", str(c.spec), "--out", _file(c) + "/sub"], None,
     "under the file"),
    ("out-read-only", lambda c: ["bench", str(c.spec), "--out", str(c.D)], _readonly,
     "not writable"),
    ("audit-out-is-a-file", lambda c: ["audit", "--method", "finetune", "--spec", str(c.spec),
                                       "--models", "2", "--out", _file(c)], None, "is a file"),
    ("garbled-db-bench", lambda c: ["bench", str(c.spec), "--out", str(c.D)], _garble,
     "not a usable"),
    ("garbled-db-report", lambda c: ["report", str(c.D)], _garble, "not a usable"),
    ("bad-json-row-bench", lambda c: ["bench", str(c.spec), "--out", str(c.D)], _bad_json_row,
     "cannot be read"),
    ("bad-json-row-report", lambda c: ["report", str(c.D)], _bad_json_row, "cannot be read"),
    ("wrong-schema-bench", lambda c: ["bench", str(c.spec), "--out", str(c.D)], _wrong_schema,
     "table layout"),
    ("wrong-schema-report", lambda c: ["report", str(c.D)], _wrong_schema, "table layout"),
    ("other-apps-db", lambda c: ["report", str(c.D)], _other_app_db, "other tables"),
    ("empty-db-report", lambda c: ["report", str(c.db())], _empty_db, "empty (0 bytes)"),
    ("empty-db-bench", lambda c: ["bench", str(c.spec), "--out", str(c.D)], _empty_db,
     "empty (0 bytes)"),
    ("text-file-as-db", lambda c: ["report", str(c.db())], _not_sqlite, "not a usable"),
    ("report-missing", lambda c: ["report", str(c.T / "nothing-here")], None,
     "no results store"),
    ("report-format", lambda c: ["report", str(c.D), "--format", "xml"], None, "unknown format"),
    ("another-run", lambda c: ["bench", c.recipe_with(epochs=9), "--out", str(c.D)], None,
     "recipe.epochs 8 -> 9"),
    # -- the spec file --
    ("spec-missing", lambda c: ["bench", str(c.T / "nope.yaml")], None, "not found"),
    ("spec-is-a-folder", lambda c: ["bench", str(c.T)], None, "is a folder"),
    ("spec-not-utf8", lambda c: ["bench", c.write_spec("latin.yaml", raw="name: café\n"
                                                       .encode("latin-1"))], None, "UTF-8"),
    ("spec-binary", lambda c: ["bench", c.write_spec("bin.yaml", raw=b"\x00\x01\x02name")], None,
     "binary"),
    ("spec-yaml-error", lambda c: ["bench", c.write_spec("y.yaml", text="a: [1, 2\nb: 3\n")],
     None, "line 2, column 2"),
    ("spec-a-list", lambda c: ["bench", c.write_spec("l.yaml", text="- 1\n- 2\n")], None,
     "mapping"),
    ("spec-unknown-key", lambda c: ["bench", c.spec_with(epochs=3)], None, "unknown spec key"),
    ("seeds-abc", lambda c: ["bench", c.spec_with(seeds="abc")], None, "seeds"),
    ("seeds-1.5", lambda c: ["bench", c.spec_with(seeds=1.5)], None, "seeds"),
    ("seeds-huge", lambda c: ["bench", c.spec_with(seeds=10**6)], None, "100"),
    ("seeds-repeat", lambda c: ["bench", c.spec_with(seeds=[0, 0])], None, "repeat"),
    ("dataset-a-string", lambda c: ["bench", c.spec_with(dataset="digits")], None, "mapping"),
    ("model-a-string", lambda c: ["bench", c.spec_with(model="mlp")], None, "mapping"),
    ("unknown-dataset", lambda c: ["bench", c.spec_with(dataset={"name": "imagenet9"})], None,
     "imagenet9"),
    ("unknown-arch", lambda c: ["bench", c.spec_with(model={"arch": "resnet999"})], None,
     "resnet999"),
    ("epochs-typo", lambda c: ["bench", c.recipe_with(epochs=1_000_000_000)], None,
     "recipe.epochs"),
    ("recipe-lr-nan", lambda c: ["bench", c.recipe_with(lr=float("nan"))], None, "recipe.lr"),
    ("no-scenarios", lambda c: ["bench", c.spec_with(scenarios=[])], None, "no scenarios"),
    ("class-99", lambda c: ["bench", c.spec_with(scenarios=[{"name": "c", "scenario": "class",
                                                            "classes": [99]}]),
                            "--out", str(c.D)], None, "99"),
    ("hard-models-odd", lambda c: ["bench", c.spec_with(scenarios=[
        {"name": "h", "fraction": 0.1, "hard": True, "hard_models": 3}])], None, "hard_models"),
    ("threads-string", lambda c: ["bench", c.spec_with(threads="many")], None, "threads"),
    # -- options --
    ("methods-comma", lambda c: ["bench", str(c.spec), "--methods", ",", "--out", str(c.D)],
     None, "names no method"),
    ("methods-unknown", lambda c: ["bench", str(c.spec), "--methods", "nosuch"], None, "nosuch"),
    ("set-nan", lambda c: ["bench", str(c.spec), "--set", "finetune.weight_decay=nan",
                           "--out", str(c.D)], None, "weight_decay"),
    ("set-inf", lambda c: ["bench", str(c.spec), "--set", "finetune.lr=.inf",
                           "--out", str(c.D)], None, "lr"),
    ("set-unknown-field", lambda c: ["bench", str(c.spec), "--set", "finetune.nosuch=1"], None,
     "nosuch"),
    ("set-no-dot", lambda c: ["bench", str(c.spec), "--set", "lr=1"], None, "METHOD.FIELD"),
    ("set-no-equals", lambda c: ["bench", str(c.spec), "--set", "finetune.lr"], None,
     "KEY=VALUE"),
    ("set-yaml-error", lambda c: ["bench", str(c.spec), "--set", "finetune.lr=[1"], None,
     "cannot parse"),
    ("set-epochs-huge", lambda c: ["bench", str(c.spec), "--set", "finetune.epochs=10000000000"],
     None, "epochs"),
    ("threads-zero", lambda c: ["bench", "--threads", "0"], None, "--threads"),
    ("seeds-option-zero", lambda c: ["bench", "--seeds", "0"], None, "--seeds"),
    ("unknown-option", lambda c: ["bench", "--nosuch"], None, "--nosuch"),
    ("unknown-command", lambda c: ["benchmark"], None, "benchmark"),
    ("describe-unknown", lambda c: ["describe", "nosuch"], None, "nosuch"),
    ("audit-kind", lambda c: ["audit", "--method", "finetune", "--kind", "lira",
                              "--out", str(c.D)], None, "lira"),
    ("audit-method", lambda c: ["audit", "--method", "nosuch", "--out", str(c.D)], None,
     "nosuch"),
    ("audit-models-1", lambda c: ["audit", "--method", "finetune", "--models", "1",
                                  "--out", str(c.D)], None, "at least 2"),
    ("audit-set-nan", lambda c: ["audit", "--method", "finetune", "--set", "lr=nan",
                                 "--spec", str(c.spec), "--out", str(c.D)], None, "lr"),
    ("audit-scenario", lambda c: ["audit", "--method", "finetune", "--spec", str(c.spec),
                                  "--scenario", "nope", "--out", str(c.D)], None, "nope"),
]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("finished")
    spec = base / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    code, err = _run(["bench", str(spec), "--out", str(base / "D")])
    assert code == 0, err
    return base / "D", spec


def _run(argv: list[str]) -> tuple[int, str]:
    return run_cli(*argv)


def test_the_table_has_at_least_sixty_rows_with_the_api_half():
    from .test_bad_inputs_api import ROWS as API_ROWS

    assert len(ROWS) >= 25 and len(ROWS) + len(API_ROWS) >= 60


@pytest.mark.parametrize("name, argv, setup, needle", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_exits_2_with_one_line(finished, tmp_path, monkeypatch, name, argv, setup,
                                         needle):  # fmt: skip
    D, spec = finished
    c = Ctx(D=tmp_path / "D", T=tmp_path / "T", spec=spec)
    shutil.copytree(D, c.D)
    c.T.mkdir()
    if setup is not None:
        setup(c, monkeypatch) if setup is _readonly else setup(c)
    args = argv(c)
    before_d, before_t = snapshot(c.D), snapshot(c.T)
    code, err = _run(args)
    assert code == 2, f"{name}: exit {code}\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}:\n{err}"
    assert "Traceback" not in err
    assert needle in lines[0], f"{name}: {lines[0]!r} does not name {needle!r}"
    assert snapshot(c.D) == before_d, f"{name}: the results folder changed"
    assert snapshot(c.T) == before_t, f"{name}: the user's files changed"

"""Small helpers shared by the tests."""

from __future__ import annotations

import io
import sys

import pytest


def run_cli(*args: str) -> tuple[int, str]:
    """Run the ``unlearnkit`` console entry point in-process: (exit code, stderr)."""
    from unlearnkit.cli import main

    old = sys.argv, sys.stderr, sys.stdout
    sys.argv, sys.stderr, sys.stdout = ["unlearnkit", *args], io.StringIO(), io.StringIO()
    try:
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, sys.stderr.getvalue()
    finally:
        sys.argv, sys.stderr, sys.stdout = old


def one_line(exc_type, fn, *args, match: str | None = None, **kwargs) -> str:
    """Call ``fn``; it must raise ``exc_type`` with a one-line message (matching ``match``)."""
    with pytest.raises(exc_type, match=match) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip(), msg
    return msg

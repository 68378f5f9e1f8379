"""The one progress display (unlearnkit.progress): a bar on a terminal, plain timed lines in a
log, nothing when quiet."""

from __future__ import annotations

import io

from unlearnkit import progress as prog
from unlearnkit.progress import Progress


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_log_gets_one_readable_line_every_few_seconds(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(prog.time, "perf_counter", clock)
    out = io.StringIO()
    p = Progress(10, desc="bench", unit="cells", stream=out, tty=False, every_s=5)
    for i in range(9):
        clock.t += 1.0  # one cell a second
        p.update(status=f"[class-3] salun, replicate {i % 3}")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1  # 9 s, one line every 5 s, not one per cell
    assert (
        lines[0]
        == "bench: 5/10 cells (50 %), 0:05 elapsed, ~0:05 left; now [class-3] salun, replicate 1"
    )
    clock.t += 1.0
    p.update(status="[class-3] ssd, replicate 0")  # the last unit always writes a line
    assert out.getvalue().splitlines()[-1].startswith("bench: 10/10 cells (100 %), 0:10 elapsed;")


def test_quiet_writes_nothing_and_notes_need_verbose():
    out = io.StringIO()
    p = Progress(2, desc="audit", stream=out, tty=False, every_s=0, quiet=True)
    p.update(status="x")
    p.note("training the original model")
    p.update()
    assert out.getvalue() == "" and p.done == 2
    loud = Progress(2, desc="audit", stream=out, tty=False, every_s=1e9, verbose=True)
    loud.note("epoch 3: loss 0.41")
    quiet_notes = Progress(2, desc="audit", stream=io.StringIO(), tty=False, every_s=1e9)
    quiet_notes.note("hidden")
    assert out.getvalue() == "epoch 3: loss 0.41\n" and quiet_notes.stream.getvalue() == ""


def test_a_terminal_gets_a_bar_with_the_status(monkeypatch):
    out = io.StringIO()
    with Progress(4, desc="tune", unit="trials", stream=out, tty=True) as p:
        p.update(2, status="finetune")
        p.set(4, status="salun")
    text = out.getvalue()
    assert "tune:" in text and "4/4 trials" in text and "salun" in text
    assert p._bar is None  # closed by the context manager


def test_budget_progress_counts_seconds_and_stops_at_the_total():
    out = io.StringIO()
    p = Progress(60, desc="calibrating", unit="s", stream=out, tty=False, every_s=0)
    p.set(75, status="trial 12, neggrad_plus")
    assert p.done == 60 and "60/60 s (100 %)" in out.getvalue()

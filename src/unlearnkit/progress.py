"""One progress display for every long command (``bench``, ``audit``, ``tune``, ``forget``).

On a terminal it is a ``tqdm`` bar redrawn in place: done / total, elapsed and estimated
remaining time, and what runs now (scenario, method, replicate). Anywhere else (a CI log, a
file) it writes one plain line every few seconds instead of a redraw per step, so a log stays
readable. ``quiet=True`` shows nothing; only the command's final summary is printed then.

>>> p = Progress(3, desc="bench", unit="cells", quiet=True)
>>> p.update(status="[class-3] salun, replicate 0")
>>> p.done, p.status
(1, '[class-3] salun, replicate 0')
>>> p.close()
"""

from __future__ import annotations

import sys
import time
from typing import IO

__all__ = ["Progress"]


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of ``total`` units of work on ``stream`` (default: stderr).

    Args:
        total: units of work (cells, trials, seconds of budget); may be set later with
            :meth:`start` once a plan is known.
        desc: the command's name, the start of every line.
        unit: what a unit is (shown in plain lines and on the bar).
        quiet: show nothing.
        verbose: also show :meth:`note` lines (per-model and per-epoch detail).
        stream: where to write (default ``sys.stderr``).
        tty: force the terminal (bar) or log (lines) form; default: ``stream.isatty()``.
        every_s: seconds between plain lines in the log form.
    """

    def __init__(
        self,
        total: float | None = None,
        *,
        desc: str = "",
        unit: str = "cells",
        quiet: bool = False,
        verbose: bool = False,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        every_s: float = 5.0,
    ) -> None:
        self.desc, self.unit, self.quiet, self.verbose = desc, unit, quiet, verbose
        self.stream = stream if stream is not None else sys.stderr
        is_tty = getattr(self.stream, "isatty", lambda: False)()
        self.tty = bool(is_tty if tty is None else tty)
        self.every_s = float(every_s)
        self.total: float | None = None
        self.done: float = 0
        self.status = ""
        self.t0 = time.perf_counter()
        self._last_line = self.t0
        self._bar = None
        if total is not None:
            self.start(total)

    # -- the plan -----------------------------------------------------------------------------
    def start(self, total: float) -> None:
        """Set the amount of work (the bar appears on a terminal)."""
        self.total = float(total)
        if self.quiet or not self.tty or self._bar is not None:
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=self.total,
            desc=self.desc,
            unit=f" {self.unit}",
            file=self.stream,
            mininterval=0.5,
            bar_format="{desc}: {bar} {n:.0f}/{total:.0f}{unit} [{elapsed}<{remaining}] {postfix}",
        )

    # -- advancing ----------------------------------------------------------------------------
    def update(self, n: float = 1, *, status: str | None = None) -> None:
        """``n`` more units done; ``status`` says what runs now."""
        self.set(self.done + n, status=status)

    def set(self, done: float, *, status: str | None = None) -> None:
        """Set the units done so far (e.g. seconds of a time budget)."""
        self.done = done if self.total is None else min(done, self.total)
        if status is not None:
            self.status = status
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self.status, refresh=False)
            self._bar.update(self.done - self._bar.n)
            return
        now = time.perf_counter()
        finished = self.total is not None and self.done >= self.total
        if now - self._last_line >= self.every_s or finished:
            self._last_line = now
            self._write(self.line(now))

    def note(self, msg: str) -> None:
        """A detail line (which model trains now, an epoch's loss): shown with ``verbose``."""
        if self.verbose and not self.quiet:
            self._write(msg)

    def line(self, now: float | None = None) -> str:
        """The plain progress line: done / total, percent, elapsed, remaining, status."""
        now = time.perf_counter() if now is None else now
        elapsed = now - self.t0
        parts = [f"{self.done:.0f}"]
        if self.total:
            pct = 100.0 * self.done / self.total
            parts = [f"{self.done:.0f}/{self.total:.0f} {self.unit} ({pct:.0f} %)"]
        else:
            parts[0] += f" {self.unit}"
        parts.append(f"{_clock(elapsed)} elapsed")
        if self.total and 0 < self.done < self.total:
            parts.append(f"~{_clock(elapsed * (self.total - self.done) / self.done)} left")
        text = ", ".join(parts)
        if self.status:
            text += f"; now {self.status}"
        return f"{self.desc}: {text}" if self.desc else text

    def _write(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.write(msg, file=self.stream)
        else:
            print(msg, file=self.stream, flush=True)

    def close(self) -> None:
        """Remove the bar (a terminal) and stop; safe to call twice."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

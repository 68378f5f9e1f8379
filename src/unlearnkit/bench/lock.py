"""One writer per results folder: an advisory lock on ``DIR/.lock``.

Two ``bench`` or ``audit`` processes on one folder would both compute every missing cell. The
second one to arrive is refused at once with a line naming the holder (the lock is the
operating system's, so a killed process releases it; a file a killed process leaves behind is
simply locked again). The file is removed on release, so a folder looks the same before and
after a run that was refused.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from types import TracebackType

from ..errors import DataError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking, as before
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderBusyError", "RunLock", "writable_folder"]


class FolderBusyError(DataError):
    """Another unlearnkit process is writing into this results folder."""


def writable_folder(folder: Path) -> Path:
    """``folder``, created if needed; DataError when it is a file, under a file, or not
    writable (the checks a results folder needs before anything is computed)."""
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--out {folder} is a file, not a folder; give a folder path")
    for parent in folder.parents:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"--out {folder} lies under the file {parent}; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the results folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"the results folder {folder} is not writable; use another --out")
    return folder


class RunLock:
    """``with RunLock(out, "bench"): ...`` holds ``out/.lock`` for the block."""

    def __init__(self, folder: str | Path, command: str) -> None:
        self.folder, self.command = Path(folder), command
        self._fd: int | None = None
        self._path = self.folder / ".lock"

    def __enter__(self) -> RunLock:
        path = writable_folder(self.folder) / ".lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise FolderBusyError(
                    f"{self.folder} is in use by {holder}; wait for it to finish or use another "
                    "--out DIR"
                ) from None
            try:  # the holder we waited on may have removed the file as we opened it
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"unlearnkit {self.command} (pid {os.getpid()}, since {stamp})".encode())
        self._fd, self._path = fd, path
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)  # removed while held: the folder is left as it was
            os.close(self._fd)  # closing releases the lock
            self._fd = None

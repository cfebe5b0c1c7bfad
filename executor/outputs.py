"""Every file evac writes goes through here: checked before the work, written atomically after it.

`check_writable(path, what)` runs before a command does anything costly (solving, collecting,
migrating), so an output that can never be written is refused with exit 2 while nothing is lost.
`write_atomic(path, data, what)` writes a temporary file in the target's directory, fsyncs it and
renames it over the target (`os.replace`): a reader sees the old file or the new one, never half of
either, and a failed write (disk full, I/O error) leaves the target untouched. A target that is not
a regular file (`/dev/stdout`, a FIFO, `/dev/full`) cannot be replaced by a rename — renaming over
a device node would destroy it — so it is written in place, and a failure is still exit 2.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from planner.errors import Problem, UsageError


class OutputError(UsageError):
    """An output evac cannot write (exit 2), said in one line: `plan -o: /x/p.json: directory /x does not exist`."""

    def __init__(self, what: str, path: Path, message: str) -> None:
        super().__init__(what, [Problem(str(path), message)])

    def __str__(self) -> str:
        return f"{self.what}: {self.problems[0]}"


def _refuse(what: str, path: Path, message: str) -> OutputError:
    return OutputError(what, path, message)


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def check_writable(path: Path, what: str) -> None:
    """Raises `OutputError` (exit 2) unless `path` can be created or replaced: its directory exists
    and is writable, and it is not a directory itself."""
    target = Path(os.path.realpath(path))  # a symlink's target is what gets written
    if target.is_dir():
        raise _refuse(what, path, "is a directory; give a file name")
    if target.exists() and not target.is_file():
        if not os.access(target, os.W_OK):
            raise _refuse(what, path, "cannot be written (permission denied)")
        return  # a device or FIFO: written in place
    parent = target.parent
    if not parent.is_dir():
        raise _refuse(what, path, f"directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _refuse(what, path, f"directory {parent} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise _refuse(what, path, "exists and cannot be overwritten (permission denied)")


def check_writable_dir(path: Path, what: str) -> None:
    """Like `check_writable` for a directory evac will create (parents too) and write files into."""
    existing = Path(os.path.realpath(path))
    if existing.exists() and not existing.is_dir():
        raise _refuse(what, path, "exists and is not a directory")
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise _refuse(what, path, f"{existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _refuse(what, path, f"directory {existing} is not writable")


def write_atomic(path: Path, data: str | bytes, what: str) -> None:
    """Writes `data` to `path` all at once or not at all; raises `OutputError` (exit 2) naming the
    reason when the write fails, with the previous content of `path` intact."""
    check_writable(path, what)
    raw = data.encode() if isinstance(data, str) else data
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        try:
            with open(target, "wb") as f:
                f.write(raw)
                f.flush()
        except OSError as e:
            raise _refuse(what, path, f"cannot be written: {_reason(e)}") from None
        return
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else _default_mode()
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        tmp = ""
        _fsync_dir(target.parent)
    except OSError as e:
        raise _refuse(what, path, f"cannot be written: {_reason(e)}") from None
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _default_mode() -> int:
    """What `open(path, "w")` would give a new file: 0o666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Makes the rename itself durable (POSIX: the directory entry lives in the directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""Files written whole or not at all: every file the toolkit writes for the user (figures, JSON)
goes to a temporary file in the same directory and is renamed into place (``os.replace``, atomic on
one file system), so a full disk, a crash or a signal never leaves a partial file or damages the file
that was there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from ufm.errors import OutputError

#: Temporary files being written now: the command's signal handler removes them before it exits.
PENDING: set[str] = set()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def free_bytes(directory: str | Path) -> int:
    """The bytes an unprivileged user may still write on the disk of ``directory``."""
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None], size: int | None = None) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, flush it to disk, then rename it
    to ``path`` (mode 0666 less the umask, as ``open`` would give). On any failure the temporary file
    is removed, ``path`` is as it was, and :class:`ufm.errors.OutputError` names the path and the fix.
    ``size``: the bytes ``write`` will write, where known; if the disk has less free (plus a margin
    of 64 KiB for the file system's own blocks), nothing is written and the error says how much is
    needed."""
    path = Path(path)
    if size is not None:
        try:
            free = free_bytes(path.parent)
        except OSError:
            free = None
        if free is not None and free < size + 2 ** 16:
            raise OutputError(f"{path} was not written: it needs {size / 2 ** 20:.2f} MiB and its disk has "
                              f"{free / 2 ** 20:.2f} MiB free; the file there, if any, is unchanged; free "
                              "space on that disk or write elsewhere")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        PENDING.add(tmp)
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        PENDING.discard(tmp)
        tmp = None
    except OSError as err:
        raise OutputError(f"{path} was not written ({err.strerror or err}); the file there, if any, is "
                          "unchanged; free space on that disk or write elsewhere") from None
    finally:
        if tmp is not None:
            PENDING.discard(tmp)
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """:func:`write_atomically` of ``data``, its size checked against the disk's free space first."""
    return write_atomically(path, lambda out: out.write(data), size=len(data))


def write_text_atomically(path: str | Path, text: str) -> Path:
    """:func:`write_atomically` of ``text`` in UTF-8 (its size checked against the free space first)."""
    return write_bytes_atomically(path, text.encode("utf-8"))


def remove_pending() -> None:
    """Remove the temporary files still being written (a signal ends the process mid-write)."""
    for tmp in list(PENDING):
        try:
            os.unlink(tmp)
        except OSError:
            pass
    PENDING.clear()

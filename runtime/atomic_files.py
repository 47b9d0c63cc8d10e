"""Files that are complete or absent: written beside their target, fsynced, then renamed over it.

A kill at any moment leaves either the previous file or the new one, never half of one (``os.replace``
is atomic on POSIX within one file system, and the temporary file lives in the target's own folder).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable

PARTIAL_PREFIX = ".partial-"
PARTIAL_SUFFIX = ".tmp"


def partial_name(prefix: str = PARTIAL_PREFIX) -> str:
    """A temporary name no other process or host picks: ``<prefix><host>-<pid>-<random>.tmp``."""
    return f"{prefix}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"


def fsync_folder(folder: Path) -> None:
    """Make a rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], prefix: str = PARTIAL_PREFIX) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then atomically put it in place.

    On any error (disk full; a kill is not an error: it simply never reaches the rename) the
    temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / partial_name(prefix)
    try:
        with open(partial, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    fsync_folder(target.parent)


def write_json(path: str | os.PathLike, record: Any) -> None:
    """``record`` as indented JSON at ``path``, atomically."""
    atomic_write(path, lambda file: file.write(json.dumps(record, indent=2).encode()))


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON at ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None

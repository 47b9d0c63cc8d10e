"""Files that are complete or absent: written beside their target, fsynced, then renamed over it.

A kill at any moment leaves either the previous file or the new one, never half of one (``os.replace``
is atomic on POSIX within one file system, and the temporary file lives in the target's own folder).
Temporary names carry the writer's host and pid (``<prefix><host>-<pid>-<random>.tmp``), so the
leftovers of a killed writer are recognised and removed (``remove_dead_partials``) while a live
writer's are kept. The one implementation of this pattern: checkpoints, data caches, run status and
sweep records all write through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

PARTIAL_PREFIX = ".partial-"
PARTIAL_SUFFIX = ".tmp"


def process_alive(pid: int) -> bool:
    """Whether a process of this host still runs (a partial file of a live writer must not be removed).

    A zombie (killed, not yet reaped by its parent) runs no more; pid 0 and below name no process (``kill(0, 0)``
    would signal this process's own group)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]  # the name before ")" may hold spaces
    except (OSError, IndexError):
        return True  # no /proc here: kill(pid, 0) is all there is to go on
    return state not in ("Z", "X")  # zombie, dead


def partial_name(prefix: str = PARTIAL_PREFIX) -> str:
    """A temporary name no other process or host picks: ``<prefix><host>-<pid>-<random>.tmp``."""
    return f"{prefix}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"


def remove_dead_partials(folder: str | os.PathLike, prefix: str = PARTIAL_PREFIX) -> list[Path]:
    """Delete the temporary files and folders ``<prefix><host>-<pid>-...`` that dead processes of this host left."""
    host_prefix = f"{prefix}{socket.gethostname()}-"
    removed = []
    with contextlib.suppress(OSError):
        for partial in Path(folder).glob(f"{host_prefix}*"):
            pid = partial.name[len(host_prefix) :].split("-")[0]
            if not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
                continue
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def fsync_folder(folder: Path) -> None:
    """Make a rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(partial: Path, target: Path, replace: bool) -> None:
    """Rename over ``target``, or (``replace=False``) hard-link into place and keep a file another process
    published first: a reader may have it mapped."""
    if replace:
        os.replace(partial, target)
        return
    try:
        os.link(partial, target)
    except FileExistsError:
        pass  # another process was first; its file holds the same content
    except OSError:  # a file system without hard links
        if not target.exists():
            os.replace(partial, target)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], prefix: str = PARTIAL_PREFIX, replace: bool = True) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then atomically put it in place.

    On any error (disk full; a kill is not an error: it simply never reaches the rename) the
    temporary file is removed and ``path`` is untouched. ``replace=False``: an existing ``path`` wins.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / partial_name(prefix)
    try:
        with open(partial, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        _publish(partial, target, replace)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    fsync_folder(target.parent)


def atomic_folder(folder: str | os.PathLike, fill: Callable[[Path], None], prefix: str = PARTIAL_PREFIX) -> bool:
    """Call ``fill(partial)`` on a temporary folder beside ``folder``, then rename it into place.

    Returns False when another process published ``folder`` meanwhile (the caller decides whether
    that one is usable); the temporary folder is removed in every case.
    """
    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / partial_name(prefix)
    try:
        fill(partial)
        try:
            os.rename(partial, target)  # atomic: the folder appears complete or not at all
        except OSError:
            if not target.exists():
                raise
            return False
        fsync_folder(target.parent)
        return True
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def write_json(path: str | os.PathLike, record: Any) -> None:
    """``record`` as indented JSON at ``path``, atomically."""
    atomic_write(path, lambda file: file.write(json.dumps(record, indent=2).encode()))


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON at ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None

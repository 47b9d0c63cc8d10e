"""One writer per run folder: ``<run folder>/run.lock``, held by the job's first process while the command runs.

Two ``fit --ckpt_path last`` of the same run started together would otherwise both attach to it and write
the same ``last.ckpt``, ``status.json`` and W&B run id. The lock is a file created with ``link(2)`` of a
complete temporary file (atomic, also on NFS), holding who has it: pid, host, start time, the process's
start tick (a reused pid is told apart) and the SLURM job. A second process gets ``RunFolderHeld`` (one
line naming the folder and the holder, exit code 2, nothing written). A lock whose holder is gone is taken
over, said in one line: a pid of this host that no longer runs, or an earlier start of this same SLURM job
(a requeue: SLURM ends every task of the job before it starts it again).

Why a pid file and not ``flock``: a kernel lock vanishes with its process (no stale locks), but on the
file systems clusters share it is not reliably cluster-wide (Lustre mounted ``localflock`` or ``noflock``,
BeeGFS without global locks, NFS depending on the lock daemon): two nodes could both "hold" it. A file
created with ``link`` is exclusive on all of them; its cost is a stale lock when a process dies on
another host, whose pid this process cannot check. So the holder refreshes the file's time every
``HEARTBEAT_S`` (a daemon thread), and a lock of another host left unrefreshed for ``stale_after_s()``
(``MEPS_RUN_LOCK_STALE_S``, 15 minutes: far beyond the clock skew of a cluster's hosts) is taken over; before
that the command refuses, and the line says which file to remove once that process is known to be gone.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import NamedTuple

from runtime.atomic_files import partial_name, process_alive
from runtime.errors import BadInput
from runtime.slurm import restart_count, slurm_job_key

LOCK_FILE = "run.lock"
HEARTBEAT_S = 60.0
"""How often the holder refreshes its lock file's time (a holder on another host is judged by that time)."""
STALE_AFTER_ENV = "MEPS_RUN_LOCK_STALE_S"


def stale_after_s() -> float:
    """A lock of another host unrefreshed for this long is stale: ``MEPS_RUN_LOCK_STALE_S``, else 15 minutes."""
    return float(os.environ.get(STALE_AFTER_ENV) or 900.0)


TAKEOVER_GRACE_S = 60.0
"""A ``run.lock.takeover`` marker older than this was left by a process that died while taking a lock over."""


class RunFolderHeld(BadInput):
    """Another process writes this run folder: exit code 2, like any command that cannot start as given."""


def process_start_tick(pid: int) -> str | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``), or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the command name before ")" may hold spaces


class LockHolder(NamedTuple):
    """Who holds a run folder: what ``run.lock`` says."""

    pid: int
    host: str
    started: float
    start_tick: str | None = None
    slurm_job: str | None = None
    slurm_restart: int = 0

    @classmethod
    def this_process(cls) -> LockHolder:
        pid = os.getpid()
        return cls(pid, socket.gethostname(), time.time(), process_start_tick(pid), slurm_job_key(), restart_count())

    @classmethod
    def read(cls, path: Path) -> LockHolder | None:
        """The holder a lock file names; None when the file is gone or is not a lock this code wrote."""
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        job = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"pid {self.pid} on {self.host}{job}, since {when}"

    def gone(self, me: LockHolder, unrefreshed_s: float = 0.0) -> str | None:
        """Why this holder no longer runs (so its lock is stale), or None when it may still run. ``unrefreshed_s``:
        how long ago the lock file's time was refreshed (a live holder does so every ``HEARTBEAT_S``)."""
        if self.slurm_job and self.slurm_job == me.slurm_job and self.slurm_restart < me.slurm_restart:
            return f"SLURM job {self.slurm_job} was requeued (restart {self.slurm_restart} -> {me.slurm_restart})"
        if self.host != me.host:  # its pid cannot be checked from here: its heartbeat can
            if unrefreshed_s > stale_after_s():
                return f"its lock was not refreshed for {unrefreshed_s:.0f} s; a live holder refreshes it every {HEARTBEAT_S:.0f} s"
            return None
        if self.pid != me.pid and not process_alive(self.pid):
            return f"pid {self.pid} no longer runs"
        tick = me.start_tick if self.pid == me.pid else process_start_tick(self.pid)
        if None not in (tick, self.start_tick) and tick != self.start_tick:  # a container restarted gets the same pids
            return f"pid {self.pid} is another process now"
        return None  # it runs (this very process included: a lock it has not released yet)


class RunLock:
    """This process's hold on a run folder; ``took_over``: the line saying whose stale lock it replaced, if any."""

    def __init__(self, folder: Path, holder: LockHolder, took_over: str | None = None) -> None:
        self.folder, self.path, self.holder, self.took_over = folder, folder / LOCK_FILE, holder, took_over
        self._released = threading.Event()
        threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        """Refresh the lock file's time every ``HEARTBEAT_S`` while held: proof of life for other hosts."""
        while not self._released.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass  # gone or unreachable for a moment: the next beat tries again

    def release(self) -> None:
        """Remove the lock file if it is still this process's (idempotent)."""
        self._released.set()
        if LockHolder.read(self.path) == self.holder:
            self.path.unlink(missing_ok=True)


def publish(path: Path, holder: LockHolder, replace: bool = False) -> bool:
    """Write ``holder`` to ``path`` complete or not at all; without ``replace`` only if no file is there."""
    temporary = path.with_name(partial_name(f".{path.name}-"))
    temporary.write_text(json.dumps(holder._asdict()))
    try:
        if replace:
            os.replace(temporary, path)
            return True
        os.link(temporary, path)  # atomic and exclusive, NFS included (O_EXCL is not on old NFS clients)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


def take_over(path: Path, stale: LockHolder, me: LockHolder) -> bool:
    """Replace the lock of ``stale`` with ``me``'s, unless it changed meanwhile; one process at a time does this
    (``run.lock.takeover``, created exclusively), so two processes that found the same stale lock never both win."""
    marker = path.with_name(f"{path.name}.takeover")
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            if time.time() - marker.stat().st_mtime > TAKEOVER_GRACE_S:
                marker.unlink(missing_ok=True)  # its writer died half-way
        except OSError:
            pass
        return False
    try:
        return LockHolder.read(path) == stale and publish(path, me, replace=True)
    finally:
        os.close(fd)
        marker.unlink(missing_ok=True)


def take_run_lock(folder: str | os.PathLike, attempts: int = 50) -> RunLock:
    """Hold ``folder`` (created if needed) for this process, or raise ``RunFolderHeld`` naming the holder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path, me = folder / LOCK_FILE, LockHolder.this_process()
    for _ in range(attempts):
        if publish(path, me):
            return RunLock(folder, me)
        holder = LockHolder.read(path)
        if holder is None:
            if path.exists() and time.time() - path.stat().st_mtime > 5:
                raise RunFolderHeld(f"run folder {folder} is locked by {path}, which names no process: remove it if none writes there")
            time.sleep(0.1)  # gone meanwhile (released), or not readable yet: try again
            continue
        try:
            unrefreshed_s = time.time() - path.stat().st_mtime
        except OSError:
            continue  # released meanwhile: try again
        reason = holder.gone(me, unrefreshed_s)
        if reason is None:
            later = f"; it is taken over once unrefreshed for {stale_after_s():.0f} s" if holder.host != me.host else ""
            raise RunFolderHeld(
                f"run folder {folder} is in use by {holder.describe()}: wait for it to end"
                f" (if that process is gone, e.g. its node crashed, remove {path}{later})"
            )
        if take_over(path, holder, me):
            return RunLock(folder, me, f"run folder {folder}: took over the lock of {holder.describe()} ({reason})")
        time.sleep(0.1)
    raise RunFolderHeld(f"run folder {folder}: could not take {path} (other processes keep taking it over)")

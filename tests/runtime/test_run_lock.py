"""The run folder lock (runtime/run_lock.py): taken, refused while held, taken over from a dead holder, released."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.run_lock import LOCK_FILE, LockHolder, RunFolderHeld, take_run_lock


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    """The pid of a process of this host that runs for the whole test (not pytest's parent: under a container's
    init pytest may be pid 1, whose parent is pid 0)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def write_holder(folder, **fields) -> None:
    holder = LockHolder.this_process()._replace(**fields)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(json.dumps(holder._asdict()))


def test_take_creates_the_folder_and_names_this_process(tmp_path):
    lock = take_run_lock(tmp_path / "runs" / "abc")
    holder = LockHolder.read(tmp_path / "runs" / "abc" / LOCK_FILE)
    assert holder is not None and holder.pid == os.getpid() and lock.took_over is None
    lock.release()
    assert not (tmp_path / "runs" / "abc" / LOCK_FILE).exists() and (tmp_path / "runs" / "abc").is_dir()
    lock.release()  # idempotent


def test_a_live_holder_is_refused_in_one_line(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_holder(tmp_path, pid=parent.pid, start_tick=None)
        with pytest.raises(RunFolderHeld, match=rf"run folder {tmp_path} is in use by pid {parent.pid} on ") as refused:
            take_run_lock(tmp_path)
        assert "\n" not in str(refused.value) and f"remove {tmp_path / LOCK_FILE}" in str(refused.value)
        assert LockHolder.read(tmp_path / LOCK_FILE).pid == parent.pid  # untouched
    finally:
        parent.kill()
        parent.wait()


def test_a_lock_this_process_holds_is_refused_to_a_second_take(tmp_path):
    first = take_run_lock(tmp_path)
    with pytest.raises(RunFolderHeld, match=f"pid {os.getpid()}"):
        take_run_lock(tmp_path)
    first.release()
    take_run_lock(tmp_path).release()


def test_a_dead_holder_is_taken_over_and_said(tmp_path):
    pid = dead_pid()
    write_holder(tmp_path, pid=pid)
    lock = take_run_lock(tmp_path)
    assert lock.took_over is not None and f"pid {pid} no longer runs" in lock.took_over and "\n" not in lock.took_over
    assert LockHolder.read(tmp_path / LOCK_FILE) == lock.holder
    assert not (tmp_path / f"{LOCK_FILE}.takeover").exists()


def test_a_reused_pid_is_taken_over(tmp_path, live_pid):
    write_holder(tmp_path, pid=live_pid, start_tick="1")  # alive, but started at another tick than recorded
    lock = take_run_lock(tmp_path)
    assert lock.took_over is not None and "is another process now" in lock.took_over


def test_a_holder_on_another_host_is_refused(tmp_path):
    write_holder(tmp_path, pid=dead_pid(), host="another-node")
    with pytest.raises(RunFolderHeld, match="on another-node"):
        take_run_lock(tmp_path)


def test_a_requeued_slurm_job_takes_over_its_previous_start(tmp_path, monkeypatch, live_pid):
    monkeypatch.setattr("runtime.run_lock.slurm_job_key", lambda: "4242")
    monkeypatch.setattr("runtime.run_lock.restart_count", lambda: 1)
    write_holder(tmp_path, pid=live_pid, host="node-7", slurm_job="4242", slurm_restart=0)  # alive here: pid says nothing
    lock = take_run_lock(tmp_path)
    assert "SLURM job 4242 was requeued (restart 0 -> 1)" in lock.took_over
    write_holder(tmp_path, pid=live_pid, host="node-7", slurm_job="4243", slurm_restart=0)  # another job: its own run
    with pytest.raises(RunFolderHeld):
        take_run_lock(tmp_path)


def test_release_leaves_a_lock_that_another_process_took(tmp_path, live_pid):
    lock = take_run_lock(tmp_path)
    write_holder(tmp_path, pid=live_pid)
    lock.release()
    assert (tmp_path / LOCK_FILE).exists()


def test_an_unreadable_lock_is_not_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text("not json")
    os.utime(tmp_path / LOCK_FILE, (0, 0))
    with pytest.raises(RunFolderHeld, match="names no process"):
        take_run_lock(tmp_path)


def test_a_lock_of_an_earlier_process_with_this_pid_is_taken_over(tmp_path):
    """A container started again runs its processes under the same pids: the start tick tells them apart."""
    write_holder(tmp_path, start_tick="1")  # this pid, another start
    lock = take_run_lock(tmp_path)
    assert f"pid {os.getpid()} is another process now" in lock.took_over


def test_a_killed_holder_not_yet_reaped_is_taken_over(tmp_path):
    """A SIGKILLed holder whose parent has not reaped it (a zombie) runs no more: its lock is stale."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        os.kill(proc.pid, signal.SIGKILL)
        for _ in range(200):  # until the kernel has made it a zombie (not reaped: no wait() yet)
            if Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                break
            time.sleep(0.05)
        write_holder(tmp_path, pid=proc.pid, start_tick=None)
        lock = take_run_lock(tmp_path)
        assert lock.took_over is not None and f"pid {proc.pid} no longer runs" in lock.took_over
    finally:
        proc.wait()


def test_a_lock_naming_pid_0_is_stale(tmp_path):
    """pid 0 names no process (kill(0, 0) would signal this process's own group and look alive)."""
    write_holder(tmp_path, pid=0, start_tick=None)
    assert "pid 0 no longer runs" in take_run_lock(tmp_path).took_over


def test_a_holder_on_another_host_is_taken_over_once_its_heartbeat_stops(tmp_path, monkeypatch):
    """Another host's pid cannot be checked from here; its heartbeat can: a live holder refreshes the lock file's
    time every HEARTBEAT_S, so a lock unrefreshed for MEPS_RUN_LOCK_STALE_S is stale (a node lost, a pod restarted
    elsewhere), and one refreshed within it is not."""
    monkeypatch.setenv("MEPS_RUN_LOCK_STALE_S", "600")
    write_holder(tmp_path, pid=dead_pid(), host="another-node")
    recently = time.time() - 300
    os.utime(tmp_path / LOCK_FILE, (recently, recently))
    with pytest.raises(RunFolderHeld, match="taken over once unrefreshed for 600 s"):
        take_run_lock(tmp_path)
    long_ago = time.time() - 700
    os.utime(tmp_path / LOCK_FILE, (long_ago, long_ago))
    lock = take_run_lock(tmp_path)
    assert re.search(r"its lock was not refreshed for 7\d\d s", lock.took_over), lock.took_over
    lock.release()


def test_the_holder_refreshes_its_lock(tmp_path, monkeypatch):
    monkeypatch.setattr("runtime.run_lock.HEARTBEAT_S", 0.05)
    lock = take_run_lock(tmp_path)
    try:
        long_ago = time.time() - 10_000
        os.utime(tmp_path / LOCK_FILE, (long_ago, long_ago))
        deadline = time.monotonic() + 30
        while time.time() - (tmp_path / LOCK_FILE).stat().st_mtime > 5_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.time() - (tmp_path / LOCK_FILE).stat().st_mtime < 5_000  # refreshed by the heartbeat thread
    finally:
        lock.release()
    assert not (tmp_path / LOCK_FILE).exists()

"""The run folder lock (runtime/run_lock.py): taken, refused while held, taken over from a dead holder, released."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runtime.run_lock import LOCK_FILE, LockHolder, RunFolderHeld, take_run_lock


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


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


def test_a_reused_pid_is_taken_over(tmp_path):
    write_holder(tmp_path, pid=os.getppid(), start_tick="1")  # alive, but started at another tick than recorded
    lock = take_run_lock(tmp_path)
    assert lock.took_over is not None and "is another process now" in lock.took_over


def test_a_holder_on_another_host_is_refused(tmp_path):
    write_holder(tmp_path, pid=dead_pid(), host="another-node")
    with pytest.raises(RunFolderHeld, match="on another-node"):
        take_run_lock(tmp_path)


def test_a_requeued_slurm_job_takes_over_its_previous_start(tmp_path, monkeypatch):
    monkeypatch.setattr("runtime.run_lock.slurm_job_key", lambda: "4242")
    monkeypatch.setattr("runtime.run_lock.restart_count", lambda: 1)
    write_holder(tmp_path, pid=os.getppid(), host="node-7", slurm_job="4242", slurm_restart=0)  # alive here: pid says nothing
    lock = take_run_lock(tmp_path)
    assert "SLURM job 4242 was requeued (restart 0 -> 1)" in lock.took_over
    write_holder(tmp_path, pid=os.getppid(), host="node-7", slurm_job="4243", slurm_restart=0)  # another job: its own run
    with pytest.raises(RunFolderHeld):
        take_run_lock(tmp_path)


def test_release_leaves_a_lock_that_another_process_took(tmp_path):
    lock = take_run_lock(tmp_path)
    write_holder(tmp_path, pid=os.getppid())
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

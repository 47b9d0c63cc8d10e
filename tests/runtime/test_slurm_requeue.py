"""``runtime.slurm.requeue_at_exit``: the requeue is the process's last act, and the SIGTERM it brings does not kill it.

A real ``scontrol requeue`` ends the job at once (SIGTERM to its processes); here a stand-in ``scontrol`` on PATH
records its arguments and sends SIGTERM to the process that called it, as SLURM would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO_ROOT, subprocess_env

PROGRAM = """
import atexit
from runtime.slurm import requeue_at_exit
atexit.register(lambda: print("exit hook registered after the import ran", flush=True))
requeue_at_exit("4242")
print("stopped", flush=True)
raise SystemExit(75)
"""


def run_with_scontrol(program: str, folder: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """``python -c program`` with a stand-in ``scontrol`` on PATH that records its arguments (in the returned file) and
    sends SIGTERM to its caller, as SLURM's requeue ends the job's processes."""
    calls = folder / "calls"
    scontrol = folder / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nkill -TERM $PPID\n')
    scontrol.chmod(0o755)
    env = subprocess_env(PATH=f"{folder}{os.pathsep}{os.environ['PATH']}")
    return calls, subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_the_requeue_comes_after_the_other_exit_hooks_and_its_sigterm_is_survived(tmp_path):
    calls, done = run_with_scontrol(PROGRAM, tmp_path)
    assert done.returncode == 75, done.stderr  # not killed by the SIGTERM the requeue brings
    assert calls.read_text().split() == ["requeue", "4242"]
    assert done.stdout.splitlines() == ["stopped", "exit hook registered after the import ran", "requeued SLURM job 4242"]


HUNG_WANDB = """
import sys, time, types
sys.modules["wandb"] = types.SimpleNamespace(teardown=lambda: time.sleep(3600))  # an online finish that hangs
import runtime.slurm as slurm
slurm.WANDB_FINISH_DEADLINE_S = 1.0
slurm.requeue_at_exit("4242")
print("stopped", flush=True)
raise SystemExit(75)
"""


def test_a_hung_wandb_finish_does_not_keep_the_job_from_being_requeued(tmp_path):
    """With ``--signal=USR1@120`` the time limit comes 2 minutes later: a W&B finish that hangs past it would end the
    job as TIMEOUT, never requeued. After ``WANDB_FINISH_DEADLINE_S`` the job is requeued without W&B."""
    calls, done = run_with_scontrol(HUNG_WANDB, tmp_path)
    assert done.returncode == 75, done.stderr
    assert calls.read_text().split() == ["requeue", "4242"]
    assert done.stdout.splitlines() == ["stopped", "requeued SLURM job 4242"]
    assert "W&B did not finish its run within 1 s: requeueing without it" in done.stderr

"""``runtime.slurm.requeue_at_exit``: the requeue is the process's last act, and the SIGTERM it brings does not kill it.

A real ``scontrol requeue`` ends the job at once (SIGTERM to its processes); here a stand-in ``scontrol`` on PATH
records its arguments and sends SIGTERM to the process that called it, as SLURM would."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import REPO_ROOT, subprocess_env

PROGRAM = """
import atexit
from runtime.slurm import requeue_at_exit
atexit.register(lambda: print("exit hook registered after the import ran", flush=True))
requeue_at_exit("4242")
print("stopped", flush=True)
raise SystemExit(75)
"""


def test_the_requeue_comes_after_the_other_exit_hooks_and_its_sigterm_is_survived(tmp_path):
    calls = tmp_path / "calls"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nkill -TERM $PPID\n')
    scontrol.chmod(0o755)
    env = subprocess_env(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 75, done.stderr  # not killed by the SIGTERM the requeue brings
    assert calls.read_text().split() == ["requeue", "4242"]
    assert done.stdout.splitlines() == ["stopped", "exit hook registered after the import ran", "requeued SLURM job 4242"]

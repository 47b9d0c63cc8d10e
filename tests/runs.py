"""`python train.py|sweep.py ARGS` as a background process of a test, like a job on a cluster node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO_ROOT, subprocess_env


class Run:
    """`python <script> ARGS` in `cwd`, output in files (no pipe can fill up), env as a user's shell.

    It runs in a process group of its own, so ``interrupt()`` is a terminal's Ctrl-C: every rank gets SIGINT.
    """

    def __init__(self, args: list[str], cwd: Path, drop_env: tuple[str, ...] = (), script: str = "train.py", **env: str):
        cwd.mkdir(parents=True, exist_ok=True)
        self.cwd, self.started = cwd, time.monotonic()
        environment = {**subprocess_env(OMP_NUM_THREADS="1"), **env}  # subprocess_env would drop MEPS_RUN_ID
        for key in drop_env:
            environment.pop(key, None)
        self.out, self.err = open(cwd / "stdout.log", "a"), open(cwd / "stderr.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / script), *args],
            cwd=cwd,
            env=environment,
            stdout=self.out,
            stderr=self.err,
            start_new_session=True,
        )
        self.signalled_at: float | None = None

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.out.close(), self.err.close()

    def wait_for_marker(self, name: str, timeout: float = 300) -> None:
        marker = self.cwd / "markers" / name
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"run ended (exit {self.proc.returncode}) before {name}:\n{self.stderr[-4000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"no {name} after {timeout} s")
            time.sleep(0.2)

    def send(self, signum: int) -> None:
        """A signal to the main process only (``kill <pid>``, a scheduler signalling the job's process)."""
        self.signalled_at = time.monotonic()
        self.proc.send_signal(signum)

    def interrupt(self) -> None:
        """Ctrl-C at a terminal: SIGINT to every process of the job."""
        self.signalled_at = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)

    def seconds_since_signal(self) -> float:
        return time.monotonic() - self.signalled_at

    def sigkill(self) -> None:
        self.proc.kill()  # SIGKILL: no handler, no cleanup, like the OOM killer or a preempted node
        self.wait()

    @property
    def stderr(self) -> str:
        return (self.cwd / "stderr.log").read_text()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

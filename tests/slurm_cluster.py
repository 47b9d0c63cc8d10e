"""A real one-node SLURM cluster for the tests that submit jobs (``slurm_cluster``, a session fixture).

Where ``SLURM_CONF`` names a cluster that answers (CI's ``.ci/run`` starts one with ``.ci/slurm_cluster.sh``), the
tests use it; where SLURM is installed but not running, the fixture starts one under a tmp dir and stops it at the
end; where it is not installed, or this is not root, the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, subprocess_env

SCRIPT = REPO_ROOT / ".ci" / "slurm_cluster.sh"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue")
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE")


class SlurmCluster:
    """The cluster's configuration file, and what the tests do with it: submit, look at, release and wait for jobs."""

    def __init__(self, conf: Path):
        self.conf = conf

    def env(self, **extra: str) -> dict:
        """The environment of a command that talks to this cluster; a job inherits it (``sbatch --export=ALL``), and
        ``python`` in a job script is this interpreter."""
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return subprocess_env(SLURM_CONF=str(self.conf), PATH=path, **extra)

    def run(self, *command: str, cwd: Path | None = None, **env: str) -> str:
        """A SLURM command's output (a failure fails the test with its output)."""
        result = subprocess.run(command, cwd=cwd, env=self.env(**env), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}: {result.stdout}{result.stderr}"
        return result.stdout

    def sbatch(self, *args: str, cwd: Path, **env: str) -> str:
        """``sbatch --parsable ARGS`` from ``cwd``: the job id."""
        return self.run("sbatch", "--parsable", *args, cwd=cwd, **env).strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job``'s fields (``JobState``, ``Restarts``, ``ExitCode``, ...)."""
        fields: dict[str, str] = {}
        for word in self.run("scontrol", "show", "job", "--oneliner", job_id).split():
            key, _, value = word.partition("=")
            fields.setdefault(key, value)
        return fields

    def release(self, job_id: str) -> None:
        """Start a requeued job now: SLURM holds a requeued job (``Reason=BeginTime``) for a while before it runs again."""
        self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")

    def wait(self, job_id: str, until=lambda job: job["JobState"] in ENDED, timeout: float = 600) -> dict[str, str]:
        """The job's fields once ``until(fields)`` holds (by default: the job ended); fails the test after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if until(job):
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job.get('JobState')} after {timeout} s: {job}"
            time.sleep(0.5)


def _answers(conf: str) -> bool:
    result = subprocess.run(["scontrol", "ping"], env={**os.environ, "SLURM_CONF": conf}, capture_output=True, text=True, timeout=30)
    return result.returncode == 0 and "UP" in result.stdout


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node cluster (see the module's docstring); skipped, with why, where SLURM cannot run here."""
    missing = [name for name in DAEMONS if shutil.which(name) is None and not Path("/usr/sbin", name).is_file()]
    if missing:
        pytest.skip(f"SLURM is not installed here ({', '.join(missing)} not found): `.ci/slurm_cluster.sh install` installs it as root")
    if (conf := os.environ.get("SLURM_CONF")) and _answers(conf):
        yield SlurmCluster(Path(conf))
        return
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster here needs root (slurmd runs jobs as the user that starts it)")
    folder = Path(tempfile.mkdtemp(prefix="meps-slurm-"))
    started = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, f"{SCRIPT} start failed: {started.stdout}{started.stderr}"
        yield SlurmCluster(folder / "slurm.conf")
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)

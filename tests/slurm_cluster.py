"""A real one-node SLURM cluster for the tests that submit jobs (``slurm_cluster``, a session fixture).

Where ``MEPS_TEST_SLURM_CONF`` names a test cluster that answers (CI's ``.ci/run`` starts one with
``.ci/slurm_cluster.sh`` and exports it), the tests use it; else, where SLURM is installed and this is root, the
fixture starts one under a tmp dir and stops it at the end; else the tests that need it are skipped with the reason.
``SLURM_CONF`` is never used: on a cluster's login node it names the real cluster, which no test submits to; a
configuration that does not say ``ClusterName=meps-test`` (what ``.ci/slurm_cluster.sh`` writes) is refused too.

Registered once for the whole session by ``tests/conftest.py`` (``pytest_plugins``): a test module that imported
the fixture would get a fixture of its own, and start a cluster of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, subprocess_env, with_this_python_first

SCRIPT = REPO_ROOT / ".ci" / "slurm_cluster.sh"
TEST_CONF_ENV = "MEPS_TEST_SLURM_CONF"
"""The variable that names a running test cluster's slurm.conf (``.ci/run`` exports it)."""
TEST_CLUSTER_NAME = "meps-test"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue")
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE")


class SlurmCluster:
    """The cluster's configuration file, and what the tests do with it: submit, look at, release and wait for jobs."""

    def __init__(self, conf: Path):
        self.conf = conf

    def env(self, **extra: str) -> dict:
        """The environment of a command that talks to this cluster; a job inherits it (``sbatch --export=ALL``), and
        ``python`` in a job script is this interpreter. No SLURM variable of the outside (a test session inside a
        job of a real cluster) comes along."""
        env = {key: value for key, value in with_this_python_first(subprocess_env(**extra)).items() if not key.startswith("SLURM_")}
        return {**env, "SLURM_CONF": str(self.conf)}

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

    def wait(self, job_id: str, until=lambda job: job["JobState"] in ENDED, timeout: float = 600, failed_polls: int = 5) -> dict[str, str]:
        """The job's fields once ``until(fields)`` holds (by default: the job ended); fails the test after ``timeout`` s,
        or after ``failed_polls`` ``scontrol`` calls in a row that failed (a busy controller may miss one)."""
        deadline = time.monotonic() + timeout
        failures: list[str] = []
        while True:
            try:
                job = self.job(job_id)
            except (AssertionError, subprocess.TimeoutExpired) as err:
                failures.append(str(err))
                assert len(failures) < failed_polls, f"job {job_id}: {failed_polls} scontrol calls in a row failed: {failures}"
                time.sleep(1.0)
                continue
            failures.clear()
            if until(job):
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job.get('JobState')} after {timeout} s: {job}"
            time.sleep(0.5)


def _answers(conf: str) -> bool:
    """Whether the controller of ``conf`` answers ``scontrol ping`` (a hung one does not, within 30 s)."""
    try:
        result = subprocess.run(["scontrol", "ping"], env={**os.environ, "SLURM_CONF": conf}, capture_output=True, text=True, timeout=30)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return result.returncode == 0 and "UP" in result.stdout


def is_test_cluster(conf: Path) -> bool:
    """Whether ``conf`` is a slurm.conf that ``.ci/slurm_cluster.sh`` wrote (``ClusterName=meps-test``)."""
    try:
        lines = conf.read_text().splitlines()
    except OSError:
        return False
    return f"ClusterName={TEST_CLUSTER_NAME}" in (line.strip() for line in lines)


def last_line(text: str) -> str:
    """The last line of ``text`` that says something."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def running_test_cluster() -> Path | None:
    """The slurm.conf of the test cluster ``MEPS_TEST_SLURM_CONF`` names, when it is one (``ClusterName=meps-test``)
    and it answers; else None. ``SLURM_CONF`` plays no part."""
    conf = os.environ.get(TEST_CONF_ENV)
    if conf and is_test_cluster(Path(conf)) and _answers(conf):
        return Path(conf)
    return None


def start_cluster(folder: Path, script: Path = SCRIPT) -> str | None:
    """``.ci/slurm_cluster.sh start FOLDER``: None when the cluster is up, else why not (its last line)."""
    try:
        started = subprocess.run(["bash", str(script), "start", str(folder)], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return f"{script.name} start did not end within 120 s"
    if started.returncode == 0:
        return None
    return last_line(f"{script.name} start exited {started.returncode}\n{started.stdout}\n{started.stderr}")


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node cluster (see the module's docstring); skipped, with why, where SLURM cannot run here."""
    missing = [name for name in DAEMONS if shutil.which(name) is None and not Path("/usr/sbin", name).is_file()]
    if missing:
        pytest.skip(f"SLURM is not installed here ({', '.join(missing)} not found): `.ci/slurm_cluster.sh install` installs it as root")
    if (conf := running_test_cluster()) is not None:
        yield SlurmCluster(conf)
        return
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster here needs root (slurmd runs jobs as the user that starts it)")
    folder = Path(tempfile.mkdtemp(prefix="meps-slurm-"))
    try:
        if (why := start_cluster(folder)) is not None:
            pytest.skip(f"SLURM is installed but no cluster started: {why}")
        yield SlurmCluster(folder / "slurm.conf")
    finally:  # a start that failed halfway may have left daemons: stop them too
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)

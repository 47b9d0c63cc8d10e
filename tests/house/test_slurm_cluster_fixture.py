"""The ``slurm_cluster`` fixture never submits to a cluster it did not start (``SLURM_CONF`` on a login node names the
real one), and a cluster that cannot start or answer makes the SLURM tests skip with why, not error."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import slurm_cluster
from tests.slurm_cluster import is_test_cluster, running_test_cluster, start_cluster

TEST_CONF = "ClusterName=meps-test\nSlurmctldHost=node(127.0.0.1)\n"
REAL_CONF = "ClusterName=hpc\nSlurmctldHost=login1\n"


def conf_file(folder: Path, name: str, text: str) -> Path:
    path = folder / name / "slurm.conf"
    path.parent.mkdir()
    path.write_text(text)
    return path


@pytest.fixture
def every_controller_answers(monkeypatch) -> list[str]:
    """``scontrol ping`` answers UP for any conf; the confs it was asked about."""
    asked: list[str] = []
    monkeypatch.setattr(slurm_cluster, "_answers", lambda conf: asked.append(conf) or True)
    return asked


def test_the_clusters_slurm_conf_names_is_never_used(tmp_path, monkeypatch, every_controller_answers):
    monkeypatch.setenv("SLURM_CONF", str(conf_file(tmp_path, "real", REAL_CONF)))
    monkeypatch.delenv(slurm_cluster.TEST_CONF_ENV, raising=False)
    assert running_test_cluster() is None and every_controller_answers == []


def test_only_a_meps_test_cluster_is_reused(tmp_path, monkeypatch, every_controller_answers):
    real, test = conf_file(tmp_path, "real", REAL_CONF), conf_file(tmp_path, "test", TEST_CONF)
    assert is_test_cluster(test) and not is_test_cluster(real) and not is_test_cluster(tmp_path / "none")
    monkeypatch.setenv(slurm_cluster.TEST_CONF_ENV, str(real))
    assert running_test_cluster() is None and every_controller_answers == []  # not even asked
    monkeypatch.setenv(slurm_cluster.TEST_CONF_ENV, str(test))
    assert running_test_cluster() == test


def test_a_hung_controller_is_not_answering(monkeypatch):
    def hung(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout", 30))

    monkeypatch.setattr(slurm_cluster.subprocess, "run", hung)
    assert slurm_cluster._answers("/tmp/slurm.conf") is False


def test_a_failed_start_says_its_last_line(tmp_path):
    script = tmp_path / "slurm_cluster.sh"
    script.write_text('echo "starting"\necho "slurm_cluster: slurmctld did not start (logs: x)" >&2\nexit 1\n')
    assert start_cluster(tmp_path / "cluster", script) == "slurm_cluster: slurmctld did not start (logs: x)"
    script.write_text("exit 3\n")
    assert start_cluster(tmp_path / "cluster", script) == "slurm_cluster.sh start exited 3"

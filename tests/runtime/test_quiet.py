"""``runtime.quiet.quiet_known_noise``: Lightning's "srun is available but not used" warning, outside a SLURM job only.

On a machine where SLURM is installed (a login node, a workstation, CI with its test cluster) Lightning warns at
every Trainer that ``srun`` is on PATH but not used: outside a job that is noise (and it broke the one line a bad
input gets), inside a job it is the hint that a multi-task run needs ``srun``, and stays."""

from __future__ import annotations

import warnings

import pytest
from lightning.fabric.plugins.environments import SLURMEnvironment

from runtime.quiet import quiet_known_noise


@pytest.fixture
def srun_on_path(tmp_path, monkeypatch):
    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_STEP_ID"):
        monkeypatch.delenv(name, raising=False)


def srun_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what a fresh process shows (pytest's own filters set aside)
        quiet_known_noise()
        SLURMEnvironment._validate_srun_used()
    return [str(w.message) for w in caught if "srun" in str(w.message)]


def test_outside_a_slurm_job_the_srun_warning_is_dropped(srun_on_path):
    assert srun_warnings() == []


def test_inside_a_slurm_job_the_srun_warning_stays(srun_on_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    [line] = srun_warnings()
    assert line.startswith("The `srun` command is available on your system but is not used")

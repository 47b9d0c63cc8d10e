"""The run folder takes W&B's ``WANDB_RUN_ID`` only when a W&B sweep agent started the process (``WANDB_SWEEP_ID`` set
too), inside a SLURM job as well; a ``WANDB_RUN_ID`` exported on its own names no run folder."""

from __future__ import annotations

import pytest

from runtime.cli import MepsCLI
from runtime.wandb_run import RUN_ID_ENV, job_run_id


@pytest.fixture
def no_run_ids(monkeypatch):
    for name in (RUN_ID_ENV, "WANDB_RUN_ID", "WANDB_SWEEP_ID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def fresh_job_run_id(monkeypatch) -> str:
    monkeypatch.delenv(RUN_ID_ENV, raising=False)  # a new process
    return job_run_id()


def test_an_exported_wandb_run_id_does_not_make_runs_share_a_folder(no_run_ids):
    no_run_ids.setenv("WANDB_RUN_ID", "exported")
    first, second = fresh_job_run_id(no_run_ids), fresh_job_run_id(no_run_ids)
    assert "exported" not in (first, second) and first != second


def test_a_wandb_agent_run_names_the_run_folder(no_run_ids):
    no_run_ids.setenv("WANDB_RUN_ID", "agentrun")
    no_run_ids.setenv("WANDB_SWEEP_ID", "gammasweep")
    assert fresh_job_run_id(no_run_ids) == "agentrun"


def in_a_slurm_job(monkeypatch) -> None:
    """What ``srun`` in ``sbatch`` sets, as far as Lightning's SLURM environment reads it."""
    for name, value in {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "job.sh", "SLURM_PROCID": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)


def test_a_wandb_agent_inside_a_slurm_job_gets_the_folder_of_wandbs_run_id(no_run_ids, tmp_path):
    in_a_slurm_job(no_run_ids)
    loggers = [{"save_dir": str(tmp_path), "project": "meps-ldh"}]
    config = {"ckpt_path": None, "model": None}
    by_job = MepsCLI.resolve_resume(config, loggers, ["fit", "-c", "a.yaml"])
    assert by_job.run_id and by_job.run_id != "agentrun"  # a plain job: the id derived from the job and the command

    no_run_ids.setenv("WANDB_RUN_ID", "agentrun")
    assert MepsCLI.resolve_resume(config, loggers, ["fit", "-c", "a.yaml"]).run_id == by_job.run_id  # exported alone: ignored
    no_run_ids.setenv("WANDB_SWEEP_ID", "gammasweep")
    agent = MepsCLI.resolve_resume(config, loggers, ["fit", "-c", "a.yaml"])
    assert (agent.run_id, agent.ckpt_path) == ("agentrun", None)

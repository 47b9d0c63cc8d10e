"""Through a real one-node SLURM cluster (``slurm_cluster``), what a user runs: the job script of docs/clusters.md.

- ``sbatch job.sh`` of a BL-AE fit: the job completes, with one W&B run and one run folder;
- the same script with 2 tasks (``--ntasks-per-node=2``, ``--trainer.devices 2 --trainer.strategy ddp``, gloo):
  its validation equals one process validating its checkpoint;
- preemption for real: ``scancel --signal=USR1`` while the job trains; the job saves the step it reached,
  requeues itself, SLURM puts it back (PENDING, Restarts=1), and the requeued job (same id, the same command)
  resumes and ends with the final step and val/ metrics of an uninterrupted job, in the same W&B run and run folder;
- ``scontrol requeue`` from outside (SLURM's SIGTERM, which also ends W&B's service process): the run still stops
  with its checkpoint and exit code 75, and the requeued start finishes it.

The test cluster has 2 CPUs: a job takes 1 CPU, the DDP job 2; a test runs at most two jobs at a time. Jobs
are submitted from the repository root and write into the test's folder (``tests/slurm_jobs.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests import final_state
from tests.e2e.test_multinode import VAL_KEYS
from tests.helpers import REPO_ROOT, run_train, wandb_runs, wandb_summary
from tests.slurm_cluster import SlurmCluster
from tests.slurm_jobs import DEBUG, Job, cancel, ended_ok, submit

pytestmark = pytest.mark.slow

STEPS_PER_EPOCH = 4


def three_epochs(folder: Path) -> list[str]:
    """3 epochs of 4 steps, validated after each; the final step and metrics in ``folder/results.json``."""
    return [
        *("--trainer.max_steps", "-1", "--trainer.max_epochs", "3", "--trainer.limit_train_batches", str(STEPS_PER_EPOCH)),
        *(
            "--trainer.callbacks+=callbacks.run.results_file.ResultsFile",
            "--trainer.callbacks.init_args.path",
            str(folder / "results.json"),
        ),
    ]


def test_sbatch_of_the_documented_script_fits_one_run(slurm_cluster: SlurmCluster, tmp_path):
    job = submit(slurm_cluster, tmp_path, [])
    try:
        ended_ok(slurm_cluster, job)
    finally:
        cancel(slurm_cluster, job)
    assert "srun: error" not in job.log, job.log[-4000:]
    [run_folder] = job.run_folders()
    [wandb_run] = job.wandb_runs()
    assert wandb_run.name.endswith(run_folder.name)
    status = job.status(run_folder)
    assert (status["state"], status["global_step"], status["slurm_job"]) == ("finished", 4, job.id)
    assert wandb_summary(wandb_run)["summary"]["trainer/global_step"] >= 3


def test_two_tasks_ddp_validate_like_one_process_on_its_checkpoint(slurm_cluster: SlurmCluster, tmp_path):
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.limit_val_batches", "1.0"]
    job = submit(slurm_cluster, tmp_path / "job", ddp, sbatch_args=("--ntasks-per-node=2",))
    try:
        ended_ok(slurm_cluster, job)
    finally:
        cancel(slurm_cluster, job)
    assert "MEMBER: 2/2" in job.log, job.log[-4000:]
    [run_folder] = job.run_folders()
    [wandb_run] = job.wandb_runs()
    assert job.status(run_folder)["state"] == "finished"
    two_tasks = wandb_summary(wandb_run)["summary"]

    one_process = ["validate", *DEBUG, "--trainer.limit_val_batches", "1.0"]
    one_process += ["--ckpt_path", str(run_folder / "checkpoints" / "last.ckpt"), "--trainer.default_root_dir", str(tmp_path / "one")]
    run_train(one_process, REPO_ROOT)
    [one_run] = wandb_runs(tmp_path / "one")
    one = wandb_summary(one_run)["summary"]
    for key in VAL_KEYS:
        assert two_tasks[key] == pytest.approx(one[key], rel=1e-5), key


def held_until_signalled(markers: Path, step: int) -> list[str]:
    """The job waits at global step ``step`` until the signal the test sends has reached it, then runs that step and
    stops after it (``tests/signal_holds.py``); ``markers/reached`` says it is there. The requeued start (the same
    command) finds the marker and does not wait."""
    return [
        "--trainer.callbacks+=tests.signal_holds.HoldUntilSignalled",
        *("--trainer.callbacks.init_args.marker_dir", str(markers), "--trainer.callbacks.init_args.step", str(step)),
    ]


def wait_until_held(cluster: SlurmCluster, job: Job, markers: Path, step: int) -> None:
    reached = markers / "reached"
    cluster.wait(job.id, until=lambda fields: reached.exists() or fields["JobState"] not in ("PENDING", "CONFIGURING", "RUNNING"))
    assert reached.exists(), f"job {job.id} ended before step {step}:\n{job.log[-4000:]}"


def test_usr1_requeues_the_job_and_it_ends_like_an_uninterrupted_one(slurm_cluster: SlurmCluster, tmp_path):
    markers = tmp_path / "job" / "markers"
    jobs: list[Job] = []
    try:
        reference = submit(slurm_cluster, tmp_path / "uninterrupted", three_epochs(tmp_path / "uninterrupted"))
        jobs.append(reference)
        # held at step 5 (mid-epoch 1 of 3 x 4 steps) until the signal is there: it stops after step 6
        job = submit(slurm_cluster, tmp_path / "job", [*three_epochs(tmp_path / "job"), *held_until_signalled(markers, 5)])
        jobs.append(job)
        wait_until_held(slurm_cluster, job, markers, 5)
        slurm_cluster.run("scancel", "--signal=USR1", job.id)  # what --signal=USR1@120 sends before the time limit

        # --- the job saved the step it reached, requeued itself, and SLURM holds it for its next start
        requeued = slurm_cluster.wait(
            job.id, until=lambda fields: (fields["JobState"], fields["Restarts"]) == ("PENDING", "1"), timeout=120
        )
        assert requeued["Reason"] == "BeginTime", requeued
        [run_folder] = job.run_folders()
        run_id = run_folder.name
        status = job.status(run_folder)
        step = status["global_step"]
        assert (status["state"], status["signal"]) == ("preempted", "SIGUSR1")
        assert step == 6, f"stopped at step {step}, not after the step it was held at (5 -> 6, mid-epoch)"
        checkpoint = torch.load(run_folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert checkpoint["global_step"] == step
        log = job.log
        assert f"preempted by SIGUSR1 at global step {step}" in log and f"requeued SLURM job {job.id}" in log, log[-4000:]
        assert "Traceback" not in log, log[-6000:]  # nothing of the exit (W&B's files among it) was cut off by the requeue
        [first_start] = job.wandb_runs()
        assert wandb_summary(first_start)["summary"].get("preempted_at_step") == step, "the first start's W&B run lost its last records"

        # --- the requeued job: same id, SLURM_RESTART_COUNT=1, the identical command
        slurm_cluster.release(job.id)
        fields = ended_ok(slurm_cluster, job)
        assert fields["Restarts"] == "1", fields
        ended_ok(slurm_cluster, reference)
    finally:
        cancel(slurm_cluster, *jobs)
    assert f"resume: SLURM job {job.id} restarted (SLURM_RESTART_COUNT=1): run {run_id} goes on from" in job.log, job.log[-4000:]
    resumed, uninterrupted = final_state.of_job(job.folder), final_state.of_job(reference.folder)
    assert resumed.global_step == 3 * STEPS_PER_EPOCH
    resumed.same_as(uninterrupted)  # the same final step, epoch and val/ metrics, exactly (CPU)
    assert job.run_folders() == [run_folder] and job.status(run_folder)["state"] == "finished"
    runs = job.wandb_runs()
    assert len(runs) == 2 and all(run.name.endswith(run_id) for run in runs), runs  # one W&B run id, two starts
    summary = wandb_summary(runs[-1])
    assert summary["run_id"] == run_id
    assert summary["summary"]["val/psnr"] == pytest.approx(uninterrupted.val["val/psnr"], rel=1e-6)


def test_scontrol_requeue_from_outside_stops_with_a_checkpoint_and_the_job_goes_on(slurm_cluster: SlurmCluster, tmp_path):
    """``scontrol requeue`` by hand (or SLURM preempting with ``PreemptMode=REQUEUE``): SIGTERM to every process of the
    job step, W&B's service process among them. The run still stops with its checkpoint and status ``preempted``
    (not a traceback and ``failed`` on the lost W&B connection), and the requeued start finishes the run."""
    markers = tmp_path / "markers"
    job = submit(slurm_cluster, tmp_path, [*three_epochs(tmp_path), *held_until_signalled(markers, 3)])  # stops after step 4
    try:
        wait_until_held(slurm_cluster, job, markers, 3)
        slurm_cluster.run("scontrol", "requeue", job.id)
        slurm_cluster.wait(job.id, until=lambda fields: (fields["JobState"], fields["Restarts"]) == ("PENDING", "1"), timeout=120)
        [run_folder] = job.run_folders()
        status = job.status(run_folder)
        assert (status["state"], status["signal"], status["global_step"]) == ("preempted", "SIGTERM", 4), status
        log = job.log
        assert f"preempted by SIGTERM at global step {status['global_step']}" in log and "Traceback" not in log, log[-6000:]
        slurm_cluster.release(job.id)
        ended_ok(slurm_cluster, job)
    finally:
        cancel(slurm_cluster, job)
    assert job.run_folders() == [run_folder] and job.status(run_folder)["state"] == "finished"
    assert final_state.of_job(tmp_path).global_step == 3 * STEPS_PER_EPOCH
    assert len(job.wandb_runs()) == 2 and all(run.name.endswith(run_folder.name) for run in job.wandb_runs())

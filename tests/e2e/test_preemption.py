"""Preemption on a cluster (slow lane): a job signalled mid-epoch stops within 30 s with a checkpoint of the step it
reached and exit code 75, and the rerun ends with the val/ metrics of an uninterrupted run in the same run folder
and W&B run.

One scenario per model and process count, each with its own way in and out:

| model | processes | stop | resume |
|---|---|---|---|
| BL-AE | 1 | SIGTERM to the process | the same command + `--ckpt_path last` (no run id) |
| γ-ARVM | 1 | SIGUSR1 inside a SLURM job (the job requeues itself) | the identical command in the requeued job |
| BL-AE | 2 (DDP, gloo) | SIGTERM to rank 0 only | the same command + `--ckpt_path last` |
| γ-ARVM | 2 (DDP, gloo) | Ctrl-C (SIGINT to every rank) | the command the run printed |

The uninterrupted reference runs beside the interrupted one (the same command without the pacing callback).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
from pathlib import Path

import pytest
import torch
import yaml

import train
from tests import final_state
from tests.fault_report import FaultLog
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, REPO_ROOT, wandb_runs, wandb_summary
from tests.runs import Run

pytest_plugins = ["tests.fault_report"]
pytestmark = pytest.mark.slow

ARVM_CONFIG = str(REPO_ROOT / "configs" / "arvm" / "digits.yaml")
DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
STEPS_PER_EPOCH = 4
COMMON = [
    "-c",
    DEBUG_PRESET,
    "--trainer.enable_model_summary",
    "false",
    "--trainer.max_steps",
    "-1",
    "--trainer.max_epochs",
    "3",
    "--trainer.limit_train_batches",
    str(STEPS_PER_EPOCH),
    "--trainer.check_val_every_n_epoch",
    "1",
    "--trainer.callbacks+=callbacks.run.results_file.ResultsFile",
    "--trainer.callbacks.init_args.path",
    "results.json",
]
PACE = [
    "--trainer.callbacks+=tests.preemption_helpers.SlowFrom",
    "--trainer.callbacks.init_args.step",
    "5",
    "--trainer.callbacks.init_args.delay_s",
    "1.0",
]
"""From step 5 on the run sleeps 1 s per step, so that the signal lands mid-epoch (epoch 1 of 3 x 4 steps)."""
SLURM_JOB = {
    "SLURM_JOB_ID": "4242",
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NNODES": "1",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_JOB_NAME": "train",
    "SLURM_NODELIST": "localhost",
}


@pytest.fixture(scope="module")
def blae_checkpoint(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("blae")
    train.main(
        [
            "fit",
            "-c",
            DIGITS_CONFIG,
            "-c",
            DEBUG_PRESET,
            "--trainer.logger",
            "false",
            "--trainer.enable_model_summary",
            "false",
            "--trainer.default_root_dir",
            str(folder),
        ]
    )
    return str(next(folder.rglob("last.ckpt")))


def fake_scontrol(folder: Path) -> dict:
    """A `scontrol` on PATH that records its arguments: what requeueing the job ran."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {folder / "calls"}\n')
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def free_ports(count: int) -> list[str]:
    """Distinct free ports, one per job that runs at the same time: two DDP jobs launched together can otherwise
    both take the port the OS handed out first (Lightning picks it by binding port 0, then closes it)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [str(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def val_metrics(record: dict) -> dict:
    return {key: value for key, value in record["metrics"].items() if key.startswith("val/")}


def config_batch_size(config: str) -> int:
    """The loader position counts samples: the config's batch size times the steps into the epoch."""
    data = yaml.safe_load(Path(config).read_text())["data"]
    if isinstance(data, str):  # a config group named by path, relative to the experiment config
        data = yaml.safe_load((Path(config).parent / data).read_text())
    return data["init_args"]["batch_size"]


SCENARIOS = {
    "blae-1-process-SIGTERM": ("blae", False, "SIGTERM"),
    "arvm-1-process-SIGUSR1-slurm-requeue": ("arvm", False, "SIGUSR1"),
    "blae-ddp-SIGTERM-to-rank-0": ("blae", True, "SIGTERM"),
    "arvm-ddp-ctrl-c": ("arvm", True, "SIGINT"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_signal_mid_epoch_then_resume_is_exact(scenario, blae_checkpoint, tmp_path, fault: FaultLog):
    model, ddp, stop = SCENARIOS[scenario]
    if model == "blae":
        base = ["fit", "-c", DIGITS_CONFIG, *COMMON]
        global_batch = config_batch_size(DIGITS_CONFIG)
    else:
        base = [
            "fit",
            "-c",
            ARVM_CONFIG,
            *COMMON,
            "--data.init_args.autoencoder",
            blae_checkpoint,
            "--data.init_args.token_cache_dir",
            str(tmp_path / "tokens"),
            "--model.init_args.gamma",
            "2",
            "--model.init_args.dropout",
            "0.1",
        ]
        global_batch = config_batch_size(ARVM_CONFIG)
    base += DDP if ddp else []
    slurm = stop == "SIGUSR1"
    env = {**SLURM_JOB, **fake_scontrol(tmp_path / "bin")} if slurm else {}
    processes = 2 if ddp else 1
    record = fault.tried(f"{stop} mid-epoch, {model}, {processes} process(es)" + (", inside a SLURM job" if slurm else ""))

    reference_port, job_port = free_ports(2)
    reference = Run(base, tmp_path / "uninterrupted", MASTER_PORT=reference_port, **env)
    command = [*base, *PACE]
    env = {**env, "MASTER_PORT": job_port}
    first = Run(command, tmp_path / "job", **env)
    first.wait_for_marker("reached")
    first.interrupt() if stop == "SIGINT" else first.send(getattr(signal, stop))
    code = first.wait(timeout=120)
    stopped_in = first.seconds_since_signal()
    assert code == 75, first.stderr[-4000:]
    assert stopped_in <= 30, f"took {stopped_in:.0f} s to stop"
    assert reference.wait() == 0, reference.stderr[-4000:]

    # --- what the stopped run left: one line saying so, and a checkpoint of the step reached
    job = first.cwd
    [run_folder] = (job / "outputs" / "meps-ldh").iterdir()
    run_id = run_folder.name
    how = "interrupted by Ctrl-C" if stop == "SIGINT" else f"preempted by {stop}"
    assert f"{how} at global step" in first.stderr and "(exit code 75: resumable)" in first.stderr
    printed = next(line for line in first.stderr.splitlines() if line.startswith("to resume: "))
    assert printed == f"to resume: {shlex.join(['python', 'train.py', *command, '--ckpt_path', 'last'])}"
    checkpoint = torch.load(run_folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    step = checkpoint["global_step"]
    assert step % STEPS_PER_EPOCH != 0, f"saved at step {step}: an epoch boundary, not mid-epoch"
    [loader_state] = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["epoch"] == step // STEPS_PER_EPOCH and loader_state["position"] == (step % STEPS_PER_EPOCH) * global_batch
    rng = checkpoint["callbacks"]["ResumableRun"]["rng"]
    assert len(rng) == processes and (processes == 1 or not torch.equal(rng[0]["torch"], rng[1]["torch"]))
    status = json.loads((run_folder / "status.json").read_text())
    assert status["state"] == "preempted" and status["global_step"] == step
    assert not (job / "results.json").exists()  # a stopped run never claims to be finished
    if slurm:
        assert (tmp_path / "bin" / "calls").read_text().split() == ["requeue", "4242"]

    # --- the rerun: same run folder, same W&B run, the uninterrupted run's numbers
    if slurm:
        second = Run(command, job, SLURM_RESTART_COUNT="1", **env)  # the requeued job runs the identical command
    elif stop == "SIGINT":
        second = Run(shlex.split(printed.removeprefix("to resume: "))[2:], job, **env)
    else:
        second = Run([*command, "--ckpt_path", "last"], job, **env)
    assert second.wait() == 0, second.stderr[-4000:]
    if slurm:
        assert f"resume: SLURM job 4242 restarted (SLURM_RESTART_COUNT=1): run {run_id} goes on from" in second.stderr
    else:
        assert f"resume: run {run_id}, the newest resumable run in outputs/meps-ldh (preempted at step {step}," in second.stderr
    expected = json.loads((reference.cwd / "results.json").read_text())
    resumed = json.loads((job / "results.json").read_text())
    assert resumed["global_step"] == expected["global_step"] == 3 * STEPS_PER_EPOCH
    assert val_metrics(resumed) == val_metrics(expected)  # exact on CPU; the bar is val/psnr to 1e-4
    same = final_state.of_job(job).same_as(final_state.of_job(reference.cwd))  # and the same final epoch
    assert [p.name for p in (job / "outputs" / "meps-ldh").iterdir()] == [run_id]
    runs = wandb_runs(job / "outputs")
    assert len(runs) == 2 and all(r.name.endswith(run_id) for r in runs)  # one W&B run id, two attempts
    summary = wandb_summary(runs[-1])
    assert summary["run_id"] == run_id
    key = "val/psnr" if model == "blae" else "val/nll_bits"
    assert summary["summary"][key] == pytest.approx(expected["metrics"][key], abs=1e-4)
    assert json.loads((run_folder / "status.json").read_text())["state"] == "finished"
    assert wandb_summary(runs[0])["summary"]["preempted_at_step"] == step  # the W&B run says it was preempted
    if ddp:
        for log in (first.stderr, second.stderr):  # the bit-usage values are logged as the synced values they are
            assert not [line for line in log.splitlines() if "sync_dist=True" in line and "/bit_" in line]
    fault.survived(
        f"exit 75 {stopped_in:.0f} s after the signal, checkpoint at step {step} (mid-epoch, loader position"
        f" and {processes} RNG state(s)); rerun continued run {run_id} (same W&B run): {same}",
        record=record,
    )

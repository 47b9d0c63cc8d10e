"""Two writers, one run (slow lane, a row of the fault table): two ``fit --ckpt_path last`` of the same run started
together. Exactly one goes on (taking over the lock its SIGKILLed first start left); the other says in one line
which process holds the run folder, exits with 2 and writes nothing: one W&B run attempt is added, not two."""

from __future__ import annotations

import json
import time

import pytest
import torch

from runtime.run_lock import LOCK_FILE
from tests import final_state
from tests.fault_report import FaultLog
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, wandb_runs
from tests.runs import Run

pytest_plugins = ["tests.fault_report"]
pytestmark = pytest.mark.slow

COMMON = ["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, "--trainer.enable_model_summary", "false", "--trainer.default_root_dir"]
EPOCHS = [
    "--trainer.max_steps",
    "-1",
    "--trainer.max_epochs",
    "3",
    "--trainer.limit_train_batches",
    "4",
    "--trainer.callbacks+=callbacks.run.results_file.ResultsFile",
    "--trainer.callbacks.init_args.path",
    "results.json",
]
HANG_AT_STEP_5 = [
    "--trainer.callbacks+=tests.helpers.FaultInjector",
    "--trainer.callbacks.init_args.marker_dir",
    "markers",
    "--trainer.callbacks.init_args.fault",
    "hang",
    "--trainer.callbacks.init_args.step",
    "5",
]


def hold_from_step_5(release) -> list[str]:
    """The run that goes on waits at step 5 until the test creates ``release``: still running, however slow the
    machine, when the other one asks for the folder (the test releases it once the other one has ended)."""
    return ["--trainer.callbacks+=tests.preemption_helpers.HoldUntil", "--trainer.callbacks.init_args.release", str(release)]


def test_two_resumes_of_one_run_started_together(tmp_path, fault: FaultLog):
    root = str(tmp_path / "outputs")  # one root, each process its own working folder (logs, markers, results.json)
    reference = Run([*COMMON, str(tmp_path / "reference" / "outputs"), *EPOCHS], tmp_path / "reference")  # uninterrupted
    first = Run([*COMMON, root, *EPOCHS, *HANG_AT_STEP_5], tmp_path / "first")
    first.wait_for_marker("hang-rank0")
    first.sigkill()  # leaves its lock behind: a dead pid of this host
    (run_folder,) = (tmp_path / "outputs" / "meps-ldh").iterdir()
    assert json.loads((run_folder / LOCK_FILE).read_text())["pid"] == first.proc.pid
    attempts_before = len(wandb_runs(tmp_path / "outputs"))
    files_before = {p.name for p in run_folder.iterdir()}

    fault.tried("two fit --ckpt_path last of one run started together")
    release = tmp_path / "release"
    hold = hold_from_step_5(release)
    resumes = [Run([*COMMON, root, *EPOCHS, *hold, "--ckpt_path", "last"], tmp_path / f"resume-{n}") for n in (1, 2)]
    deadline = time.monotonic() + 600
    while all(resume.proc.poll() is None for resume in resumes) and time.monotonic() < deadline:
        time.sleep(0.2)  # the one that goes on holds at step 5 until released: the first to end is the refused one
    release.write_text("")
    codes = sorted(((resume.wait(), resume) for resume in resumes), key=lambda pair: pair[0])
    (went_on_code, went_on), (refused_code, refused) = codes
    assert (went_on_code, refused_code) == (0, 2), (went_on.stderr[-3000:], refused.stderr[-3000:])

    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    held_by = f"error: run folder {run_folder} is in use by pid {went_on.proc.pid} on "
    assert len(lines) == 1 and lines[0].startswith(held_by), lines
    assert f"took over the lock of pid {first.proc.pid}" in went_on.stderr and f"resume: run {run_folder.name}" in went_on.stderr

    assert len(wandb_runs(tmp_path / "outputs")) == attempts_before + 1  # the refused one started no W&B run
    assert {p.name for p in run_folder.iterdir()} == files_before - {LOCK_FILE} | {"config.attempt-1.yaml"}  # one attempt added
    last = torch.load(run_folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 12 and json.loads((run_folder / "status.json").read_text())["state"] == "finished"
    assert reference.wait() == 0, reference.stderr[-3000:]
    same = final_state.of_job(went_on.cwd).same_as(final_state.of_job(reference.cwd))
    fault.survived(
        f"one went on from step 4 (took over the dead start's lock): {same}; the other: `run folder ... is in use by"
        f" pid {went_on.proc.pid} ...`, exit 2, nothing written, one W&B run attempt added"
    )

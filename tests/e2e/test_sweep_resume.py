"""The sweep on a cluster (slow lane): stopped in the middle of a cell it resumes that cell (same run, same W&B run),
a cell whose results no longer hold what they promise is rebuilt, and a stage that never validates is refused."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
import yaml

from tests import final_state
from tests.helpers import REPO_ROOT, wandb_runs
from tests.runs import Run

pytestmark = pytest.mark.slow

QUICK = ["-c", "configs/presets/debug.yaml"]
PACE = [
    "--trainer.callbacks+=tests.preemption_helpers.SlowFrom",
    "--trainer.callbacks.init_args.step",
    "2",
    "--trainer.callbacks.init_args.delay_s",
    "1.0",
]


def one_gamma_sweep(tmp_path, neural_extra: list[str] = ()) -> str:
    config = yaml.safe_load((REPO_ROOT / "configs" / "sweeps" / "digits.yaml").read_text())
    config["out_dir"] = str(tmp_path / "sweep")
    config["gammas"] = [1]
    # one cell at a time, one VAE, no seed or phase cells. The sweep starts the longest chain first, so the
    # neural cell runs right after the BL-AE and the signal lands in it before the VAE and kernel cells ran
    config.update(workers=1, vae_betas=None, blae_noises=[], spread_cells=[], spread_seeds=[], train_sizes=[])
    for stage in ("blae", "vae", "kernel", "neural"):
        config[stage]["args"] = config[stage].get("args", []) + QUICK  # last: the stage's own cadence must not win
    config["neural"]["args"] += list(neural_extra)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def assert_resumed_cell_ends_as_uninterrupted(cell: Path, tmp_path: Path) -> None:
    """The cell's recorded command run again, uninterrupted, into a folder of its own (same BL-AE checkpoint): the
    resumed cell must end at its global step and epoch with its val/ metrics, exactly."""
    record = json.loads((cell / "results.json").read_text())
    runs_root, reference = str(tmp_path / "sweep" / "runs"), tmp_path / "reference"
    args = [str(reference / "runs") if arg == runs_root else arg.replace(str(cell), str(reference / "cell")) for arg in record["args"]]
    assert args != record["args"], record["args"]  # the run folder root and the results file moved
    (reference / "cell").mkdir(parents=True)
    uninterrupted = Run(args, tmp_path / "job")
    assert uninterrupted.wait(timeout=600) == 0, uninterrupted.stderr[-4000:]
    [results] = (reference / "cell").glob("results.json*")
    final_state.of_job(cell).same_as(final_state.of_job(reference / "cell", results.name))


def test_sweep_stopped_in_a_cell_resumes_that_cell_and_rebuilds_a_broken_one(tmp_path):
    config = one_gamma_sweep(tmp_path, PACE)
    first = Run(["-c", config], tmp_path / "job", script="sweep.py")
    first.wait_for_marker("reached")  # the neural γ-ARVM cell, mid-epoch (4 steps, paced from step 2)
    first.send(signal.SIGTERM)
    assert first.wait(timeout=120) == 75, first.stderr[-4000:]
    assert first.seconds_since_signal() <= 30
    assert f"to resume: python sweep.py -c {config}" in first.stderr
    cells = tmp_path / "sweep" / "cells"
    assert (cells / "blae" / "results.json").is_file()
    assert not any((cells / name / "results.json").exists() for name in ("neural-gamma-1", "vae", "kernel-gamma-1"))
    run_id = json.loads((cells / "neural-gamma-1" / "run.json").read_text())["run_id"]

    second = Run(["-c", config], tmp_path / "job", script="sweep.py")
    assert second.wait(timeout=600) == 0, second.stderr[-4000:]
    out = (tmp_path / "job" / "stdout.log").read_text()
    assert out.count("reused (finished earlier)") == 1  # the BL-AE; then the VAE and kernel cells run
    assert f"neural-gamma-1: resuming its interrupted run {run_id} (preempted at step" in out
    record = json.loads((cells / "neural-gamma-1" / "results.json").read_text())
    assert record["global_step"] == 4 and record["metrics"]["val/nll_bits"] > 0
    attempts = [run for run in wandb_runs(tmp_path / "sweep" / "runs") if run.name.endswith(run_id)]
    assert len(attempts) == 2  # one W&B run, two attempts
    assert (tmp_path / "sweep" / "report.json").is_file()
    assert_resumed_cell_ends_as_uninterrupted(cells / "neural-gamma-1", tmp_path)

    vae = cells / "vae" / "results.json"  # as an older version wrote it: no checkpoint recorded
    vae.write_text(json.dumps({**json.loads(vae.read_text()), "best_checkpoint": "", "last_checkpoint": ""}))
    third = Run(["-c", config], tmp_path / "job3", script="sweep.py")
    assert third.wait(timeout=600) == 0, third.stderr[-4000:]
    out = (tmp_path / "job3" / "stdout.log").read_text()
    assert "vae: rebuilt (it recorded no checkpoint)" in out and out.count("reused (finished earlier)") == 3
    assert json.loads(vae.read_text())["best_checkpoint"]


def test_a_stage_that_never_validates_is_refused_and_not_recorded(tmp_path):
    config = yaml.safe_load((REPO_ROOT / "configs" / "sweeps" / "digits.yaml").read_text())
    config["out_dir"] = str(tmp_path / "sweep")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    run = Run(["-c", str(path), "--blae.args+=--trainer.max_steps=5"], tmp_path, script="sweep.py")
    assert run.wait(timeout=300) == 2, run.stderr[-4000:]
    [line] = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    # the BL-AE cells at other noise rates fail alike, in parallel; the line names failures in plan order
    assert re.match(r"error: sweep cells failed: blae[ ,]", line), line
    assert "sweep cell blae: train.py fit stopped at step 5 before it ever validated" in line
    # the advice is sweep options that exist (the BL-AE validating within its 5 steps: test_argument_checks.py)
    assert "--blae.args+=--trainer.check_val_every_n_epoch=null --blae.args+=--trainer.val_check_interval=5" in line
    for cell in (tmp_path / "sweep" / "cells").glob("blae*"):
        assert not (cell / "results.json").exists(), cell  # the next run rebuilds it

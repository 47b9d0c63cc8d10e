"""`sweep.py --launcher slurm` on a real one-node SLURM cluster (slow lane): a reduced sweep (debug preset, γ = 1 and
global, BL-AE + VAE + kernel + neural cells) gets the same report.json figures as the local launcher with the same
seeds, though one of its cell jobs is preempted while it trains (``scancel --signal=USR2``, what ``--signal=USR2@<s>``
sends before the time limit), requeued, and resumes its run; a rerun then submits only the report job. One test, not
two: a sweep on the 2-CPU cluster takes a minute and a half.

No timing window: every neural cell is held at step 2 (`tests/e2e/held_run.MarkAndHold`) until the test has seen
submitit catch the signal in the job's log; the held cell is found through its records (run.json, job.json)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT
from tests.runs import Run
from tests.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slow

QUICK = ["-c", "configs/presets/debug.yaml"]
VOLATILE_ROW_KEYS = ("seconds", "cpu_s")
SLURM = {"time": 20, "cpus_per_task": 1}
"""20 minutes: submitit reads a signal within min(80 %, time - 10 min) of the job's start as a preemption, not as the
time limit (`checkpoint_and_try_requeue`'s "preempted" branch, the one a cluster's preemption takes)."""


def reduced_sweep(folder: Path) -> str:
    """The digits sweep cut to 6 cells of a few steps each; one CPU per cell job (two run side by side on 2 CPUs); the
    neural cells held at step 2 until ``folder/release`` exists."""
    config = yaml.safe_load((REPO_ROOT / "configs" / "sweeps" / "digits.yaml").read_text())
    config.update(gammas=[1, "global"], workers=2, vae_betas=None, blae_noises=[], spread_cells=[], spread_seeds=[], train_sizes=[])
    for stage in ("blae", "vae", "kernel", "neural"):
        config[stage]["args"] = config[stage].get("args", []) + QUICK
    config["neural"]["args"] += [
        "--trainer.callbacks+=tests.e2e.held_run.MarkAndHold",
        "--trainer.callbacks.init_args.release",
        str(folder / "release"),
        "--trainer.callbacks.init_args.marker_dir",
        str(folder / "markers"),
    ]
    config["slurm"] = SLURM
    path = folder / "sweep.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return str(path)


def figures(out_dir: Path) -> dict:
    """report.json without what a run's speed changes (costs, wall time, each row's seconds)."""
    report = json.loads((out_dir / "report.json").read_text())
    report["rows"] = [{k: v for k, v in row.items() if k not in VOLATILE_ROW_KEYS} for row in report["rows"]]
    return {k: v for k, v in report.items() if k not in ("costs", "wall_s")}


def wall_s(out_dir: Path) -> float:
    return json.loads((out_dir / "report.json").read_text())["costs"]["wall_s"]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> tuple[dict, float]:
    """The local launcher's figures and wall time (nothing held: the release file is there from the start)."""
    folder = tmp_path_factory.mktemp("local")
    config = reduced_sweep(folder)
    (folder / "release").write_text("")
    run = Run(["-c", config, "--out_dir", str(folder / "out")], folder, script="sweep.py")
    try:
        assert run.wait(timeout=600) == 0, run.stderr[-4000:]
    finally:
        if run.proc.poll() is None:
            run.sigkill()
    return figures(folder / "out"), wall_s(folder / "out")


def slurm_sweep(cluster, folder: Path) -> Run:
    env = cluster.env()
    args = ["-c", reduced_sweep(folder), "--out_dir", str(folder / "out"), "--launcher", "slurm"]
    return Run(args, folder, script="sweep.py", SLURM_CONF=env["SLURM_CONF"], PATH=env["PATH"])


def cancel_jobs(cluster, folder: Path) -> None:
    """Every job this sweep submitted (submitit's ``<id>_submission.sh`` files), cancelled if still there."""
    ids = sorted({p.name.split("_")[0] for p in (folder / "out" / "slurm").glob("*_submission.sh")})
    if ids:
        cluster.run("scancel", *ids)


def until(what: str, found, run: Run, timeout: float = 300):
    """``found()``'s answer once it has one (polled), failing the test when the sweep ends first or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (answer := found()):
        assert run.proc.poll() is None, f"the sweep ended (exit {run.proc.returncode}) before {what}:\n{run.stderr[-4000:]}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.2)
    return answer


def held_cell(folder: Path) -> str | None:
    """The sweep cell whose run is held (its W&B run id: a marker's name; the cell's run.json names its run id)."""
    held = {marker.name for marker in (folder / "markers").glob("*")}
    for record in (folder / "out" / "cells").glob("*/run.json"):
        if json.loads(record.read_text()).get("run_id") in held:
            return record.parent.name
    return None


def test_the_slurm_launcher_gets_the_local_report_through_a_preemption_and_a_rerun_submits_only_the_report(
    slurm_cluster: SlurmCluster,
    local_run,
    tmp_path,
):
    local_figures, local_wall_s = local_run
    run = slurm_sweep(slurm_cluster, tmp_path)
    rerun = None
    try:
        name = until("a neural cell held mid-training", lambda: held_cell(tmp_path), run)
        job_id = json.loads((tmp_path / "out" / "cells" / name / "job.json").read_text())["job_id"]
        out = (tmp_path / "stdout.log").read_text()
        blae = re.search(r"\] blae: job (\d+), starts now", out)
        assert blae is not None, out
        assert re.search(rf"\] kernel-gamma-1: job \d+, after blae \(job {blae.group(1)}\)", out), out
        assert re.search(r"\] report: job \d+, after every cell job \(6\)", out), out
        slurm_cluster.run("scancel", "--signal=USR2", job_id)  # what --signal=USR2@<s> sends before the time limit
        log = tmp_path / "out" / "slurm" / f"{job_id}_0_log.out"
        caught = until(
            "submitit's 'Caught signal SIGUSR2'",
            lambda: re.search(r"Caught signal SIGUSR2 on \S+: this job is (\S+)\.", log.read_text()),
            run,
            60,
        )
        assert caught.group(1) == "preempted", log.read_text()  # not the time limit's branch ("timed-out")
        (tmp_path / "release").write_text("")  # the held runs go on: the signalled one checkpoints and exits 75
        slurm_cluster.wait(job_id, until=lambda job: job["Restarts"] == "1" and job["JobState"] == "PENDING", timeout=120)
        slurm_cluster.release(job_id)
        assert run.wait(timeout=400) == 0, run.stderr[-4000:]
        out = (tmp_path / "stdout.log").read_text()
        assert len(re.findall(r"\] \S+: done in \d+ s", out)) == 6 and f"report: {tmp_path / 'out' / 'report.md'}" in out, out
        assert "Traceback" not in run.stderr, run.stderr
        assert f"{name}: preempted; train.py stopped with exit code 75" in log.read_text(), log.read_text()
        assert re.search(rf"{name}: resuming its interrupted run \w+ \(preempted at step \d+\)", log.read_text()), log.read_text()
        assert json.loads((tmp_path / "out" / "cells" / name / "job.json").read_text())["restarts"] == 1
        assert figures(tmp_path / "out") == local_figures
        print(f"wall time: local launcher {local_wall_s:.0f} s, slurm launcher {wall_s(tmp_path / 'out'):.0f} s (a requeue in it)")

        rerun = slurm_sweep(slurm_cluster, tmp_path)
        assert rerun.wait(timeout=300) == 0, rerun.stderr[-4000:]
        out = (tmp_path / "stdout.log").read_text()[len(out) :]
        submitted = re.findall(r"\] (\S+): job \d+, (?:after|starts)", out)
        assert out.count("reused (finished earlier)") == 6 and submitted == ["report"], out
        assert figures(tmp_path / "out") == local_figures
    finally:
        for process in (run, rerun):
            if process is not None and process.proc.poll() is None:
                process.sigkill()
        cancel_jobs(slurm_cluster, tmp_path)

"""`sweep.py --launcher slurm` on a real one-node SLURM cluster (slow lane): a reduced sweep (debug preset, γ = 1 and
global, BL-AE + VAE + kernel + neural cells) gets the same report.json figures as the local launcher with the same
seeds, though one of its cell jobs is preempted while it trains (``scancel --signal=USR2``, what ``--signal=USR2@<s>``
sends before the time limit), requeued, and resumes its run; a rerun then submits only the report job. One test, not
two: a sweep on the 2-CPU cluster takes a minute and a half."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT
from tests.runs import Run
from tests.slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

QUICK = ["-c", "configs/presets/debug.yaml"]
PACE = [  # from step 2 on, each neural step sleeps 3 s (once per cwd): a window to preempt the cell job mid-training
    "--trainer.callbacks+=tests.preemption_helpers.SlowFrom",
    "--trainer.callbacks.init_args.step",
    "2",
    "--trainer.callbacks.init_args.delay_s",
    "3.0",
]
VOLATILE_ROW_KEYS = ("seconds", "cpu_s")


def reduced_sweep(folder: Path) -> str:
    """The digits sweep cut to 6 cells of a few steps each; one CPU per cell job (two run side by side on 2 CPUs)."""
    config = yaml.safe_load((REPO_ROOT / "configs" / "sweeps" / "digits.yaml").read_text())
    config.update(gammas=[1, "global"], workers=2, vae_betas=None, blae_noises=[], spread_cells=[], spread_seeds=[], train_sizes=[])
    for stage in ("blae", "vae", "kernel", "neural"):
        config[stage]["args"] = config[stage].get("args", []) + QUICK
    config["neural"]["args"] += PACE
    config["slurm"] = {"time": 10, "cpus_per_task": 1}
    path = folder / "sweep.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return str(path)


def figures(out_dir: Path) -> dict:
    """report.json without what a run's speed changes (costs, wall time, each row's seconds)."""
    report = json.loads((out_dir / "report.json").read_text())
    report["rows"] = [{k: v for k, v in row.items() if k not in VOLATILE_ROW_KEYS} for row in report["rows"]]
    return {k: v for k, v in report.items() if k not in ("costs", "wall_s")}


@pytest.fixture(scope="module")
def local_figures(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("local")
    run = Run(["-c", reduced_sweep(folder), "--out_dir", str(folder / "out")], folder, script="sweep.py")
    assert run.wait(timeout=600) == 0, run.stderr[-4000:]
    return figures(folder / "out")


def slurm_sweep(cluster, folder: Path) -> Run:
    env = cluster.env()
    args = ["-c", reduced_sweep(folder), "--out_dir", str(folder / "out"), "--launcher", "slurm"]
    return Run(args, folder, script="sweep.py", SLURM_CONF=env["SLURM_CONF"], PATH=env["PATH"])


def cancel_jobs(cluster, folder: Path) -> None:
    """Every job this sweep submitted (submitit's ``<id>_submission.sh`` files), cancelled if still there."""
    ids = sorted({p.name.split("_")[0] for p in (folder / "out" / "slurm").glob("*_submission.sh")})
    if ids:
        cluster.run("scancel", *ids)


def test_the_slurm_launcher_gets_the_local_report_through_a_preemption_and_a_rerun_submits_only_the_report(
    slurm_cluster: SlurmCluster,  # noqa: F811
    local_figures,
    tmp_path,
):
    run = slurm_sweep(slurm_cluster, tmp_path)
    try:
        run.wait_for_marker("reached", timeout=300)  # a neural cell's train.py, mid-training (the pid: the marker's first word)
        out = (tmp_path / "stdout.log").read_text()
        blae = re.search(r"\] blae: job (\d+), starts now", out)
        assert blae is not None, out
        assert re.search(rf"\] kernel-gamma-1: job \d+, after blae \(job {blae.group(1)}\)", out), out
        assert re.search(r"\] report: job \d+, after every cell job \(6\)", out), out
        pid = (tmp_path / "markers" / "reached").read_text().split()[0]
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        name = command[command.index(b"--trainer.logger.init_args.name") + 1].decode()
        job_id = json.loads((tmp_path / "out" / "cells" / name / "job.json").read_text())["job_id"]
        slurm_cluster.run("scancel", "--signal=USR2", job_id)  # what --signal=USR2@<s> sends before the time limit
        slurm_cluster.wait(job_id, until=lambda job: job["Restarts"] == "1" and job["JobState"] == "PENDING", timeout=120)
        slurm_cluster.release(job_id)
        assert run.wait(timeout=600) == 0, run.stderr[-4000:]
        out = (tmp_path / "stdout.log").read_text()
        assert len(re.findall(r"\] \S+: done in \d+ s", out)) == 6 and f"report: {tmp_path / 'out' / 'report.md'}" in out, out
        log = (tmp_path / "out" / "slurm" / f"{job_id}_0_log.out").read_text()
        assert f"{name}: preempted; train.py stopped with exit code 75" in log, log
        assert re.search(rf"{name}: resuming its interrupted run \w+ \(preempted at step \d+\)", log), log
        assert json.loads((tmp_path / "out" / "cells" / name / "job.json").read_text())["restarts"] == 1
        assert figures(tmp_path / "out") == local_figures

        rerun = slurm_sweep(slurm_cluster, tmp_path)
        assert rerun.wait(timeout=600) == 0, rerun.stderr[-4000:]
        out = (tmp_path / "stdout.log").read_text()[len(out) :]
        assert out.count("reused (finished earlier)") == 6 and len(re.findall(r": job \d+", out)) == 1, out  # the report's
        assert figures(tmp_path / "out") == local_figures
    finally:
        if run.proc.poll() is None:
            run.sigkill()
        cancel_jobs(slurm_cluster, tmp_path)

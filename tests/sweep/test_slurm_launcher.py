"""`sweep.py --launcher slurm` without a cluster: its arguments (one line, exit code 2, nothing written), the cell graph
as job dependencies, what a rerun resubmits, how a cell job builds its cell, and the preemption hook of a cell job
(it runs inside a signal handler while the job waits on train.py)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import sweep
from runtime.errors import MepsFault, Preempted
from sweep.cell_job import CellJob, ignore_preempt_signal
from sweep.records import CellFailed
from sweep.slurm_settings import SlurmSettings
from tests.helpers import REPO_ROOT, command_in_process

SWEEP_CONFIG = str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml")
DEBUG = "[MEPS_DEBUG=1 shows the traceback]"
SLURM_KEYS = "partition, account, qos, time, cpus_per_task, gpus_per_node, mem_gb, signal_delay_s, setup, additional"


@pytest.fixture
def cli(tmp_path, monkeypatch, capfd):
    """sweep.py -c configs/sweeps/digits.yaml ARGS in an empty folder, with SLURM's commands on PATH (stubs) unless the test
    empties PATH: (exit code, stderr lines). Fails the test if the sweep got as far as running or submitting cells."""
    cwd, stubs = tmp_path / "cwd", tmp_path / "bin"
    cwd.mkdir()
    stubs.mkdir()
    for command in ("sbatch", "srun", "squeue", "scancel"):
        (stubs / command).write_text("#!/bin/sh\nexit 1\n")
        (stubs / command).chmod(0o755)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PATH", str(stubs))
    monkeypatch.setenv("WANDB_DIR", str(cwd))
    monkeypatch.delenv("MEPS_DEBUG", raising=False)
    monkeypatch.setattr(sweep.Sweep, "__call__", lambda self: pytest.fail("the sweep started: the bad value got through"))

    def run(args: list[str]) -> tuple[int, list[str]]:
        code, err = command_in_process(sweep.console_main, ["-c", SWEEP_CONFIG, "--out_dir", str(cwd / "s"), *args], capfd)
        assert sorted(p.name for p in cwd.iterdir()) == [], "the sweep wrote something"
        return code, [line for line in err.splitlines() if line.strip()]

    return run


CASES = [
    (["--launcher", "slurmx"], "--launcher slurmx: expected one of local, slurm"),
    (["--slurm.time", "0"], "--slurm.time 0: expected an integer >= 1 (minutes)"),
    (["--slurm.time", "abc"], "--slurm.time abc: expected an integer >= 1 (minutes)"),
    (["--slurm.cpus_per_task", "0"], "--slurm.cpus_per_task 0: expected an integer >= 1, or null (the cluster's default)"),
    (["--slurm.gpus_per_node", "-1"], "--slurm.gpus_per_node -1: expected an integer >= 0, or null (none asked)"),
    (["--slurm.mem_gb", "0"], "--slurm.mem_gb 0.0: expected a number > 0 (GB), or null (the cluster's default)"),
    (["--slurm.signal_delay_s", "0"], "--slurm.signal_delay_s 0: expected an integer >= 1 (seconds before the time limit)"),
    (["--slurm.tme", "3"], "--slurm.tme: no such option; did you mean '--slurm.time'?"),
    (["--slurm.walltime", "3"], f"--slurm.walltime: no such option; --slurm takes {SLURM_KEYS}"),
    (["--neural.slurm", "{gpus: 1}"], f"--neural.slurm.gpus: no such option; --neural.slurm takes {SLURM_KEYS}"),
    (["--neural.slurm", "{time: 0}"], "--neural.slurm.time 0: expected an integer >= 1 (minutes)"),
    (
        ["--slurm.time", "1"],
        "--slurm.signal_delay_s 120: the job would be told to checkpoint before it starts (time 1 min = 60 s); give a"
        " signal_delay_s below it, or more time",
    ),
    (
        ["--neural.slurm", "{time: 2, signal_delay_s: 150}"],
        "--neural.slurm.signal_delay_s 150: the job would be told to checkpoint before it starts (time 2 min = 120 s);"
        " give a signal_delay_s below it, or more time",
    ),
    (["--kernel.slurm", "{partition: ''}"], "--kernel.slurm.partition : expected a partition name, or null (the cluster's default)"),
    (
        ["--launcher", "slurm", "--trainer.num_nodes", "2"],
        "--trainer.num_nodes 2 with --launcher slurm: each cell job is one node (its train.py launches the ranks of"
        " --trainer.devices); run multi-node cells with sbatch (docs/clusters.md)",
    ),
]


@pytest.mark.parametrize(("args", "line"), CASES, ids=[" ".join(args) for args, _ in CASES])
def test_each_bad_launcher_setting_is_one_line_and_exit_code_2(cli, args, line):
    code, lines = cli(args)
    assert (code, lines) == (2, [f"error: {line}  {DEBUG}"])


def test_launcher_slurm_without_sbatch_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    code, lines = cli(["--launcher", "slurm"])
    line = (
        "--launcher slurm: sbatch, srun, squeue, scancel are not on PATH (no SLURM client here); run it on a SLURM login node,"
        " or use --launcher local"
    )
    assert (code, lines) == (2, [f"error: {line}  {DEBUG}"])


def sweep_of(tmp_path, *args: str) -> sweep.Sweep:
    return sweep.sweep_from_args(["-c", SWEEP_CONFIG, "--out_dir", str(tmp_path / "s"), *args])


def test_resources_and_the_launcher_are_not_part_of_a_cells_key(tmp_path):
    blae = {"best_checkpoint": "/ckpt/blae.ckpt", "last_checkpoint": ""}
    local = {p.name: p.build({"blae": blae}).key for p in sweep_of(tmp_path).plan() if p.needs == ("blae",)}
    other = sweep_of(tmp_path, "--launcher", "local", "--slurm.time", "7", "--neural.slurm", "{gpus_per_node: 1, time: 120}")
    assert other.stages["neural"].slurm == {"gpus_per_node": 1, "time": 120} and other.slurm.time == 7 and other.slurm.cpus_per_task == 1
    assert {p.name: p.build({"blae": blae}).key for p in other.plan() if p.needs == ("blae",)} == local


class FakeCluster:
    """What `SlurmLauncher` asks SLURM, recorded: each submission (name, settings, the jobs it waits on); ``live``: the
    jobs squeue still shows pending or running."""

    def __init__(self, launcher, live: dict[str, str] | None = None, first_id: int = 100):
        self.first_id = first_id
        self.submitted: list[tuple[str, SlurmSettings, list[str]]] = []
        self.live = live or {}
        launcher.submit_job = self.submit_job
        launcher.states = lambda: {job_id: (state, "None") for job_id, state in self.live.items()}

    def submit_job(self, name, function, settings, after):
        self.submitted.append((name, settings, list(after)))
        return str(self.first_id + len(self.submitted))

    def waits(self) -> dict[str, list[str]]:
        """name -> the names of the cells its job waits on."""
        names = {str(self.first_id + i): name for i, (name, _, _) in enumerate(self.submitted, 1)}
        return {name: [names.get(job_id, job_id) for job_id in after] for name, _, after in self.submitted}


def launcher_of(tmp_path, *args: str):
    from sweep.submission import SlurmLauncher

    argv = ["-c", SWEEP_CONFIG, "--out_dir", str(tmp_path / "s"), "--launcher", "local", *args]
    return SlurmLauncher(sweep.sweep_from_args(argv), argv, str(tmp_path))


def test_every_cell_is_a_job_after_the_jobs_of_the_cells_it_needs_and_the_report_after_all(tmp_path):
    launcher = launcher_of(tmp_path, "--neural.slurm", "{gpus_per_node: 1, time: 120}", "--slurm.partition", "cpu")
    cluster = FakeCluster(launcher)
    plan = launcher.sweep.plan()
    submitted = launcher.submit(plan)
    waits = cluster.waits()
    assert list(waits) == [p.name for p in plan] + ["report"]  # plan order, every cell: none finished
    assert waits["blae"] == [] and waits["vae-beta-1"] == [] and waits["blae-noise-0.3"] == []
    assert waits["kernel-gamma-1"] == ["blae"] and waits["neural-gamma-global"] == ["blae"]
    assert waits["neural-gamma-global-seed2"] == ["blae", "neural-gamma-global"]
    assert waits["kernel-gamma-2-n300"] == ["blae", "kernel-gamma-2"]
    assert waits["report"] == [p.name for p in plan]
    asked = {name: (s.gpus_per_node, s.time, s.partition) for name, s, _ in cluster.submitted}
    assert asked["neural-gamma-1"] == (1, 120, "cpu") and asked["kernel-gamma-1"] == (None, 30, "cpu")
    record = json.loads((tmp_path / "s" / "cells" / "blae" / "job.json").read_text())
    assert record["job_id"] == submitted.jobs["blae"].job_id and record["argv"] == launcher.argv


def finish(cell, tmp_path) -> None:
    """``cell``'s results as a finished run leaves them (its checkpoint on disk, its validation metrics)."""
    checkpoint = tmp_path / f"{cell.name}.ckpt"
    checkpoint.write_text("")
    cell.folder.mkdir(parents=True, exist_ok=True)
    record = {"cell_key": cell.key, "best_checkpoint": str(checkpoint), "last_checkpoint": "", "metrics": {"val/psnr": 20.0}}
    cell.results_path.write_text(json.dumps({**record, "role": cell.role}))


def test_a_rerun_reuses_finished_cells_keeps_live_jobs_and_resubmits_the_rest(tmp_path):
    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]", "--train_sizes", "[100, 300]")
    first = FakeCluster(launcher)
    plan = launcher.sweep.plan()
    jobs = launcher.submit(plan).jobs
    # then: the BL-AE finished, the kernel cell's job still runs, the VAE's job failed (gone from squeue)
    finish(plan[0].build({}), tmp_path)
    again = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]", "--train_sizes", "[100, 300]")
    cluster = FakeCluster(again, live={jobs["kernel-gamma-1"].job_id: "RUNNING", jobs["vae-beta-1"].job_id: "FAILED"}, first_id=200)
    resubmitted = again.submit(again.sweep.plan())
    waits = cluster.waits()
    assert "blae" not in waits and "kernel-gamma-1" not in waits  # reused; kept
    assert resubmitted.jobs["kernel-gamma-1"] == (jobs["kernel-gamma-1"].job_id, False)
    assert waits["vae-beta-1"] == [] and waits["neural-gamma-1"] == []  # the BL-AE is finished: nothing to wait on
    assert waits["kernel-gamma-1-n300"] == [jobs["kernel-gamma-1"].job_id]  # the kept job
    assert "kernel-gamma-1-n100" in waits and len(first.submitted) == len(plan) + 1
    assert len(waits["report"]) == len(resubmitted.jobs) and jobs["kernel-gamma-1"].job_id in waits["report"]  # a new report job

    # and again while every job of that submission is pending or running: nothing new, the report job kept too
    live = {job_id: "PENDING" for job_id, _ in resubmitted.jobs.values()} | {resubmitted.report: "PENDING"}
    third = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]", "--train_sizes", "[100, 300]")
    cluster = FakeCluster(third, live=live, first_id=300)
    assert third.submit(third.sweep.plan()).report == resubmitted.report and cluster.submitted == []


def test_a_cell_job_builds_its_cell_from_the_records_of_the_cells_it_needs(tmp_path):
    job_sweep = sweep_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")
    plan = job_sweep.plan()
    with pytest.raises(CellFailed, match="^sweep cell kernel-gamma-1 needs blae, which did not finish$"):
        job_sweep.resolve_for_job(plan, "kernel-gamma-1")
    finish(plan[0].build({}), tmp_path)
    job_sweep = sweep_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")
    cell = job_sweep.resolve_for_job(job_sweep.plan(), "kernel-gamma-1")
    assert f"--data.init_args.autoencoder {tmp_path / 'blae.ckpt'}" in " ".join(cell.args)
    assert job_sweep.resolve_for_job(job_sweep.plan(), "blae") is None  # finished: nothing to run


CHILD = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGTERM, lambda *a: sys.exit(75))  # train.py: a checkpoint of the step, exit code 75
Path(sys.argv[1]).write_text("ready")
time.sleep(120)
"""


def test_the_preemption_hook_stops_train_py_while_the_job_waits_on_it_and_returns_the_job_to_requeue(tmp_path, capfd):
    """As submitit runs it: SIGUSR2 reaches every process of the job (train.py ignores it); the handler calls
    ``checkpoint()`` while the job is blocked in ``process.wait()``, then exits (after requeueing the job)."""
    ready = tmp_path / "ready"
    job = CellJob(["-c", "x.yaml"], str(tmp_path), "neural-gamma-1")
    job.process = subprocess.Popen([sys.executable, "-c", CHILD, str(ready)], preexec_fn=ignore_preempt_signal)
    requeued = []

    def handler(signum, frame):  # submitit's SignalHandler.checkpoint_and_try_requeue, in short
        requeued.append(job.checkpoint())
        sys.exit(-1)

    def preempt():
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(job.process.pid, signal.SIGUSR2)  # SLURM signals the whole step
        os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, handler)
    threading.Thread(target=preempt, daemon=True).start()
    try:
        with pytest.raises(SystemExit):
            job.process.wait(timeout=90)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert job.process.wait(timeout=10) == 75  # not reaped by the hook: the exit code is train.py's
    assert "neural-gamma-1: preempted; train.py stopped with exit code 75" in capfd.readouterr().out
    [delayed] = requeued
    again = pickle.loads(pickle.dumps(delayed.function))  # what submitit stores for the requeued job
    assert again == job and again.process is None


def test_squeue_failing_is_one_line(monkeypatch, tmp_path):
    from sweep import submission

    stub = tmp_path / "squeue"
    stub.write_text("#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller' >&2\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MepsFault, match=r"^squeue failed \(exit code 1\): squeue: error: Unable to contact slurm controller$"):
        submission.job_states()


def test_job_states_reads_squeue(monkeypatch, tmp_path):
    from sweep import submission

    stub = tmp_path / "squeue"
    stub.write_text("#!/bin/sh\nprintf '7|RUNNING|None\\n8|PENDING|Dependency\\n9|COMPLETED|None\\n'\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert submission.job_states() == {"7": ("RUNNING", "None"), "8": ("PENDING", "Dependency"), "9": ("COMPLETED", "None")}
    assert submission.dependency(["7", "8"]) == {"dependency": "afterok:7:8", "kill-on-invalid-dep": "yes"}
    assert Path(submission.__file__).parent.name == "sweep"


def test_the_wait_names_a_failed_cell_with_its_error_line_and_code_and_the_cells_cancelled_with_it(tmp_path, capsys):
    from sweep.submission import Job, Submitted

    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")
    cluster = FakeCluster(launcher, live={"102": "CANCELLED"})  # blae's job 101: gone from squeue
    cells = tmp_path / "s" / "cells"
    for name, record in {"blae": {"outcome": "failed", "exit_code": 2}, "kernel-gamma-1": {"outcome": "submitted"}}.items():
        (cells / name).mkdir(parents=True)
        (cells / name / "job.json").write_text(json.dumps(record))
    (cells / "blae" / "log.txt").write_text("Epoch 0\nerror: sweep cell blae: boom\n")
    submitted = Submitted({"blae": Job("101", True), "kernel-gamma-1": Job("102", True)}, "103")
    with pytest.raises(CellFailed) as failed:
        launcher.wait(launcher.sweep.plan(), submitted)
    assert str(failed.value) == (
        "sweep cells failed: blae (blae: error: sweep cell blae: boom); cancelled with them: kernel-gamma-1;"
        " finished cells are kept: run the sweep again to go on"
    )
    assert failed.value.exit_code == 2
    out = capsys.readouterr().out
    assert "blae: FAILED (job 101 gone, exit code 2): error: sweep cell blae: boom" in out
    assert "kernel-gamma-1: job 102 cancelled (a cell it needs failed, or scancel)" in out
    assert cluster.submitted == []


def test_ctrl_c_stops_the_wait_not_the_jobs_and_says_how_to_follow_them(tmp_path):
    from sweep.submission import Job, Submitted

    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")

    def interrupted():
        raise KeyboardInterrupt

    launcher.states = interrupted
    with pytest.raises(Preempted, match=r"^stopped waiting \(Ctrl-C\); the sweep's jobs go on on the cluster: follow them with "):
        launcher.wait(launcher.sweep.plan(), Submitted({"blae": Job("101", True)}, "103"))

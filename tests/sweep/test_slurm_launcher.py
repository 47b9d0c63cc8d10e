"""`sweep.py --launcher slurm` without a cluster: its arguments (one line, exit code 2, nothing written), the cell graph
as job dependencies, what a rerun resubmits, how a cell job builds its cell, and the preemption hook of a cell job
(it runs inside a signal handler while the job waits on train.py)."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import sweep
from runtime.errors import BadInput, MepsFault, Preempted
from sweep.cell_job import CellJob, FinishedMeanwhile, ignore_signal
from sweep.records import CellFailed
from sweep.slurm_settings import SlurmSettings, stage_settings
from tests.helpers import REPO_ROOT, command_in_process

SWEEP_CONFIG = str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml")
DEBUG = "[MEPS_DEBUG=1 shows the traceback]"
SLURM_KEYS = "partition, account, qos, time, cpus_per_task, gpus_per_node, mem_gb, signal_delay_s, max_num_timeout, setup, additional"


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
    (
        ["--slurm.additional", "{job-name: x}"],
        "--slurm.additional.job-name: set by the sweep (every job's); leave it out of additional",
    ),
    (
        ["--neural.slurm", "{additional: {time: 5}}"],
        "--neural.slurm.additional.time: set by --neural.slurm.time; leave it out of additional",
    ),
    (
        ["--slurm.additional", "{exclusive: false}"],
        "--slurm.additional {'exclusive': False}: expected a mapping of sbatch options to a string, a number or true, e.g."
        " {constraint: a100}",
    ),
    (
        ["--launcher", "slurm", "--threads", "2", "--slurm.cpus_per_task", "1"],
        "--threads 2 with --slurm.cpus_per_task 1: each cell job has 1 CPU(s); give --threads 1 or less (null: as many as"
        " the job's CPUs), or more cpus_per_task",
    ),
    (
        ["--launcher", "slurm", "--trainer.accelerator", "gpu", "--trainer.devices", "2", "--neural.slurm", "{gpus_per_node: 1}"],
        "--trainer.devices 2 with --slurm.gpus_per_node null: each cell job has 0 GPU(s); give --slurm.gpus_per_node 2, or fewer devices",
    ),
]


@pytest.mark.parametrize(("args", "line"), CASES, ids=[" ".join(args) for args, _ in CASES])
def test_each_bad_launcher_setting_is_one_line_and_exit_code_2(cli, args, line):
    code, lines = cli(args)
    assert (code, lines) == (2, [f"error: {line}  {DEBUG}"])


def test_resources_sbatch_refuses_are_one_line_before_anything_is_written(cli, tmp_path):
    """``sbatch --test-only`` of each distinct job's resources, during the argument checks (was: a 40-line traceback
    halfway through submitting)."""
    said = "sbatch: error: invalid partition specified: nope"
    (tmp_path / "bin" / "sbatch").write_text(
        f'#!/bin/sh\necho "$@" >> {tmp_path}/sbatch.calls\ncase "$*" in *nope*) echo \'{said}\' >&2; exit 1;; esac\nexit 0\n'
    )
    code, lines = cli(["--launcher", "slurm", "--neural.slurm", "{partition: nope}"])
    options = "--cpus-per-task=1, --partition=nope, --time=30"
    assert (code, lines) == (2, [f"error: --neural.slurm {{{options}}}: sbatch refuses these resources ({said})  {DEBUG}"])
    calls = (tmp_path / "sbatch.calls").read_text().splitlines()
    assert calls == [
        "--test-only --cpus-per-task=1 --time=30 --wrap true",
        "--test-only --cpus-per-task=1 --partition=nope --time=30 --wrap true",
    ]


def test_stage_overrides_merge_setup_and_additional_with_the_sweep_wide_ones():
    sweep_wide = SlurmSettings(setup=["module load a"], additional={"constraint": "x", "exclude": "n1"})
    chosen = stage_settings(sweep_wide, {"setup": ["module load b"], "additional": {"exclude": "n2"}, "time": 5})
    assert (chosen.setup, chosen.additional, chosen.time) == (["module load a", "module load b"], {"constraint": "x", "exclude": "n2"}, 5)


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
    """What `SlurmLauncher` asks SLURM, recorded: each submission (name, settings, the jobs it waits on, the callable);
    ``live``: job id -> state of the jobs squeue shows (their names and work dir: those of ``named``, else those
    submitted here); ``cancelled``: the ids scancel was given."""

    def __init__(self, launcher, live: dict[str, str] | None = None, first_id: int = 100, named: dict[str, str] | None = None):
        from sweep import submission
        from sweep.submission import JobState

        self.first_id = first_id
        self.submitted: list[tuple[str, SlurmSettings, list[str]]] = []
        self.functions: list = []
        self.live = live or {}
        self.named = dict(named or {})
        self.cancelled: list[str] = []
        launcher.submit_job = self.submit_job
        folder = str(launcher.folder)
        launcher.states = lambda: {i: JobState(state, "None", self.named.get(i, "?"), folder) for i, state in self.live.items()}
        submission.cancel = self.cancel  # the module's scancel (monkeypatched back by the fixture below)

    def cancel(self, job_ids):
        self.cancelled += job_ids

    def submit_job(self, name, function, settings, after):
        self.submitted.append((name, settings, list(after)))
        self.functions.append(function)
        job_id = str(self.first_id + len(self.submitted))
        self.named[job_id] = name
        return job_id

    def waits(self) -> dict[str, list[str]]:
        """name -> the names of the cells its job waits on."""
        return {name: [self.named.get(job_id, job_id) for job_id in after] for name, _, after in self.submitted}


@pytest.fixture(autouse=True)
def _restore_cancel(monkeypatch):
    from sweep import submission

    monkeypatch.setattr(submission, "cancel", submission.cancel)


def launcher_of(tmp_path, *args: str, config: str = SWEEP_CONFIG):
    from sweep.submission import SlurmLauncher

    argv = ["-c", config, "--out_dir", str(tmp_path / "s"), "--launcher", "local", *args]
    return SlurmLauncher(sweep.sweep_from_args(argv), os.getcwd())  # where the jobs run from: the cells' keys depend on it


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
    assert record["job_id"] == submitted.jobs["blae"].job_id and record["definition"] == definition_of(launcher, "blae")
    threads = {function.name: function.threads for function in cluster.functions if isinstance(function, CellJob)}
    assert threads["blae"] == 1 and set(threads.values()) == {1}  # --threads null in a job: its cpus_per_task


def definition_of(launcher, name: str) -> str:
    from sweep.submission import definition

    return definition(next(p for p in launcher.sweep.plan() if p.name == name))


def finish(cell, tmp_path) -> None:
    """``cell``'s results as a finished run leaves them (its checkpoint on disk, its validation metrics)."""
    checkpoint = tmp_path / f"{cell.name}.ckpt"
    checkpoint.write_text("")
    cell.folder.mkdir(parents=True, exist_ok=True)
    record = {"cell_key": cell.key, "best_checkpoint": str(checkpoint), "last_checkpoint": "", "metrics": {"val/psnr": 20.0}}
    cell.results_path.write_text(json.dumps({**record, "role": cell.role}))


REDUCED = ("--gammas", "[1]", "--spread_cells", "[]", "--train_sizes", "[100, 300]")


def test_a_rerun_reuses_finished_cells_keeps_live_jobs_and_resubmits_the_rest(tmp_path):
    launcher = launcher_of(tmp_path, *REDUCED)
    first = FakeCluster(launcher)
    plan = launcher.sweep.plan()
    jobs = launcher.submit(plan).jobs
    # then: the BL-AE finished, the kernel cell's job still runs, the VAE's job failed (gone from squeue)
    finish(plan[0].build({}), tmp_path)
    again = launcher_of(tmp_path, *REDUCED)
    live = {jobs["kernel-gamma-1"].job_id: "RUNNING", jobs["vae-beta-1"].job_id: "FAILED"}
    cluster = FakeCluster(again, live=live, first_id=200, named=first.named)
    resubmitted = again.submit(again.sweep.plan())
    waits = cluster.waits()
    assert "blae" not in waits and "kernel-gamma-1" not in waits  # reused; kept
    assert resubmitted.jobs["kernel-gamma-1"] == (jobs["kernel-gamma-1"].job_id, False)
    assert waits["vae-beta-1"] == [] and waits["neural-gamma-1"] == []  # the BL-AE is finished: nothing to wait on
    assert waits["kernel-gamma-1-n300"] == ["kernel-gamma-1"]  # the kept job
    assert "kernel-gamma-1-n100" in waits and len(first.submitted) == len(plan) + 1
    assert len(waits["report"]) == len(resubmitted.jobs) and "kernel-gamma-1" in waits["report"]  # a new report job

    # and again while every job of that submission is pending or running: nothing new, the report job kept too
    live = {job_id: "PENDING" for job_id, _ in resubmitted.jobs.values()} | {resubmitted.report: "PENDING"}
    third = launcher_of(tmp_path, *REDUCED)
    cluster = FakeCluster(third, live=live, first_id=300, named=cluster.named)
    assert third.submit(third.sweep.plan()).report == resubmitted.report and cluster.submitted == []


def test_a_rerun_with_another_command_line_keeps_the_jobs_of_unchanged_cells_and_submits_no_duplicate(tmp_path):
    """Was: jobs were kept only for an identical command line: any change submitted every cell again, duplicates of
    the jobs still running."""
    launcher = launcher_of(tmp_path, *REDUCED)
    first = FakeCluster(launcher)
    jobs = launcher.submit(launcher.sweep.plan()).jobs
    live = {job_id: "RUNNING" if name == "blae" else "PENDING" for name, (job_id, _) in jobs.items()}
    again = launcher_of(tmp_path, *REDUCED, "--slurm.time", "45", "--probe_models", "[kernel]")  # not what the cells run
    cluster = FakeCluster(again, live=live, first_id=200, named=first.named)
    resubmitted = again.submit(again.sweep.plan())
    assert all(not job.new for job in resubmitted.jobs.values()) and [name for name, _, _ in cluster.submitted] == ["report"]


def test_a_live_job_for_another_definition_of_a_cell_is_refused_before_anything_is_submitted(tmp_path):
    launcher = launcher_of(tmp_path, *REDUCED)
    first = FakeCluster(launcher)
    jobs = launcher.submit(launcher.sweep.plan()).jobs
    live = {job_id: "RUNNING" if name == "blae" else "PENDING" for name, (job_id, _) in jobs.items()}
    again = launcher_of(tmp_path, *REDUCED, "--blae.args+=--trainer.max_steps=7")
    cluster = FakeCluster(again, live=live, first_id=200, named=first.named)
    blae = jobs["blae"].job_id
    line = f"job {blae} of an earlier submission is still running cell blae with other arguments: wait for it or scancel {blae}"
    with pytest.raises(BadInput, match=f"^{re.escape(line)}$"):
        again.submit(again.sweep.plan())
    assert cluster.submitted == [] and cluster.cancelled == []


def test_a_pending_job_that_waits_on_a_cell_submitted_again_is_cancelled_and_submitted_again(tmp_path):
    """Its afterok names the dead job of the cell it needs: kept, it would never start."""
    launcher = launcher_of(tmp_path, *REDUCED)
    first = FakeCluster(launcher)
    jobs = launcher.submit(launcher.sweep.plan()).jobs
    # the BL-AE's job failed (gone); the kernel cell's job is still pending (on the BL-AE's: kill_on_invalid_dep not yet)
    live = {jobs["kernel-gamma-1"].job_id: "PENDING"}
    again = launcher_of(tmp_path, *REDUCED)
    cluster = FakeCluster(again, live=live, first_id=200, named=first.named)
    resubmitted = again.submit(again.sweep.plan())
    assert cluster.cancelled == [jobs["kernel-gamma-1"].job_id]
    assert resubmitted.jobs["kernel-gamma-1"].new and cluster.waits()["kernel-gamma-1"] == ["blae"]


def test_the_jobs_rebuild_the_sweep_from_the_settings_resolved_at_submission(tmp_path, monkeypatch):
    """Was: a job re-read the sweep's YAML when it started (hours later), whatever it said by then."""
    from sweep.cell_job import sweep_of_job

    config = tmp_path / "sweep.yaml"
    config.write_text(Path(SWEEP_CONFIG).read_text().replace("gammas: [1, 2, global]", "gammas: [1]"))
    launcher = launcher_of(tmp_path, "--spread_cells", "[]", config=str(config))
    cluster = FakeCluster(launcher)
    launcher.submit(launcher.sweep.plan())
    config.write_text(Path(SWEEP_CONFIG).read_text())  # edited after submission: γ 1, 2 and global
    job = cluster.functions[0]
    assert job.settings == str(launcher.settings) and Path(job.settings).parent == tmp_path / "s" / "slurm"
    here = os.getcwd()
    monkeypatch.chdir(tmp_path)
    assert sweep_of_job(job.settings, job.cwd).gammas == [1] and os.getcwd() == here


def test_the_report_job_never_runs_a_cell_it_names_those_not_finished(tmp_path, monkeypatch, capsys):
    """Was: the report job was the local sweep, which trained every cell that had not finished."""
    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")
    cluster = FakeCluster(launcher)
    plan = launcher.sweep.plan()
    launcher.submit(plan)
    finish(plan[0].build({}), tmp_path)
    monkeypatch.setattr(sweep.Sweep, "execute", lambda *a: pytest.fail("the report job ran cells"))
    monkeypatch.setattr(sweep.Sweep, "write_report", lambda *a: pytest.fail("a report without every cell"))
    [report] = [f for (name, _, _), f in zip(cluster.submitted, cluster.functions, strict=True) if name == "report"]
    with pytest.raises(CellFailed) as failed:
        report()
    others = ", ".join(p.name for p in plan if p.name != "blae")
    assert str(failed.value) == f"the report needs every cell finished; not finished: {others}: run the sweep again"
    assert [s.cpus_per_task for name, s, _ in cluster.submitted if name == "report"] == [1]


def test_sbatch_refusing_a_job_is_one_line_naming_the_cell_and_the_jobs_already_submitted(tmp_path, monkeypatch):
    """submitit's own sbatch call: the first job accepted, the second refused (was: submitit's FailedJobError, 40 lines);
    SLURM's variables of an enclosing allocation do not reach sbatch (submitit.helpers.clean_env)."""
    stub = tmp_path / "bin" / "sbatch"
    stub.parent.mkdir()
    stub.write_text(
        "#!/bin/sh\nenv | grep -c '^SLURM_JOB_ID=' >> " + str(tmp_path / "leaked") + "\n"
        "if [ -e " + str(tmp_path / "once") + " ]; then echo 'sbatch: error: QOSMaxSubmitJobPerUserLimit' >&2; exit 1; fi\n"
        "touch " + str(tmp_path / "once") + "\necho 'Submitted batch job 501'\n"
    )
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")
    launcher.states = dict
    line = (
        "sbatch refused the job of blae-noise-0.3: sbatch: error: QOSMaxSubmitJobPerUserLimit; the 1 job(s) submitted before it"
        " go on: cancel them with `scancel 501`"
    )
    with pytest.raises(MepsFault, match=f"^{re.escape(line)}$"):
        launcher.submit(launcher.sweep.plan())
    assert json.loads((tmp_path / "s" / "cells" / "blae" / "job.json").read_text())["job_id"] == "501"
    assert (tmp_path / "leaked").read_text().split() == ["0", "0"]


@pytest.mark.parametrize(
    "stop", [KeyboardInterrupt(), Preempted("stopped by SIGTERM before training started", "SIGTERM")], ids=["ctrl-c", "sigterm"]
)
def test_a_stop_request_while_submitting_names_the_jobs_submitted(tmp_path, stop):
    """Was: a traceback (Ctrl-C), or "stopped by SIGTERM before training started"; each job is in its job.json."""
    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")
    cluster = FakeCluster(launcher)
    submit = cluster.submit_job

    def stopped_at_the_third(*args):
        if len(cluster.submitted) == 2:
            raise stop
        return submit(*args)

    launcher.submit_job = stopped_at_the_third
    what = "Ctrl-C" if isinstance(stop, KeyboardInterrupt) else "SIGTERM"
    line = (
        f"stopped submitting ({what}); the 2 job(s) submitted so far go on: follow them with `squeue -j 101,102`, cancel them"
        " with `scancel 101 102`; the same command submits the rest"
    )
    with pytest.raises(Preempted, match=f"^{re.escape(line)}$"):
        launcher.submit(launcher.sweep.plan())
    recorded = {p.parent.name: json.loads(p.read_text())["job_id"] for p in (tmp_path / "s" / "cells").glob("*/job.json")}
    assert recorded == {"blae": "101", "blae-noise-0.3": "102"}


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
    job = CellJob("x.yaml", str(tmp_path), "neural-gamma-1")
    job.process = subprocess.Popen([sys.executable, "-c", CHILD, str(ready)], preexec_fn=lambda: ignore_signal(signal.SIGUSR2))
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


HOLDS_ON = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a train.py that does not get its checkpoint written in time
Path(sys.argv[1]).write_text("ready")
time.sleep(120)
"""


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_preemption_hook_waits_a_bounded_time_then_kills_train_py_and_requeues_anyway(tmp_path, capfd):
    """Was: an unbounded wait for train.py's exit, past SLURM's kill (the job then never requeued)."""
    job = CellJob("x.yaml", str(tmp_path), "neural-gamma-1", signal_delay_s=17)  # 2 s: 17 s less the 15 s margin
    job.process = subprocess.Popen([sys.executable, "-c", HOLDS_ON, str(tmp_path / "ready")])
    wait_for(tmp_path / "ready")
    start = time.monotonic()
    delayed = job.checkpoint()
    assert 1.5 < time.monotonic() - start < 10 and delayed.function == job
    assert job.process.wait(timeout=10) == -signal.SIGKILL
    assert "neural-gamma-1: preempted; train.py was killed (no checkpoint in time" in capfd.readouterr().out


def test_the_preemption_hook_of_a_train_py_that_had_finished_seals_the_cell_instead_of_requeueing(tmp_path):
    """Was: a requeue of a finished cell (and a job.json that said it was preempted)."""
    job = CellJob("x.yaml", str(tmp_path), "neural-gamma-1")
    job.process = subprocess.Popen([sys.executable, "-c", "pass"])
    while sweep_cell_job_exit_status(job.process.pid) is None:
        time.sleep(0.05)
    with pytest.raises(FinishedMeanwhile):
        job.checkpoint()
    assert job.process.wait(timeout=10) == 0  # not reaped by the hook: `run` seals the cell with this code


def sweep_cell_job_exit_status(pid: int):
    from sweep.cell_job import exit_status

    return exit_status(pid, block=False)


def test_the_preemption_signal_is_submitits_and_too_many_requeues_are_recorded(tmp_path):
    from submitit.core.utils import UncompletedJobError
    from submitit.slurm.slurm import SlurmJobEnvironment

    from sweep.cell_job import TOO_MANY_TIMEOUTS, job_record, preempt_signal, record_failure

    assert preempt_signal() == getattr(signal, f"SIG{SlurmJobEnvironment.USR_SIG}")
    folder = tmp_path / "neural-gamma-1"
    record_failure(folder, UncompletedJobError("Job not requeued because: timed-out too many times."))
    assert job_record(folder) == {"outcome": "stopped", "exit_code": 75, "error": f"neural-gamma-1: {TOO_MANY_TIMEOUTS}"}


def test_squeue_failing_is_one_line(monkeypatch, tmp_path):
    from sweep import submission

    stub = tmp_path / "squeue"
    stub.write_text("#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller' >&2\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MepsFault, match=r"^squeue failed \(exit code 1\): squeue: error: Unable to contact slurm controller$"):
        submission.job_states()

    def too_slow(*args, **kwargs):
        raise subprocess.TimeoutExpired("squeue", 60)

    monkeypatch.setattr(submission.subprocess, "run", too_slow)
    with pytest.raises(submission.SqueueFailed, match="^squeue did not answer within 60 s$"):
        submission.job_states()


def test_job_states_reads_squeue(monkeypatch, tmp_path):
    from sweep import submission
    from sweep.submission import JobState

    stub = tmp_path / "squeue"
    stub.write_text("#!/bin/sh\nprintf '7|RUNNING|None|blae|/o/slurm\\n8|PENDING|Dependency|vae|/o/slurm\\n'\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    expected = {"7": JobState("RUNNING", "None", "blae", "/o/slurm"), "8": JobState("PENDING", "Dependency", "vae", "/o/slurm")}
    assert submission.job_states() == expected
    assert submission.dependency(["7", "8"]) == {"dependency": "afterok:7:8", "kill-on-invalid-dep": "yes"}


class Clock:
    """The wait's clock and sleep: each sleep moves the clock on (no real waiting); ``slept``: every pause."""

    def __init__(self, launcher):
        self.now, self.slept = 0.0, []
        launcher.clock, launcher.sleep = (lambda: self.now), self.sleep

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def scripted(launcher, answers: list) -> None:
    """squeue answers in turn (a dict of job id -> (state, reason), or an exception), the last one repeated."""
    from sweep.submission import JobState

    names = {}

    def states():
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return {i: JobState(state, reason, names.get(i, i), str(launcher.folder)) for i, (state, reason) in answer.items()}

    launcher.states = states


def test_the_wait_retries_a_failing_squeue_with_one_warning_and_polls_less_and_less_often(tmp_path, capsys):
    """Was: the first squeue failure (or timeout) ended the wait with a traceback; squeue every 2 s for hours."""
    from sweep.submission import Job, SqueueFailed, Submitted

    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")
    clock = Clock(launcher)
    down = SqueueFailed("squeue did not answer within 60 s")
    running = {"101": ("RUNNING", "None"), "103": ("PENDING", "Dependency")}
    done = {"101": ("COMPLETED", "None"), "103": ("RUNNING", "None")}
    scripted(launcher, [down, down, *[running] * 13, done, {"103": ("COMPLETED", "None")}])
    report = tmp_path / "s" / "report.md"

    def write_report_then_sleep(seconds):
        clock.sleep(seconds)
        if len(clock.slept) == 16:  # the report job writes it
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text("# report")

    launcher.sleep = write_report_then_sleep
    cells = tmp_path / "s" / "cells" / "blae"
    cells.mkdir(parents=True)
    (cells / "job.json").write_text(json.dumps({"outcome": "done"}))
    (cells / "results.json").write_text(json.dumps({"metrics": {}, "role": {"stage": "blae"}, "seconds": 3}))
    assert launcher.wait(launcher.sweep.plan(), Submitted({"blae": Job("101", True)}, "103")) == report
    out = capsys.readouterr().out
    assert out.count("warning: squeue did not answer within 60 s; retrying for up to 10 minutes") == 1
    assert "blae: job 101 running" in out and "blae: done in 3 s" in out and "report: " in out
    polls = clock.slept[2:15]  # while nothing changes
    assert polls[0] == 2.0 and polls[-1] == 30.0 and polls == sorted(polls)


def test_the_wait_gives_up_on_squeue_after_ten_minutes_in_one_line(tmp_path):
    from sweep.submission import Job, SqueueFailed, Submitted

    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")
    clock = Clock(launcher)
    scripted(launcher, [SqueueFailed("squeue failed (exit code 1): down")])
    with pytest.raises(MepsFault, match=r"^squeue failed \(exit code 1\): down, for 10 minutes: stopped waiting; the sweep's jobs go on"):
        launcher.wait(launcher.sweep.plan(), Submitted({"blae": Job("101", True)}, "103"))
    assert 600 <= clock.now < 800


def test_the_wait_stops_at_a_job_that_can_never_start_and_a_requeue_is_not_an_end(tmp_path, capsys):
    """Was: PREEMPTED (on its way back to PENDING) read as the end of the job; a job pending on PartitionTimeLimit waited
    for forever."""
    from sweep.submission import Job, Submitted

    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")
    Clock(launcher)
    scripted(
        launcher,
        [
            {"101": ("RUNNING", "None"), "103": ("PENDING", "Dependency")},
            {"101": ("PREEMPTED", "None"), "103": ("PENDING", "Dependency")},
            {"101": ("PENDING", "BeginTime"), "103": ("PENDING", "Dependency")},
            {"101": ("PENDING", "PartitionTimeLimit"), "103": ("PENDING", "Dependency")},
        ],
    )
    line = (
        "job 101 (blae) can never start: it is pending with reason PartitionTimeLimit (its resources, time limit, QOS or"
        " account do not fit the cluster); cancel the sweep's jobs with `scancel 101 103`, fix the settings and run the sweep again"
    )
    with pytest.raises(BadInput, match=f"^{re.escape(line)}$"):
        launcher.wait(launcher.sweep.plan(), Submitted({"blae": Job("101", True)}, "103"))
    out = capsys.readouterr().out
    assert "blae: job 101 running" in out and "blae: job 101 requeued (pending, BeginTime)" in out and "FAILED" not in out


def test_the_wait_names_a_failed_cell_with_its_error_line_and_code_and_the_cells_cancelled_with_it(tmp_path, capsys):
    from sweep.submission import Job, Submitted

    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")
    Clock(launcher)
    # blae's job 101: never seen in squeue (gone before the first poll): ended once the grace period passed
    scripted(launcher, [{"102": ("CANCELLED", "DependencyNeverSatisfied")}])
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
    assert "blae: FAILED (job 101 gone from squeue, exit code 2): error: sweep cell blae: boom" in out
    assert "kernel-gamma-1: job 102 cancelled (a cell it needs failed, or scancel)" in out


def test_a_cell_job_that_raised_is_named_with_submitits_result(tmp_path):
    from sweep.submission import job_result_error

    path = tmp_path / "101_0_result.pkl"
    path.write_bytes(pickle.dumps(("error", "Traceback (most recent call last):\n  ...\nKeyError: 'neural-gamma-3'\n")))
    assert job_result_error(path) == "KeyError: 'neural-gamma-3'" and job_result_error(tmp_path / "none.pkl") is None


def test_ctrl_c_stops_the_wait_not_the_jobs_and_says_how_to_follow_them(tmp_path):
    from sweep.submission import Job, Submitted

    launcher = launcher_of(tmp_path, "--gammas", "[1]", "--spread_cells", "[]")

    def interrupted():
        raise KeyboardInterrupt

    launcher.states = interrupted
    with pytest.raises(Preempted, match=r"^stopped waiting \(Ctrl-C\); the sweep's jobs go on on the cluster: follow them with "):
        launcher.wait(launcher.sweep.plan(), Submitted({"blae": Job("101", True)}, "103"))

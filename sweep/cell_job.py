"""What a SLURM job of the sweep runs (`sweep.py --launcher slurm`, submitted through submitit by `sweep/submission.py`).

Every job rebuilds the sweep from the settings resolved when it was submitted (``<out_dir>/slurm/sweep.<digest>.yaml``,
the parser's dump of the command line and its configs, from the folder `sweep.py` ran in): a job that starts hours
later runs what was submitted, whatever happened to the sweep configs since.

`CellJob`: one cell. A cell's arguments depend on the records of the cells it needs (the BL-AE's checkpoint, the
main cell's metrics), which exist only once their jobs ended: so the job builds its cell when it starts, resolving
the cells it needs from their records on disk (`Sweep.resolve_for_job`). It then runs the cell as the local launcher
does with several devices: `python train.py`, its output in the cell's log.txt, without the job's SLURM_* variables
(the run behaves as a local one: it launches its own ranks for --trainer.devices N, and never requeues the job
itself), on as many threads as the job has CPUs unless ``--threads`` says otherwise.

Preemption: SLURM sends submitit's signal (``--signal=USR2@<signal_delay_s>``, or ``scancel --signal=USR2``); submitit's
handler calls `CellJob.checkpoint`, which passes SIGTERM on to train.py, waits for it to save the step it reached (exit
code 75) at most until shortly before SLURM kills the job, and hands submitit the same job to requeue. The requeued
job finds the interrupted run through the cell's run.json (`sweep/records.attempt`): same run folder, same W&B run.

`ReportJob`: the report once every cell job ended well: every cell resolved from its records (it never runs one),
then report.json / report.md (rerunning `sweep.py` does the same).

Each job writes what became of its cell in the cell's ``job.json`` (`JOB_FILE`): the submitting `sweep.py` reads it.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from runtime import exit_codes
from runtime.atomic_files import read_json, write_json
from runtime.errors import MepsFault, one_line_error

JOB_FILE = "job.json"
"""In a cell's folder: its SLURM job (id, the definition of the cell it was submitted for) and how the job ended."""
KILL_MARGIN_S = 15
"""A preempted train.py gets until this long before SLURM's kill (``signal_delay_s`` after the signal) to checkpoint."""
TOO_MANY_TIMEOUTS = "requeued too many times: raise --slurm.time"
"""job.json's error when submitit gave up requeueing a job that kept reaching its time limit (``max_num_timeout``)."""


class FinishedMeanwhile(Exception):
    """Raised by `CellJob.checkpoint` when train.py had already finished (exit code 0) as the job was told to stop:
    the cell is sealed, not requeued."""


def job_record(folder: Path) -> dict[str, Any]:
    record = read_json(Path(folder) / JOB_FILE)
    return record if isinstance(record, dict) else {}


def update_job_record(folder: Path, **fields: Any) -> None:
    write_json(Path(folder) / JOB_FILE, {**job_record(folder), **fields})


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's ended children (train.py and its ranks)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def local_environment() -> dict[str, str]:
    """This job's environment without SLURM's and submitit's variables: train.py then runs as on a workstation."""
    from sweep.slurm_settings import SLURM_ENV_PREFIXES

    return {k: v for k, v in os.environ.items() if not k.startswith(SLURM_ENV_PREFIXES)}


def preempt_signal() -> signal.Signals:
    """submitit's preemption signal (``SlurmJobEnvironment.USR_SIG``: USR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` says)."""
    from submitit.slurm.slurm import SlurmJobEnvironment

    return signal.Signals[f"SIG{SlurmJobEnvironment.USR_SIG}"]


def ignore_signal(signum: int) -> None:
    """In train.py's process, before it starts: the preemption signal reaches every process of the job step, train.py
    included (whose default action for it is to die); the job passes SIGTERM on to it instead (`CellJob.checkpoint`)."""
    signal.signal(signum, signal.SIG_IGN)


def exit_status(pid: int, block: bool) -> int | None:
    """A child's exit code (minus the signal that killed it), seen but not reaped (``WNOWAIT``: the Popen's own wait
    reaps it); None while it runs (``block`` False)."""
    with suppress(ChildProcessError):
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG))
        if info is not None:
            return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
    return None


def sweep_of_job(settings: str, cwd: str):
    """The sweep a job runs: its settings file, from the folder `sweep.py` was started in, one cell at a time here."""
    from runtime.quiet import quiet_known_noise
    from sweep.arguments import sweep_from_args

    os.chdir(cwd)
    quiet_known_noise()
    return sweep_from_args(["-c", settings, "--launcher", "local", "--workers", "1"])


def record_failure(folder: Path, err: BaseException) -> None:
    """What ended a job with an exception, in its cell's job.json (and its log): stopped with a checkpoint (75),
    requeued too many times, or failed."""
    from submitit.core.utils import UncompletedJobError

    if isinstance(err, UncompletedJobError) and "too many times" in str(err):
        folder.mkdir(parents=True, exist_ok=True)
        update_job_record(folder, outcome="stopped", exit_code=exit_codes.RESUMABLE, error=f"{folder.name}: {TOO_MANY_TIMEOUTS}")
        print(f"error: {folder.name}: {TOO_MANY_TIMEOUTS} (its run resumes from its checkpoint when the sweep runs again)", flush=True)
        return
    if (error := one_line_error(err)) is not None:
        folder.mkdir(parents=True, exist_ok=True)
        outcome = "stopped" if error.exit_code == exit_codes.RESUMABLE else "failed"
        update_job_record(folder, outcome=outcome, exit_code=error.exit_code, error=error.message)
        print(f"error: {error.message}", flush=True)


@dataclass
class CellJob:
    """One cell of the sweep whose settings are the file ``settings`` (run from ``cwd``) as a SLURM job; ``threads``:
    train.py's threads when the sweep's ``--threads`` is null (the job's CPUs); ``signal_delay_s``: how long before
    SLURM's kill the preemption signal comes. ``checkpoint`` is submitit's preemption hook."""

    settings: str
    cwd: str
    name: str
    threads: int | None = None
    signal_delay_s: int = 120
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:  # the running train.py is this job's own, not the requeued one's
        return {**self.__dict__, "process": None}

    def __call__(self) -> str:
        sweep = sweep_of_job(self.settings, self.cwd)
        folder = sweep.out_dir / "cells" / self.name
        try:
            cell = sweep.resolve_for_job(sweep.plan(), self.name)
            if cell is None:
                line = f"{self.name}: nothing to run (reused, skipped or the same as another cell)"
                update_job_record(folder, outcome="nothing to run", line=line)
                return line
            return self.run(sweep, cell)
        except Exception as err:
            record_failure(folder, err)
            raise

    def run(self, sweep, cell) -> str:
        from sweep.console import cell_line
        from sweep.records import attempt, seal
        from sweep.workers import check_exit_code, launch_script

        now = attempt(cell.folder, cell.key, sweep.out_dir / "runs")
        if now.message:
            print(f"{cell.name}: {now.message}", flush=True)
        update_job_record(cell.folder, outcome="running", restarts=int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0))
        start, cpu_start = time.time(), children_cpu_seconds()
        preempt = preempt_signal()
        threads = sweep.threads or self.threads
        self.process = launch_script(cell, threads, now.args, env=local_environment(), preexec_fn=partial(ignore_signal, preempt))
        try:  # a preemption interrupts this wait: `checkpoint` runs, submitit requeues the job
            code = self.process.wait()
            signal.pthread_sigmask(signal.SIG_BLOCK, {preempt})  # train.py is done: no requeue while the cell is sealed
        except FinishedMeanwhile:
            signal.pthread_sigmask(signal.SIG_BLOCK, {preempt})
            code = self.process.wait()
        check_exit_code(cell, code, cell.folder / "log.txt")
        record = seal(cell, time.time() - start, children_cpu_seconds() - cpu_start)
        line = cell_line(cell.name, record)
        update_job_record(cell.folder, outcome="done", line=line)
        print(line, flush=True)
        return line

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's hook on its preemption signal (preemption, the time limit near): train.py is told to stop
        (SIGTERM), saves the step it reached and exits; the same job is returned for submitit to requeue.

        This runs in a signal handler while `run` is blocked in ``process.wait()``, which holds the Popen's wait lock:
        ``process.wait()`` here would deadlock, and reaping the child here would leave that wait an exit code of 0. So
        the exit is polled with ``waitid(WNOWAIT | WNOHANG)``: seen, not reaped; until `KILL_MARGIN_S` before SLURM's
        kill at most, then train.py is killed and the job requeued anyway (the run resumes from its last.ckpt). A
        train.py that had already finished (exit code 0): `FinishedMeanwhile`, caught by `run`, which seals the cell
        (no requeue); any other exit code: the cell failed (`MepsFault`, recorded by `__call__`)."""
        from submitit.helpers import DelayedSubmission

        process = self.process
        if process is not None:
            code = process.returncode if process.returncode is not None else exit_status(process.pid, block=False)
            if code is None:
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
                code = self.await_exit(process.pid, time.monotonic() + max(self.signal_delay_s - KILL_MARGIN_S, 1))
            if code == 0:
                print(f"{self.name}: train.py had finished when the job was told to stop: the cell is sealed, not requeued", flush=True)
                raise FinishedMeanwhile
            if code not in (exit_codes.RESUMABLE, -signal.SIGKILL):
                raise MepsFault(
                    f"sweep cell {self.name}: train.py exited with {code} when told to checkpoint (its log {self.log} says why)"
                )
            how = "was killed (no checkpoint in time: it resumes from its last one)" if code < 0 else f"stopped with exit code {code}"
            print(f"{self.name}: preempted; train.py {how}; the job is requeued and resumes its run", flush=True)
        return DelayedSubmission(self, *args, **kwargs)

    @property
    def log(self) -> str:
        return f"cells/{self.name}/log.txt"

    def await_exit(self, pid: int, deadline: float) -> int | None:
        """train.py's exit code once it exits, polled until ``deadline`` (monotonic); then it is killed (SIGKILL)."""
        while time.monotonic() < deadline:
            if (code := exit_status(pid, block=False)) is not None:
                return code
            time.sleep(0.2)
        print(f"{self.name}: train.py did not stop within {self.signal_delay_s - KILL_MARGIN_S} s: killed", flush=True)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return exit_status(pid, block=True)


@dataclass
class ReportJob:
    """The sweep's report as a job: every cell of the sweep whose settings are the file ``settings`` (run from ``cwd``)
    resolved from its records; its wall time counted from ``started``, when `sweep.py` submitted the sweep. A cell not
    finished: one line naming them, and no report (it never trains a cell)."""

    settings: str
    cwd: str
    started: float

    def __call__(self) -> str:
        from runtime.wandb_run import ensure_wandb_mode
        from sweep.records import CellFailed

        sweep = sweep_of_job(self.settings, self.cwd)
        ensure_wandb_mode()
        sweep.started = self.started
        plan = sweep.plan()
        sweep.planned = len(plan)
        if missing := sweep.unfinished(plan):
            message = f"the report needs every cell finished; not finished: {', '.join(missing)}: run the sweep again"
            print(f"error: {message}", flush=True)
            raise CellFailed(message, exit_codes.FAULT)
        return str(sweep.write_report())

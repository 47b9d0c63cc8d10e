"""What a SLURM job of the sweep runs (`sweep.py --launcher slurm`, submitted through submitit by `sweep/submission.py`).

`CellJob`: one cell. A cell's arguments depend on the records of the cells it needs (the BL-AE's checkpoint, the
main cell's metrics), which exist only once their jobs ended: so the job builds its cell when it starts, from the
same sweep command line in the same folder, resolving the cells it needs from their records on disk
(`Sweep.resolve_for_job`). It then runs the cell as the local launcher does with several devices: `python train.py`,
its output in the cell's log.txt, without the job's SLURM_* variables (the run behaves as a local one: it launches its
own ranks for --trainer.devices N, and never requeues the job itself).

Preemption: SLURM sends SIGUSR2 (``--signal=USR2@<signal_delay_s>``, or ``scancel --signal=USR2``); submitit's handler
calls `CellJob.checkpoint`, which passes SIGTERM on to train.py, waits for it to save the step it reached (exit code
75), and hands submitit the same job to requeue. The requeued job finds the interrupted run through the cell's run.json
(`sweep/records.attempt`): same run folder, same W&B run.

`ReportJob`: the local sweep of the same command line, once every cell job ended well: it reuses every finished cell
and writes report.json / report.md (rerunning `sweep.py` does the same).

Each job writes what became of its cell in the cell's ``job.json`` (`JobRecord`): the submitting `sweep.py` reads it.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import exit_codes
from runtime.atomic_files import read_json, write_json
from runtime.errors import one_line_error

JOB_FILE = "job.json"
"""In a cell's folder: its SLURM job (id, the sweep command line it was submitted for) and how the job ended."""
PREEMPT_SIGNAL = signal.SIGUSR2
"""submitit's preemption signal (``--signal=USR2@...``); train.py ignores it: the job passes SIGTERM on instead."""


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
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SLURMD_", "SBATCH_", "SUBMITIT_"))}


def ignore_preempt_signal() -> None:
    """In train.py's process, before it starts: SIGUSR2 reaches every process of the job step, train.py included
    (whose default action for it is to die); the job passes SIGTERM on to it instead (`CellJob.checkpoint`)."""
    signal.signal(PREEMPT_SIGNAL, signal.SIG_IGN)


def local_command(argv: list[str]) -> list[str]:
    """The sweep's command line as the local launcher runs it in a job (the last flag wins): one cell at a time
    (the cell job runs one; the report job reuses them all)."""
    return [*argv, "--launcher", "local", "--workers", "1"]


@dataclass
class CellJob:
    """One cell of the sweep ``argv`` (run from ``cwd``) as a SLURM job; ``checkpoint`` is submitit's preemption hook."""

    argv: list[str]
    cwd: str
    name: str
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:  # the running train.py is this job's own, not the requeued one's
        return {**self.__dict__, "process": None}

    def __call__(self) -> str:
        from runtime.quiet import quiet_known_noise
        from sweep.arguments import sweep_from_args

        os.chdir(self.cwd)
        quiet_known_noise()
        sweep = sweep_from_args(local_command(self.argv))
        folder = sweep.out_dir / "cells" / self.name
        try:
            cell = sweep.resolve_for_job(sweep.plan(), self.name)
            if cell is None:
                line = f"{self.name}: nothing to run (reused, skipped or the same as another cell)"
                update_job_record(folder, outcome="nothing to run", line=line)
                return line
            return self.run(sweep, cell)
        except Exception as err:
            if (error := one_line_error(err)) is not None:
                folder.mkdir(parents=True, exist_ok=True)
                outcome = "stopped" if error.exit_code == exit_codes.RESUMABLE else "failed"
                update_job_record(folder, outcome=outcome, exit_code=error.exit_code, error=error.message)
                print(f"error: {error.message}", flush=True)
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
        self.process = launch_script(cell, sweep.threads, now.args, env=local_environment(), preexec_fn=ignore_preempt_signal)
        code = self.process.wait()  # a preemption interrupts this wait: `checkpoint` runs, submitit requeues the job
        check_exit_code(cell, code, cell.folder / "log.txt")
        record = seal(cell, time.time() - start, children_cpu_seconds() - cpu_start)
        line = cell_line(cell.name, record)
        update_job_record(cell.folder, outcome="done", line=line)
        print(line, flush=True)
        return line

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's hook on SIGUSR2 (preemption, the time limit near): train.py is told to stop (SIGTERM), saves the
        step it reached and exits; the same job is returned for submitit to requeue.

        This runs in a signal handler while `__call__` is blocked in ``process.wait()``, which holds the Popen's wait
        lock: ``process.wait()`` here would deadlock, and reaping the child here would leave that wait an exit code of
        0. So the exit is awaited with ``waitid(WNOWAIT)``: seen, not reaped."""
        from submitit.helpers import DelayedSubmission

        process = self.process
        if process is not None and process.returncode is None:
            with suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            code = None
            with suppress(ChildProcessError):
                info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
                code = info.si_status if info is not None and info.si_code == os.CLD_EXITED else None
            print(f"{self.name}: preempted; train.py stopped with exit code {code}; the job is requeued and resumes its run", flush=True)
        return DelayedSubmission(self, *args, **kwargs)


@dataclass
class ReportJob:
    """The sweep's report as a job: the local sweep of ``argv`` (every cell reused), run from ``cwd``; its wall time
    counted from ``started``, when `sweep.py` submitted the sweep."""

    argv: list[str]
    cwd: str
    started: float

    def __call__(self) -> str:
        from runtime.quiet import quiet_known_noise
        from runtime.wandb_run import ensure_wandb_mode
        from sweep.arguments import sweep_from_args

        os.chdir(self.cwd)
        quiet_known_noise()
        sweep = sweep_from_args(local_command(self.argv))
        ensure_wandb_mode()
        sweep.started = self.started
        return str(sweep())

"""Running one sweep cell: in this process, in a worker forked from a server that imported train.py once, or
as `python train.py` (several devices: Lightning launches the ranks); stop signals are passed on to workers.

Every way, the cell's whole output goes to its `log.txt`, and its exit code says how it ended: 0 done,
75 stopped with a checkpoint (it resumes on the next sweep), anything else failed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import torch

from runtime import exit_codes
from runtime.errors import Preempted, one_line_error
from runtime.signals import STOP_SIGNALS, StopRequests, forward_to, stop_at_once
from runtime.wandb_run import RUN_ID_ENV
from sweep.cells import REPO_ROOT, Cell
from sweep.records import CellFailed, seal


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_in_process(cell: Cell, threads: int | None, extra: Sequence[str] = ()) -> None:
    """`train.py <subcommand> <args>` in this process, as a fresh process would see it (a stop raises Preempted)."""
    import wandb

    import train

    os.environ.pop(RUN_ID_ENV, None)
    own_argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI reads only `argv`, as a fresh process would
    if threads:
        torch.set_num_threads(threads)
    try:
        train.main([cell.subcommand, *cell.args, *extra])
    finally:
        sys.argv = own_argv
        wandb.finish()
        os.environ.pop(RUN_ID_ENV, None)


def run_as_script(cell: Cell, threads: int | None, extra: Sequence[str] = ()) -> None:
    """`python train.py ...` (several devices: Lightning launches the ranks); SIGTERM/SIGUSR1 are passed on."""
    process = launch_script(cell, threads, extra)
    with forward_to(process):  # the run checkpoints and exits 75, then so does the sweep
        code = process.wait()
    check_exit_code(cell, code, cell.folder / "log.txt")


def launch_script(
    cell: Cell, threads: int | None, extra: Sequence[str] = (), env: dict[str, str] | None = None, **popen
) -> subprocess.Popen:
    """`python train.py <subcommand> <args>` started, its whole output appended to the cell's log.txt; ``env``: its
    environment (default: this one), without this process's W&B run id."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != RUN_ID_ENV}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(cell.folder / "log.txt", "a", buffering=1) as sink:
        return subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "train.py"), cell.subcommand, *cell.args, *extra],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            **popen,
        )


def check_exit_code(cell: Cell, code: int | None, log: Path | None = None) -> None:
    """A cell's exit code as the sweep's outcome: 75 = stopped with a checkpoint, anything else but 0 = failed."""
    if code == exit_codes.RESUMABLE:
        raise Preempted(f"sweep cell {cell.name} was stopped with a checkpoint", "a stop request")
    if code != 0:
        where = f"its log {log} says why" if log is not None else "its error is above"
        raise CellFailed(
            f"sweep cell {cell.name}: train.py {cell.subcommand} exited with {code} ({where})",
            code if isinstance(code, int) and code > 0 else exit_codes.FAULT,
        )


def worker_main(cell: Cell, threads: int | None, extra: list[str]) -> None:
    """Entry of a forked worker: one cell, its output in the cell's log.txt; exit code 75 when stopped with a
    checkpoint, a one-line error (in the log) and its code when it failed."""
    log = open(cell.folder / "log.txt", "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    start, cpu_start = time.time(), cpu_seconds()
    try:
        with stop_at_once():
            run_in_process(cell, threads, extra)
            seal(cell, time.time() - start, cpu_seconds() - cpu_start)
    except Preempted as stop:
        print(stop, flush=True)
        exit_codes.exit_now(exit_codes.RESUMABLE)
    except Exception as err:
        line = one_line_error(err)
        if line is None:
            raise
        print(f"error: {line.message}", flush=True)
        exit_codes.exit_now(line.exit_code)


def last_error(cell: Cell) -> str:
    """The last `error:` line of a worker's log (what the cell failed of), or where to look."""
    return last_error_in(cell.folder)


def last_error_in(folder: Path) -> str:
    """The last `error:` line of the log.txt in a cell's folder, or where to look."""
    log = folder / "log.txt"
    return last_error_line(log) or f"see {log}"


def last_error_line(log: Path) -> str | None:
    """The last `error:` line of a log (a cell's, a SLURM job's), if any."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return next((line for line in reversed(lines) if line.startswith("error:")), None)


class ForwardToWorkers(StopRequests):
    """Records the first stop request and passes SIGTERM/SIGUSR1 on to each running worker (a scheduler may
    signal the sweep's process only); Ctrl-C reaches the workers from the terminal already."""

    def __init__(self, running: dict):
        super().__init__(STOP_SIGNALS)
        self.running = running  # sentinel -> (worker process, its cell), kept current by the schedule

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if signum == signal.SIGINT:
            return
        for process, _ in list(self.running.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)


@contextlib.contextmanager
def forward_to_workers(running: dict):
    """While workers run, stop requests to the sweep are recorded and passed on to them (``ForwardToWorkers``)."""
    stop = ForwardToWorkers(running).install()
    try:
        yield stop
    finally:
        stop.restore()


def worker_context():
    """Processes forked from a server that imported train.py once (seconds of imports saved per cell)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        context.set_forkserver_preload(["train"])
    return context

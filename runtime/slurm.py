"""SLURM: which job this is, a run id that a requeued job finds again, and requeueing.

Detection is Lightning's (``SLURMEnvironment.detect``: launched by ``srun``, not an interactive job).
The run id of a job is derived from the job id and the command (see ``slurm_run_id``), so every task of
a multi-task job agrees on it without talking to the others, and the same command in the requeued job
(same job id, ``SLURM_RESTART_COUNT`` + 1) lands in the same run folder and resumes it.

Requeueing is the last thing a stopped process does (``requeue_at_exit``): ``scontrol requeue`` ends the
running job at once, SIGTERM to every process of its steps (W&B's service process among them) and SIGKILL
after ``KillWait``. Called as soon as the checkpoint was saved, it killed W&B's service before the run's
last records were written (a real cluster showed it: the first start's W&B run had no summary and the
process printed a traceback from W&B's exit hook), so the process first finishes everything, W&B included.
W&B's finish gets ``WANDB_FINISH_DEADLINE_S`` (an online finish can hang on a slow server): the job is requeued
anyway after it, before the time limit ends the job as ``TIMEOUT``, which SLURM never requeues. ``scontrol`` gets
``SCONTROL_TIMEOUT_S``. The margin a job needs between ``--signal=USR1@<s>`` and its time limit is then one step
(a validation, when the step validates), the checkpoint, at most 60 s of W&B and the requeue (docs/clusters.md).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from lightning.fabric.plugins.environments import SLURMEnvironment

from runtime import exit_codes
from runtime.run_status import read_status

WANDB_FINISH_DEADLINE_S = 60.0
"""How long a requeued job waits for W&B to finish its run before it requeues without it."""
SCONTROL_TIMEOUT_S = 30.0
"""How long ``scontrol requeue`` may take (a SIGTERM cannot stop it then: the process ignores SIGTERM)."""


def slurm_job_key() -> str | None:
    """``<array job>_<task>`` for an array task, else the job id; None outside a (non-interactive) SLURM job."""
    if not SLURMEnvironment.detect() or SLURMEnvironment.job_id() is None:
        return None
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array_job}_{task}" if array_job and task else str(SLURMEnvironment.job_id())


def restart_count() -> int:
    """How often SLURM has requeued this job (0 on its first start)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def slurm_run_id(job_key: str, fingerprint: str, runs_root: Path) -> str:
    """The run id of this command in this job: the same on every task and after a requeue.

    A run of the same command that already finished in this job (a script that runs it twice) is
    skipped, so a second run gets an id of its own instead of appending to a finished W&B run.
    """
    for attempt in range(1000):
        run_id = hashlib.sha256(f"{job_key}/{fingerprint}/{attempt}".encode()).hexdigest()[:8]
        if read_status(Path(runs_root) / run_id).get("state") != "finished":
            return run_id
    raise RuntimeError(f"SLURM job {job_key} already finished 1000 runs of this command")


def requeue(job_key: str) -> str:
    """``scontrol requeue <job>`` (what Lightning's own SIGUSR1 handler runs); a line saying how it went."""
    if shutil.which("scontrol") is None:
        return f"cannot requeue SLURM job {job_key}: scontrol not found"
    try:
        result = subprocess.run(["scontrol", "requeue", job_key], capture_output=True, text=True, timeout=SCONTROL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"requeueing SLURM job {job_key} failed (scontrol did not answer within {SCONTROL_TIMEOUT_S:.0f} s)"
    if result.returncode == 0:
        return f"requeued SLURM job {job_key}"
    return f"requeueing SLURM job {job_key} failed (scontrol exit {result.returncode}: {' '.join(result.stderr.split())[:200]})"


_requeue_at_exit: list[str] = []


def requeue_at_exit(job_key: str) -> None:
    """Requeue SLURM job ``job_key`` when this process exits, after everything else it writes is complete (W&B's run
    within ``WANDB_FINISH_DEADLINE_S``)."""
    if not _requeue_at_exit:
        atexit.register(_finish_wandb_or_requeue_now)  # registered after W&B's exit hook: runs before it
    _requeue_at_exit.append(job_key)


def _finish_wandb_or_requeue_now() -> None:
    """W&B's run finished first, within ``WANDB_FINISH_DEADLINE_S``; when it is not done by then, the job is requeued
    now and this process ends (exit 75) without waiting for it: a lost W&B summary, not a lost job."""
    if not _requeue_at_exit or (wandb := sys.modules.get("wandb")) is None:
        return
    finish = threading.Thread(target=_teardown, args=(wandb,), name="wandb-finish", daemon=True)
    finish.start()
    finish.join(WANDB_FINISH_DEADLINE_S)
    if finish.is_alive():
        print(f"W&B did not finish its run within {WANDB_FINISH_DEADLINE_S:.0f} s: requeueing without it", file=sys.stderr, flush=True)
        job_key = _requeue_at_exit.pop()
        _requeue_at_exit.clear()
        _requeue_now(job_key)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(exit_codes.RESUMABLE)


def _teardown(wandb: object) -> None:
    with contextlib.suppress(Exception):  # torn down by its own exit hook already, or its service is gone
        wandb.teardown()  # type: ignore[attr-defined]


@atexit.register  # at import, before W&B's service registers its exit hook: exit hooks run last registered first
def _requeue_last() -> None:
    """The requeue ``requeue_at_exit`` asked for: W&B's run is finished first (a no-op when it was already), then the
    job is requeued with SIGTERM ignored, so that this process exits with its own code instead of being killed by the
    job's end that the requeue starts."""
    if not _requeue_at_exit:
        return
    job_key = _requeue_at_exit.pop()
    _requeue_at_exit.clear()
    if (wandb := sys.modules.get("wandb")) is not None:
        _teardown(wandb)
    _requeue_now(job_key)


def _requeue_now(job_key: str) -> None:
    """``scontrol requeue`` with SIGTERM ignored: the job's end that it starts does not kill this process."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(requeue(job_key), flush=True)

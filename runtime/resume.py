"""Which run a ``fit`` continues, decided before anything is built (no W&B run, no folder yet).

- ``--ckpt_path last``: the run named by ``--trainer.logger.init_args.id`` or ``MEPS_RUN_ID``; without
  either, the newest resumable run of the same model class under the run folder root (said in one line).
- ``--ckpt_path <file>``: the run stored in the checkpoint (an explicit id wins: a fork).
- no ``--ckpt_path`` inside a SLURM job: the run of this command in this job (``runtime/slurm.py``); when a
  requeued job finds it with a checkpoint, it goes on from there by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from runtime.checkpoint_files import existing_file, load_torch_file
from runtime.run_status import last_checkpoint, read_status, resumable_runs

LIGHTNING_CKPT_KEYWORDS = ("last", "best", "hpc")
RESUMABLE_STATE_KEY = "ResumableRun"
"""Callback-state key under which ``callbacks/resumable_run.ResumableRun`` stores the run id in a checkpoint."""


class Resume(NamedTuple):
    """What a command continues: the run id (None: a new run), the checkpoint to load, and a line saying so."""

    run_id: str | None
    ckpt_path: str | None
    message: str | None = None


def stored_run_id(checkpoint: dict[str, Any]) -> str | None:
    """The run id ``ResumableRun`` stored in a loaded checkpoint dict, if any."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if str(key).startswith(RESUMABLE_STATE_KEY) and isinstance(state, dict) and state.get("run_id"):
            return str(state["run_id"])
    return None


def checkpoint_run_id(path: str | Path) -> str | None:
    """The run id of a checkpoint: stored by ``ResumableRun``, else read from ``<run id>/checkpoints/x.ckpt``.

    Reads the pickle only (``mmap``, ``weights_only``): the tensors are not loaded.
    """
    path = Path(path).expanduser()
    try:
        checkpoint = load_torch_file(path, mmap=True)
        run_id = stored_run_id(checkpoint) if isinstance(checkpoint, dict) else None
        if run_id:
            return run_id
    except Exception:  # not a zip checkpoint, unreadable pickle: fall back to the folder layout
        pass
    folder = path.resolve().parent
    if folder.name == "checkpoints" and (folder.parent / "config.yaml").is_file():
        return folder.parent.name
    return None


def require_checkpoint_file(ckpt_path: str) -> None:
    """Fail before anything is created (W&B run, run folder) when --ckpt_path names no file."""
    if ckpt_path not in LIGHTNING_CKPT_KEYWORDS and "://" not in ckpt_path:
        existing_file(ckpt_path, "--ckpt_path")


def _continue(run_id: str, runs_root: Path, how: str) -> Resume:
    """Resume ``run_id`` from its newest ``last*.ckpt`` (Lightning's own "last" when it has none yet)."""
    folder = Path(runs_root) / run_id
    checkpoint = last_checkpoint(folder)
    if checkpoint is None:
        return Resume(run_id, "last", f"resume: run {run_id} has no last.ckpt in {folder / 'checkpoints'}: it STARTS FROM SCRATCH")
    return Resume(run_id, str(checkpoint), f"resume: run {run_id}{how} goes on from the last checkpoint {checkpoint}")


def resume(
    ckpt_path: str | None, explicit_id: str | None, runs_root: Path, env_id: str | None = None, model_class: str | None = None
) -> Resume:
    """The run that a ``fit`` with this ``--ckpt_path`` continues. One-line errors for what cannot work.

    ``explicit_id`` comes from ``--trainer.logger.init_args.id``, ``env_id`` from ``MEPS_RUN_ID``,
    ``model_class`` from the command's ``model.class_path`` (runs of another model are never chosen).
    """
    if not ckpt_path:
        return Resume(explicit_id or env_id, None)
    if ckpt_path == "last":
        if run_id := explicit_id or env_id:
            return _continue(run_id, runs_root, "")
        candidates = resumable_runs(runs_root, model_class)
        if not candidates:
            raise FileNotFoundError(
                f"--ckpt_path last: no unfinished run of {model_class or 'this model'} with a last.ckpt in {runs_root};"
                f" name one with MEPS_RUN_ID=<run id> or --ckpt_path {runs_root}/<run id>/checkpoints/last.ckpt"
            )
        newest, others = candidates[0], candidates[1:]
        also = f"; {len(others)} older one(s) there, e.g. {others[0].run_id} ({others[0].describe()})" if others else ""
        return _continue(newest.run_id, runs_root, f", the newest resumable run in {runs_root} ({newest.describe()}{also}),")
    if ckpt_path in LIGHTNING_CKPT_KEYWORDS:
        raise ValueError(
            f"--ckpt_path {ckpt_path} only means something to a Trainer that has fitted already, in the same"
            " process; to continue a run: --ckpt_path last, or the path of a .ckpt file"
        )
    require_checkpoint_file(ckpt_path)
    run_id = explicit_id or checkpoint_run_id(ckpt_path) or env_id
    if run_id is None:
        return Resume(None, ckpt_path, f"resume: {ckpt_path} names no run, so a new run goes on from it")
    return Resume(run_id, ckpt_path, f"resume: run {run_id} goes on from {ckpt_path} (run folder {Path(runs_root) / run_id})")


def slurm_resume(run_id: str, runs_root: Path, job_key: str, restarts: int) -> Resume:
    """The run of this command in SLURM job ``job_key``: resumed when an earlier start of the job left a checkpoint."""
    folder = Path(runs_root) / run_id
    checkpoint = last_checkpoint(folder)
    if checkpoint is None or read_status(folder).get("state") == "finished":
        return Resume(run_id, None)
    return Resume(
        run_id,
        str(checkpoint),
        f"resume: SLURM job {job_key} restarted (SLURM_RESTART_COUNT={restarts}): run {run_id} goes on from {checkpoint}",
    )

"""Records of a sweep's cells (one ``train.py`` run each): what a finished cell promises, its sealed
``results.json``, and the run an interrupted cell goes on with.

- A cell counts as done only when its ``results.json`` matches its arguments *and* what it promises
  exists: a fit promises a checkpoint file on disk and its validation metrics, a validate run its
  metrics. Anything less (a checkpoint deleted since, a fit that stopped before it ever validated, a
  results file of an older version with empty paths) is rebuilt, or refused with the reason.
- Each cell keeps ``run.json`` (its arguments' key and its run id). A cell whose run was stopped
  (preempted, killed) goes on with that run: same run folder, same W&B run, from its ``last.ckpt``.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import NamedTuple

from runtime.atomic_files import read_json, write_json
from runtime.errors import BadInput, MepsFault
from runtime.run_status import last_checkpoint, read_status
from sweep.cells import Cell

RUN_FILE = "run.json"


class CellFailed(MepsFault):
    """A cell's ``train.py`` process failed (its own error line is above); the sweep exits with its code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def missing_promise(record: dict, subcommand: str, stage: str | None = None) -> str | None:
    """What a cell's results promise but do not hold (None when complete); for a fit of the sweep's ``stage``
    that never validated, the sweep options that make it validate."""
    metrics = record.get("metrics") or {}
    if subcommand == "fit":
        paths = [record.get("best_checkpoint"), record.get("last_checkpoint")]
        existing = [p for p in paths if p and Path(p).is_file()]
        if not existing:
            named = [p for p in paths if p]
            return f"its checkpoint {named[0]} is gone" if named else "it recorded no checkpoint"
        if not any(key.startswith("val/") for key in metrics):
            step = record.get("global_step")
            # validation counted in steps (no epoch cadence): any interval is valid, however short the epochs
            args = f"--{stage or '<stage>'}.args+="
            sooner = f"{args}--trainer.check_val_every_n_epoch=null {args}--trainer.val_check_interval={step or 'N'}"
            return (
                f"train.py fit stopped at step {step} before it ever validated (no val/ metrics):"
                f" raise --trainer.max_steps, or validate within its steps: {sooner}"
            )
    elif not metrics:
        return f"train.py {subcommand} recorded no metrics"
    return None


def recorded(cell: Cell) -> dict | None:
    """The results of an earlier run of exactly these arguments, complete or not."""
    record = read_json(cell.results_path)
    return record if isinstance(record, dict) and record.get("cell_key") == cell.key else None


def finished(cell: Cell) -> dict | None:
    """The results, when they hold everything the cell promises (`missing_promise`)."""
    record = recorded(cell)
    return record if record is not None and missing_promise(record, cell.subcommand, cell.role.get("stage")) is None else None


def seal(cell: Cell, seconds: float, cpu_s: float) -> dict:
    """results.json.partial (written by the run) -> results.json with the cell's key, role and costs,
    once it holds what the cell promises (else nothing is recorded and the next sweep runs it again)."""
    if not cell.partial_path.is_file():
        raise RuntimeError(f"{cell.name}: train.py {cell.subcommand} finished without writing {cell.partial_path}")
    record = {
        **json.loads(cell.partial_path.read_text()),
        "cell_key": cell.key,
        "role": cell.role,
        "seconds": seconds,
        "cpu_s": cpu_s,
        "args": [cell.subcommand, *cell.args],
    }
    if (missing := missing_promise(record, cell.subcommand, cell.role.get("stage"))) is not None:
        raise BadInput(f"sweep cell {cell.name}: {missing}")
    write_json(cell.results_path, record)
    cell.partial_path.unlink()
    return record


class Attempt(NamedTuple):
    """How a cell runs now: the arguments to add to its command, and a line saying so (None: a fresh run)."""

    args: list[str]
    message: str | None


def _run_folder(runs_root: Path, run_id: str) -> Path | None:
    """``<runs_root>/<project>/<run id>`` whatever the project (stage configs may set another one)."""
    return next((folder for folder in Path(runs_root).glob(f"*/{run_id}") if folder.is_dir()), None)


def attempt(cell_folder: Path, cell_key: str, runs_root: Path) -> Attempt:
    """Resume the cell's earlier run when it stopped with a checkpoint; else start one with a new id.

    The run id is fixed before the run starts (``--trainer.logger.init_args.id``), so a kill at any
    moment leaves a run that the next attempt finds.
    """
    path = Path(cell_folder) / RUN_FILE
    previous = read_json(path) or {}
    if previous.get("cell_key") == cell_key and previous.get("run_id"):
        run_id = previous["run_id"]
        folder = _run_folder(runs_root, run_id)
        checkpoint = last_checkpoint(folder) if folder is not None else None
        status = read_status(folder) if folder is not None else {}
        if checkpoint is not None and status.get("state") != "finished":
            step = status.get("global_step")
            how = f"{status.get('state', 'stopped')} at step {step}" if step is not None else status.get("state", "stopped")
            return Attempt(
                ["--trainer.logger.init_args.id", run_id, "--ckpt_path", "last"],
                f"resuming its interrupted run {run_id} ({how}) from {checkpoint}",
            )
    run_id = secrets.token_hex(4)
    write_json(path, {"cell_key": cell_key, "run_id": run_id})
    return Attempt(["--trainer.logger.init_args.id", run_id], None)

"""``<run folder>/status.json``: what became of a run, so that a rerun knows which run to continue.

``state`` is ``running`` while it trains (also what a SIGKILLed run leaves behind), ``preempted`` after
a stop request saved a checkpoint of the step reached, ``failed`` after an error, ``finished`` after a
complete fit. A run is resumable when it is not ``finished`` and has a ``last.ckpt``. The file also
records the command's fingerprint and the SLURM job it ran in, so a requeued job (same job id, same
command) finds its own run.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from runtime.atomic_files import read_json, write_json

STATUS_FILE = "status.json"
RESUMABLE_STATES = ("running", "preempted", "failed")
RESUME_FLAGS = ("--ckpt_path",)
"""Flags that a resumed command adds to the original one: left out of the command's fingerprint."""


def without_resume_flags(argv: list[str]) -> list[str]:
    """``argv`` without ``--ckpt_path X`` / ``--ckpt_path=X``: the command as it was first given."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in RESUME_FLAGS:
            skip = True
        elif arg.split("=", 1)[0] not in RESUME_FLAGS:
            kept.append(arg)
    return kept


def command_fingerprint(argv: list[str]) -> str:
    """A hash of a command line without ``--ckpt_path``: a requeued job runs the identical command."""
    return hashlib.sha256(json.dumps(without_resume_flags(argv)).encode()).hexdigest()[:16]


def write_status(run_folder: Path, state: str, **fields: Any) -> dict:
    """Merge ``fields`` into the run's status and set its ``state`` (atomically)."""
    path = Path(run_folder) / STATUS_FILE
    record = {**(read_json(path) or {}), **fields, "state": state, "updated": time.time()}
    write_json(path, record)
    return record


def read_status(run_folder: Path) -> dict:
    return read_json(Path(run_folder) / STATUS_FILE) or {}


class ResumeCandidate(NamedTuple):
    run_id: str
    checkpoint: Path
    mtime: float
    status: dict

    def describe(self, now: float | None = None) -> str:
        """``"preempted at step 6, checkpoint written 2 min ago"``."""
        state = self.status.get("state", "no status")
        step = self.status.get("global_step")
        how = f"{state} at step {step}" if state == "preempted" and step is not None else state
        return f"{how}, checkpoint written {age(self.mtime, now)}"


def age(timestamp: float, now: float | None = None) -> str:
    seconds = (now or time.time()) - timestamp
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


def last_checkpoint(run_folder: Path) -> Path | None:
    """The newest ``last*.ckpt`` of a run folder (what Lightning's ``--ckpt_path last`` picks)."""
    found = []
    for path in (Path(run_folder) / "checkpoints").glob("last*.ckpt"):
        try:
            found.append((path.stat().st_mtime, path))
        except OSError:
            continue
    return max(found)[1] if found else None


def model_class_of(run_folder: Path) -> str | None:
    """``model.class_path`` of the run's ``config.yaml``, or None."""
    try:
        model = (yaml.safe_load((Path(run_folder) / "config.yaml").read_text()) or {}).get("model")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return model.get("class_path") if isinstance(model, dict) else None


def resumable_runs(runs_root: Path, model_class: str | None = None) -> list[ResumeCandidate]:
    """Runs under ``runs_root`` that a resume can continue, newest checkpoint first.

    ``model_class``: keep only runs of this model (a run of another model is never the one a command resumes).
    """
    runs = []
    for folder in Path(runs_root).glob("*/"):
        status = read_status(folder)
        if status.get("state") not in (None, *RESUMABLE_STATES):
            continue
        checkpoint = last_checkpoint(folder)
        if checkpoint is None:
            continue
        if model_class is not None and model_class_of(folder) not in (None, model_class):
            continue
        runs.append(ResumeCandidate(folder.name, checkpoint, checkpoint.stat().st_mtime, status))
    return sorted(runs, key=lambda run: -run.mtime)

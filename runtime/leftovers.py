"""A command that fails on a bad input before its first step leaves nothing behind (exit code 2: nothing written).

Some inputs can only be read once the run has begun: Lightning starts the W&B run before the data module's
``setup`` (a corrupted token cache is found there), and the run folder holds the run's lock from the start.
So what this process created for the run is recorded before anything is written (``CreatedFolders``) and, on
such a failure, removed (``remove_leftovers``): the W&B run of this attempt (finished first, then its folder
and W&B's links to it), the run folder if this process made it, and the folders above them it made, if empty.
A resumed run's folder, which was there before, is never removed; neither is what another process wrote
into a folder this one made. The W&B server side of an online run cannot be undone here: it ends as failed.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger

from runtime.wandb_run import run_dir


def first_missing(folder: Path) -> Path | None:
    """The topmost folder of ``folder``'s path that does not exist yet (what ``mkdir -p`` would create), or None."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def active_wandb_run_id() -> str | None:
    """The id of the W&B run active in this process, if any (without importing wandb when nothing did)."""
    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb is not None else None
    return getattr(run, "id", None) if run is not None else None


class CreatedFolders(NamedTuple):
    """Folders of a run and, for each, the topmost one of its path that did not exist before this process (None: it did);
    and the W&B run already active in this process before this command (a WandbLogger then reuses it: not ours to remove)."""

    run_folder: tuple[Path, Path | None] | None
    wandb_folders: list[tuple[Path, Path | None]]
    earlier_wandb_run: str | None = None

    @classmethod
    def before_start(cls, trainer: Trainer) -> CreatedFolders:
        """Recorded after the Trainer is built, before anything is written (``runtime/run_location.prepare_wandb_init``)."""
        folder = run_dir(trainer)
        wandb = []
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                root = Path(os.environ.get("WANDB_DIR") or logger._wandb_init.get("dir") or logger.save_dir or ".").absolute() / "wandb"
                wandb.append((root, first_missing(root)))
        run_folder = (folder.absolute(), first_missing(folder.absolute())) if folder is not None else None
        return cls(run_folder, wandb, active_wandb_run_id())


def remove_empty_folders(folder: Path, up_to: Path) -> None:
    """``rmdir`` ``folder`` and its parents up to ``up_to`` (included) while they are empty."""
    for path in (folder, *folder.parents):
        if path.exists():
            try:
                path.rmdir()
            except OSError:
                return  # not empty: another process writes there too
        if path == up_to:
            return


def remove_wandb_run(logger: WandbLogger, earlier_run: str | None) -> None:
    """Finish the W&B run this logger started and delete its local folder and W&B's links into it; a run that was
    active before this command (``earlier_run``, reused by the logger) and a disabled run (no folder) are left alone."""
    run = logger._experiment
    if run is None or not hasattr(run, "dir") or getattr(run, "id", None) == earlier_run:
        return
    folder = Path(run.dir).parent.absolute()  # <wandb dir>/offline-run-<time>-<id>; files/ is run.dir
    run.finish(exit_code=2)
    logger._experiment = None
    if not folder.is_dir():  # WANDB_MODE=disabled: a run object with a folder that was never made
        return
    shutil.rmtree(folder, ignore_errors=True)
    for link in folder.parent.iterdir():  # latest-run, debug.log, debug-internal.log
        if link.is_symlink() and (folder in Path(os.readlink(link)).absolute().parents or not link.exists()):
            link.unlink(missing_ok=True)


def remove_leftovers(trainer: Trainer, created: CreatedFolders) -> None:
    """Undo what this process created for a run that failed on a bad input before its first step. Best effort: a
    failure here (a file system gone read-only, W&B refusing to finish) must not hide the error being reported."""
    try:
        remove_created(trainer, created)
    except Exception:  # noqa: BLE001  # the caller re-raises the user's error, which is what must be seen
        pass


def remove_created(trainer: Trainer, created: CreatedFolders) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            remove_wandb_run(logger, created.earlier_wandb_run)
    folders = [created.run_folder, *created.wandb_folders] if created.run_folder is not None else created.wandb_folders
    made_here = [(folder, made) for folder, made in folders if made is not None]
    if created.run_folder in made_here:
        shutil.rmtree(created.run_folder[0], ignore_errors=True)  # this process made it: everything in it is this run's
    for folder, made in made_here:
        remove_empty_folders(folder, made)

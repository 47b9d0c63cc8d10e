"""The folders a command writes into are writable, checked before any work starts (no W&B run, no run folder yet).

Without the check, a read-only ``--trainer.default_root_dir`` ends in ``OSError: [Errno 30] Read-only file
system`` deep inside the Trainer's set-up, exit code 1, after the data was loaded and the model built.
A folder is writable when a file can be created in it, or, when it does not exist yet, in its nearest
existing parent (which then must be a folder). The check creates an anonymous temporary file and nothing
else; it asks the file system rather than reading permission bits, because root ignores those while a
read-only mount binds root too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from runtime.errors import BadInput


def nearest_existing(path: Path) -> Path:
    """``path`` itself when it exists, else its nearest parent that does (what creating ``path`` would write into)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def unwritable_because(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written into ``folder`` (created when missing), or None when they can."""
    path = Path(folder).expanduser().absolute()
    existing = nearest_existing(path)
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"{err.strerror or err}" + (f" at {existing}" if existing != path else "")
    return None


def output_folders(config) -> dict[str, str]:
    """The folders a parsed LightningCLI (sub)command ``config`` writes into, each under the flag (or variable) that sets it."""
    from runtime.run_location import DEFAULT_ROOT_DIR, wandb_logger_args  # imports Lightning: ``unwritable_because`` does not

    root = str((config.get("trainer") or {}).get("default_root_dir") or DEFAULT_ROOT_DIR)
    folders = {"--trainer.default_root_dir": root}
    loggers = wandb_logger_args(config) if config.get("trainer") else []
    for init_args in loggers:
        if init_args.get("save_dir") and str(init_args["save_dir"]) != root:
            folders["--trainer.logger.init_args.save_dir"] = str(init_args["save_dir"])
    if loggers and os.environ.get("WANDB_DIR"):  # where W&B writes its files (runtime/run_location.py)
        folders["WANDB_DIR"] = os.environ["WANDB_DIR"]
    return folders


def require_writable_output_folders(config) -> None:
    """One line naming the first folder of ``config`` that cannot be written, before anything is created."""
    for flag, folder in output_folders(config).items():
        if (problem := unwritable_because(folder)) is not None:
            raise BadInput(f"{flag} {folder}: cannot write there ({problem}); give a folder you can write to")

"""Where a run's files land: ``--trainer.default_root_dir`` holds the run folder and the W&B files, and
``WANDB_DIR`` moves the W&B files (as Lightning's and W&B's users expect).

The WandbLogger's ``save_dir`` is the root of the run folders (``<save_dir>/<project>/<run id>/``: config.yaml,
checkpoints/) and, for Lightning, also the folder W&B writes into. Left unset, it is the Trainer's
``default_root_dir`` (``outputs`` unless given). ``WANDB_DIR`` then sends only the W&B files elsewhere.
"""

from __future__ import annotations

import os

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger

DEFAULT_ROOT_DIR = "outputs"


def wandb_logger_args(config) -> list:
    """The ``init_args`` of every WandbLogger in a parsed LightningCLI config."""
    loggers = config.trainer.logger
    return [
        logger.init_args
        for logger in (loggers if isinstance(loggers, list) else [loggers])
        if getattr(logger, "class_path", "").endswith("WandbLogger")
    ]


def place_run_folders(config) -> None:
    """A WandbLogger with ``save_dir: null`` (train.py's default logger) keeps its runs under ``trainer.default_root_dir``."""
    root = config.trainer.get("default_root_dir") or DEFAULT_ROOT_DIR
    for init_args in wandb_logger_args(config):
        if not init_args.get("save_dir"):
            init_args["save_dir"] = str(root)


def prepare_wandb_init(trainer: Trainer) -> None:
    """Before the W&B run starts: ``WANDB_DIR`` (when set) is where W&B writes, the run folder stays where it
    was (Lightning passes ``save_dir`` to ``wandb.init(dir=...)``, which would otherwise win over the
    variable); that folder exists (else W&B warns "git root ... does not exist"); and Lightning's
    ``anonymous=None`` is not passed on (W&B warns that the setting is deprecated)."""
    wandb_dir = os.environ.get("WANDB_DIR")
    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger) or logger._experiment is not None:
            continue
        init = logger._wandb_init  # Lightning keeps wandb.init's arguments here until the run starts
        if wandb_dir:
            init["dir"] = wandb_dir
        if init.get("dir"):
            init["dir"] = os.path.abspath(init["dir"])
            os.makedirs(init["dir"], exist_ok=True)
        if init.get("anonymous") is None:
            init.pop("anonymous", None)

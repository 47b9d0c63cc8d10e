"""One W&B run per job: offline when there is no key, the full CLI config in the run, a run folder.

The run folder `<save_dir>/<project>/<run id>/` holds `config.yaml` and `checkpoints/` (Lightning's
ModelCheckpoint puts them there for a WandbLogger), so two runs never collide on config.yaml (P3).
"""
from __future__ import annotations

import netrc
import os
import secrets
import sys
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

RUN_ID_ENV = "MEPS_RUN_ID"


def wandb_key_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        netrc_path = os.environ.get("NETRC") or Path.home() / ".netrc"
        return netrc.netrc(netrc_path).authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def ensure_wandb_mode() -> str:
    """Pick offline mode when no API key is configured, so no run ever waits on a login prompt."""
    if "WANDB_MODE" not in os.environ and not wandb_key_available():
        os.environ["WANDB_MODE"] = "offline"
        if os.environ.get("LOCAL_RANK", "0") == "0":
            print("W&B: no API key found, logging offline (sync later with `wandb sync <run dir>`)", file=sys.stderr)
    return os.environ.get("WANDB_MODE", "online")


def job_run_id() -> str:
    """A run id shared by every rank of a job: rank 0 draws it, DDP children inherit the env var."""
    if RUN_ID_ENV not in os.environ:
        os.environ[RUN_ID_ENV] = secrets.token_hex(4)
    return os.environ[RUN_ID_ENV]


def run_dir(trainer: Trainer) -> Path | None:
    """The run folder of the job's WandbLogger (needs no collective), or None without one."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return Path(logger.save_dir or ".") / str(logger.name) / str(logger.version)
    return None


def wandb_files_dir(trainer: Trainer) -> Path | None:
    """Local folder of the W&B run (what `wandb sync` and `wandb leet inspect` read). Rank 0 only."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger.experiment is not None and hasattr(logger.experiment, "dir"):
            return Path(logger.experiment.dir).parent
    return None


class WandbSaveConfigCallback(SaveConfigCallback):
    """Writes the resolved config into the run folder and into the W&B run's config (C7, P4)."""

    def __init__(self, parser, config, config_filename: str = "config.yaml", overwrite: bool = True, multifile: bool = False):
        super().__init__(parser, config, config_filename, overwrite, multifile, save_to_log_dir=False)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        folder = run_dir(trainer) or Path(trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(folder / self.config_filename), skip_none=False, overwrite=True, multifile=self.multifile)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config.as_dict(), allow_val_change=True)

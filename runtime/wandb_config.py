"""The full CLI config of a run, in its run folder (``config.yaml``) and in its W&B run's config.

A resumed run (``fit --ckpt_path``, same run id) keeps the config of each earlier attempt as
``config.attempt-<n>.yaml`` (``keep_previous_config``). Apart from ``runtime/wandb_run.py`` because it
is a Lightning class: that module is imported by the sweep's parser too, which needs no Lightning.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from runtime.wandb_run import keep_previous_config, run_dir


class WandbSaveConfigCallback(SaveConfigCallback):
    """Writes the resolved config into the run folder and into the W&B run's config."""

    def __init__(self, parser, config, config_filename: str = "config.yaml", overwrite: bool = True, multifile: bool = False):
        super().__init__(parser, config, config_filename, overwrite, multifile, save_to_log_dir=False)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        folder = run_dir(trainer) or Path(trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.config_filename
        if target.is_file() and stage == "fit" and self.config.get("ckpt_path"):
            keep_previous_config(target)  # a resumed run: the config of every attempt stays in the folder
        self.parser.save(self.config, str(target), skip_none=False, overwrite=True, multifile=self.multifile)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config.as_dict(), allow_val_change=True)

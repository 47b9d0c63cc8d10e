"""ImageLogger: asks the model for `log_images(batch)` after validation and logs uint8 grids."""

from pathlib import Path
from typing import Protocol, cast

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from imaging.grids import make_grid, save_png


class ImageLoggingModel(Protocol):
    """What ImageLogger asks of a model (every LightningModule of this project has it)."""

    def log_images(self, batch: dict, max_images: int = 16) -> dict[str, Tensor]: ...


def move_batch(batch: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


class ImageLogger(Callback):
    """Keeps the first validation batch seen on global rank 0 and logs the model's images for it.

    Only global rank 0 does anything, and it makes no collective call (log_images is a plain
    forward/sampling pass), so the other ranks never wait on it.
    """

    def __init__(self, max_images: int = 16, every_n_epochs: int = 1, local_dir: str | None = None):
        self.max_images, self.every_n_epochs, self.local_dir = max_images, every_n_epochs, local_dir
        self.fixed_batch: dict | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.fixed_batch is None and trainer.is_global_zero and isinstance(batch, dict):
            self.fixed_batch = move_batch({k: v[: self.max_images] if torch.is_tensor(v) else v for k, v in batch.items()}, "cpu")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.fixed_batch is None:
            return
        if trainer.current_epoch % self.every_n_epochs and trainer.state.fn != "validate":
            return
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            images = cast(ImageLoggingModel, pl_module).log_images(
                move_batch(self.fixed_batch, pl_module.device), max_images=self.max_images
            )
        pl_module.train(was_training)
        self.log_grids({k: make_grid(v) for k, v in images.items()}, trainer)

    def log_grids(self, grids: dict, trainer: Trainer) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for key, grid in grids.items():
                    logger.log_image(key=f"media/{key}", images=[grid], step=trainer.global_step)
        if self.local_dir:
            for key, grid in grids.items():
                save_png(grid, Path(self.local_dir) / f"{key}_step{trainer.global_step:07d}.png", scale=4)

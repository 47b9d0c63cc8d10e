"""Shared machinery of the measurement callbacks (overlap, memorization, mutual information).

They all run after validation on every rank (their metrics sync with collectives), every
`every_n_val_epochs` validation epochs, always on `validate`, never in the sanity check; they log
synced scalars through `pl_module.log_dict` and media from global rank 0 only.
"""
from __future__ import annotations

import math

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from datamodules.transforms import uint8_to_signed_unit
from lightning_modules.protocols import Generated, sample_seeds


def rank_sample_indices(num_samples: int, rank: int, world_size: int) -> range:
    """This rank's contiguous share of the global sample indices 0..n-1 (the last share may be short)."""
    per_rank = math.ceil(num_samples / world_size)
    return range(min(rank * per_rank, num_samples), min((rank + 1) * per_rank, num_samples))


def uint8_to_model_images(images: Tensor, device) -> Tensor:
    """uint8 reference images -> the models' [-1, 1] floats, exactly as the data module serves them."""
    return uint8_to_signed_unit(images.to(device))


def in_batches(fn, items, batch_size: int):
    """Concatenate fn(chunk) over chunks of a list/tensor; fn returns a Generated or a Tensor."""
    outputs = [fn(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    if isinstance(outputs[0], Generated):
        tokens = None if outputs[0].tokens is None else torch.cat([o.tokens for o in outputs])
        return Generated(tokens, torch.cat([o.images for o in outputs]))
    return torch.cat(outputs)


def generated_samples(pl_module: LightningModule, trainer: Trainer, num_samples: int, seed: int, batch_size: int) -> Generated:
    """This rank's share of `num_samples` generated samples, cached per training step so callbacks share it."""
    key = (trainer.global_step, num_samples, seed, trainer.global_rank)
    cache = getattr(pl_module, "_measurement_samples", None)
    if cache is None or cache[0] != key:
        indices = list(rank_sample_indices(num_samples, trainer.global_rank, trainer.world_size))
        seeds = sample_seeds(seed, indices)
        if seeds:
            samples = in_batches(pl_module.generate, seeds, batch_size)
        else:  # a rank with no share still takes part in every collective
            samples = Generated(None, torch.empty(0))
        cache = (key, samples)
        pl_module._measurement_samples = cache
    return cache[1]


def reference_images(trainer: Trainer, split: str, limit: int | None = None) -> Tensor:
    """uint8 (N, C, H, W) images of a split of the data module (the first `limit` rows)."""
    images = trainer.datamodule.train_images_uint8(split)
    return images if limit is None else images[:limit]


def training_tokens(trainer: Trainer, pl_module: LightningModule, limit: int | None, batch_size: int) -> Tensor | None:
    """(N, h, w) token grids of the first `limit` training images, rows aligned with `reference_images`.

    A token data module already holds them (encoded once, in prepare_data): reuse them rather than
    encoding the training set again. Otherwise the model encodes; None for a model without tokens.
    """
    if not hasattr(pl_module, "num_bits"):
        return None
    cached = getattr(trainer.datamodule, "train_tokens", None)
    if cached is not None:
        return cached()[:limit]
    images = reference_images(trainer, "train", limit)
    return in_batches(pl_module.reconstruct, uint8_to_model_images(images, pl_module.device), batch_size).tokens.cpu()


def wandb_loggers(trainer: Trainer) -> list[WandbLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


class MeasurementCallback(Callback):
    def __init__(self, every_n_val_epochs: int = 1):
        self.every_n_val_epochs = every_n_val_epochs
        self.val_epochs_seen = 0

    def should_run(self, trainer: Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        if trainer.state.fn == "validate":
            return True
        self.val_epochs_seen += 1
        is_last_epoch = trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs - 1
        return self.val_epochs_seen % self.every_n_val_epochs == 0 or is_last_epoch

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_run(trainer):
            was_training = pl_module.training
            pl_module.eval()
            with torch.no_grad():
                self.measure(trainer, pl_module)
            pl_module.train(was_training)

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        raise NotImplementedError

    @staticmethod
    def log_scalars(pl_module: LightningModule, prefix: str, values: dict[str, Tensor]) -> None:
        """Values are already synced (computed on every rank), so no further reduction."""
        scalars = {f"{prefix}/{k}": v.float() for k, v in values.items() if torch.is_tensor(v) and v.numel() == 1}
        pl_module.log_dict(scalars, sync_dist=False)

"""Shared machinery of the measurement callbacks (overlap, memorization, mutual information).

They all run after validation on every rank (their metrics sync with collectives); they log synced
scalars through `pl_module.log_dict` and media from global rank 0 only.

When they run (`MeasurementCallback.should_run`): always on `validate`, never in the sanity check,
always at the last validation of a fit (the fitted model is the one a measurement is about), and
in between every `every_n_val_epochs` validations (None: only at the end). The cadence therefore
follows the trainer's validation cadence: on a small dataset, validate every N steps
(`check_val_every_n_epoch: null`, `val_check_interval: N`) rather than every few tiny epochs.

"The last validation of a fit" is one that runs when the fit is about to stop: `trainer.should_stop`
is set (a stopping rule such as `callbacks.run.train_to_plateau.TrainToPlateau`, or early stopping:
Lightning then validates before it stops), `max_steps` is reached, or the last epoch of
`max_epochs` ends.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from imaging.pixels import signed_unit_to_uint8, uint8_to_signed_unit
from lightning_modules.model_outputs import Generated
from lightning_modules.sample_seeds import sample_seeds

if TYPE_CHECKING:
    from datamodules.image_datamodule import HFImageDataModule


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
        pl_module._measurement_samples = cache  # type: ignore[assignment]  # Module.__setattr__ stub: tensors/modules only
    return cache[1]


def data_module(trainer: Trainer) -> HFImageDataModule:
    """`trainer.datamodule`: the image (or token) data module whose images the measurements read."""
    return trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets it at run time


def reference_images(trainer: Trainer, split: str, limit: int | None = None) -> Tensor:
    """uint8 (N, C, H, W) images of a split of the data module (the first `limit` rows)."""
    images = data_module(trainer).images_uint8(split)
    return images if limit is None else images[:limit]


def training_tokens(trainer: Trainer, pl_module: LightningModule, limit: int | None, batch_size: int) -> Tensor | None:
    """(N, h, w) token grids of the first `limit` training images, rows aligned with `reference_images`.

    A token data module already holds them (encoded once, in prepare_data): reuse them rather than
    encoding the training set again. Otherwise the model encodes; None for a model without tokens.
    """
    if not hasattr(pl_module, "num_bits"):
        return None
    cached = getattr(data_module(trainer), "token_grids", None)
    if cached is not None:
        return cached()[:limit]
    return training_reconstructions(trainer, pl_module, limit, batch_size).tokens


def reconstructions(pl_module: LightningModule, images: Tensor, batch_size: int) -> Generated:
    """The model's round trip of uint8 images, on the CPU: its tokens (None without) and its decoded images as uint8
    (what the nearest-neighbour searches and the Inception read)."""
    recon = in_batches(pl_module.reconstruct, uint8_to_model_images(images, pl_module.device), batch_size)
    return Generated(None if recon.tokens is None else recon.tokens.cpu(), signed_unit_to_uint8(recon.images).cpu())


def training_reconstructions(trainer: Trainer, pl_module: LightningModule, limit: int | None, batch_size: int) -> Generated:
    """`reconstructions` of the first `limit` training images, cached per training step on the module (as
    `generated_samples`), so that the callbacks measuring one model (memorization's decoded reference and ceiling, the
    novelty test of sample quality, an autoencoder's tokens) share one round trip of the training set."""
    key = (trainer.global_step, limit)
    cache = getattr(pl_module, "_training_reconstructions", None)
    if cache is None or cache[0] != key:
        cache = (key, reconstructions(pl_module, reference_images(trainer, "train", limit), batch_size))
        pl_module._training_reconstructions = cache  # type: ignore[assignment]  # Module.__setattr__ stub: tensors/modules only
    return cache[1]


def wandb_loggers(trainer: Trainer) -> list[WandbLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def is_final_validation(trainer: Trainer) -> bool:
    """Is this validation the last one of the fit (see the module docstring)? A `validate` run has only one."""
    if trainer.state.fn == TrainerFn.VALIDATING or trainer.should_stop:
        return True
    if trainer.max_steps is not None and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return True
    last_epoch = trainer.max_epochs is not None and trainer.max_epochs > 0 and trainer.current_epoch >= trainer.max_epochs - 1
    return last_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


class MeasurementCallback(Callback):
    def __init__(self, every_n_val_epochs: int | None = 1):
        if every_n_val_epochs is not None and every_n_val_epochs < 1:
            raise ValueError(f"every_n_val_epochs must be >= 1 or None (only at the end of fit), got {every_n_val_epochs}")
        self.every_n_val_epochs = every_n_val_epochs
        self.val_epochs_seen = 0
        self.measured_at_step: int | None = None

    def should_run(self, trainer: Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        if trainer.state.fn == "validate":
            return True
        self.val_epochs_seen += 1
        on_cadence = self.every_n_val_epochs is not None and self.val_epochs_seen % self.every_n_val_epochs == 0
        return on_cadence or is_final_validation(trainer)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_run(trainer):
            was_training = pl_module.training
            pl_module.eval()
            with torch.no_grad():
                self.measure(trainer, pl_module)
            pl_module.train(was_training)
            self.measured_at_step = trainer.global_step

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.measured_at_step != trainer.global_step:
            rank_zero_warn(
                f"{type(self).__name__}: the fit ended at step {trainer.global_step} but was last measured at step "
                f"{self.measured_at_step}: its figures are not those of the final model. End the validation cadence on the "
                "last step (max_steps a multiple of val_check_interval) or stop through trainer.should_stop "
                "(callbacks.run.train_to_plateau.TrainToPlateau), so that Lightning validates before it stops."
            )

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        raise NotImplementedError

    @staticmethod
    def log_scalars(pl_module: LightningModule, prefix: str, values: dict[str, Tensor]) -> None:
        """Values are already synced (computed on every rank), so no further reduction."""
        scalars = {f"{prefix}/{k}": v.float() for k, v in values.items() if torch.is_tensor(v) and v.numel() == 1}
        pl_module.log_dict(scalars, sync_dist=False)

"""MemorizationCallback: do generated samples copy the training set? (keys under `mem/`)

Per run: n samples are drawn (split over ranks, one seed per global sample index), decoded, and
searched against the deduplicated training images (exact L2) and token grids (Hamming). Two
references put a rate in context:
- floor (`mem/floor_*`): held-out images vs the training set, the false-positive rate;
- ceiling (`mem/ceiling_*`): the model's own reconstructions of training images, what a perfect
  copier scores through this decoder (a lossy decoder caps the pixel-space rates).
With a `fid_feature` network (e.g. `metrics.fid.InceptionFeatures`, extra `[fid]`), FID is computed
on the same samples (`mem/fid`) and on the non-memorized ones only (`mem/fid_non_memorized`, the
authors' protocol: NN-PSNR below the first threshold).
"""
from __future__ import annotations

import torch
import wandb
from lightning.pytorch import LightningModule, Trainer
from torch import nn

from callbacks.measurement import (
    MeasurementCallback,
    generated_samples,
    in_batches,
    reference_images,
    training_tokens,
    uint8_to_model_images,
    wandb_loggers,
)
from callbacks.media import to_uint8
from metrics.fid import build_fid
from metrics.memorization import NNMemorization


class MemorizationCallback(MeasurementCallback):
    def __init__(
        self,
        num_samples: int = 200,
        seed: int = 1234,
        batch_size: int = 256,
        reference_limit: int | None = None,
        floor_split: str = "val",
        reference_subset: int = 500,
        table_rows: int = 16,
        fid_feature: nn.Module | None = None,
        fid_reference_limit: int = 2000,
        every_n_val_epochs: int = 1,
    ):
        super().__init__(every_n_val_epochs)
        self.fid_feature, self.fid_reference_limit = fid_feature, fid_reference_limit
        self.num_samples, self.seed, self.batch_size = num_samples, seed, batch_size
        self.reference_limit, self.floor_split = reference_limit, floor_split
        self.reference_subset, self.table_rows = reference_subset, table_rows
        self.metric: NNMemorization | None = None
        self.reference_stats: dict | None = None

    def build(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Reference set (uint8 images, tokens) once per rank; floor and ceiling once, on every rank alike."""
        self.train_images = reference_images(trainer, "train", self.reference_limit)
        tokens = training_tokens(trainer, pl_module, self.reference_limit, self.batch_size)
        num_bits = getattr(pl_module, "num_bits", None)
        self.metric = self.new_metric(tokens, num_bits).to(pl_module.device)
        # floor and ceiling are deterministic: every rank computes them in full, without syncing
        floor_images = reference_images(trainer, self.floor_split, self.reference_subset)
        floor_recon = in_batches(pl_module.reconstruct, uint8_to_model_images(floor_images, pl_module.device), self.batch_size)
        floor = self.new_metric(tokens, num_bits, sync_on_compute=False).to(pl_module.device)
        floor.update(floor_images.to(pl_module.device), floor_recon.tokens)
        ceiling = self.new_metric(tokens, num_bits, sync_on_compute=False).to(pl_module.device)
        subset = self.train_images[: self.reference_subset]
        recon = in_batches(pl_module.reconstruct, uint8_to_model_images(subset, pl_module.device), self.batch_size)
        ceiling.update(recon.images, recon.tokens)
        self.reference_stats = {
            **{f"floor_{k}": v for k, v in floor.compute().items()},
            **{f"ceiling_{k}": v for k, v in ceiling.compute().items()},
        }
        if self.fid_feature is not None:
            self.build_fid(trainer, pl_module)

    def build_fid(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Two FIDs sharing the real statistics of the training images (each rank embeds its share)."""
        self.fid, self.fid_non_memorized = (build_fid(self.fid_feature).to(pl_module.device) for _ in range(2))
        real = self.train_images[: self.fid_reference_limit][trainer.global_rank :: trainer.world_size]
        for chunk in real.split(self.batch_size):
            images = uint8_to_model_images(chunk, pl_module.device)
            self.fid.update(images, real=True)
            self.fid_non_memorized.update(images, real=True)

    def new_metric(self, tokens, num_bits, **kwargs) -> NNMemorization:
        return NNMemorization(self.train_images, tokens, num_bits if tokens is not None else None, **kwargs)

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.metric is None:
            self.build(trainer, pl_module)
        samples = generated_samples(pl_module, trainer, self.num_samples, self.seed, self.batch_size)
        if len(samples.images):
            self.metric.update(samples.images, samples.tokens if self.metric.with_tokens else None)
        rates = self.metric.compute()  # collective: every rank
        if self.fid_feature is not None:
            rates.update(self.fid_values(samples))
        per_sample = self.metric.per_sample()  # collective: every rank
        # outside compute() the states are this rank's own again: rank 0's table uses them
        local = {name: self.metric.gathered(name) for name in ("nn_psnr", "nearest_index", "hamming") if hasattr(self.metric, name)}
        local = local if len(samples.images) else {}
        self.metric.reset()
        self.log_scalars(pl_module, "mem", {**rates, **self.reference_stats})
        if trainer.is_global_zero:
            self.log_media(trainer, per_sample, samples, local)

    def fid_values(self, samples) -> dict:
        """FID of all samples and of the non-memorized ones; collectives, so every rank computes."""
        if len(samples.images):
            memorized = self.metric.gathered("nn_psnr")[-len(samples.images):] >= self.metric.psnr_thresholds[0]  # this rank's
            self.fid.update(samples.images, real=False)
            if (~memorized).any():
                self.fid_non_memorized.update(samples.images[~memorized.to(samples.images.device)], real=False)
        values = {"fid": self.fid.compute()}
        try:  # every rank sees the same synced sample count, so every rank takes the same branch
            values["fid_non_memorized"] = self.fid_non_memorized.compute()
        except RuntimeError:  # fewer than two non-memorized samples in all: no such FID
            values["fid_non_memorized"] = torch.tensor(float("nan"))
        self.fid.reset()
        self.fid_non_memorized.reset()
        return values

    def log_media(self, trainer: Trainer, per_sample: dict, samples, local: dict) -> None:
        """Histograms of all samples; a table of the most memorized of rank 0's own samples."""
        for logger in wandb_loggers(trainer):
            media = {"mem/nn_psnr_hist": wandb.Histogram(per_sample["nn_psnr"].cpu().numpy())}
            if "hamming" in per_sample:
                media["mem/hamming_hist"] = wandb.Histogram(per_sample["hamming"].cpu().numpy())
            if local:
                media["mem/most_memorized"] = self.memorized_table(samples, local)
            logger.experiment.log({**media, "trainer/global_step": trainer.global_step})

    def memorized_table(self, samples, local: dict) -> wandb.Table:
        table = wandb.Table(columns=["sample", "nearest training image", "nn_psnr", "hamming"])
        order = local["nn_psnr"].argsort(descending=True)[: self.table_rows]
        for i in order.tolist():
            nearest = self.train_images[int(local["nearest_index"][i])]
            hamming = float(local["hamming"][i]) if "hamming" in local else None
            table.add_data(
                wandb.Image(to_uint8(samples.images[i]).permute(1, 2, 0).cpu().numpy().squeeze()),
                wandb.Image(nearest.permute(1, 2, 0).numpy().squeeze()),
                float(local["nn_psnr"][i]), hamming,
            )
        return table

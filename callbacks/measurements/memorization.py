"""MemorizationCallback: do generated samples copy the training set? (keys under `mem/`)

Per run: n samples are drawn (split over ranks, one seed per global sample index), decoded, and
searched against the deduplicated training images (exact L2), the training images as the
autoencoder decodes them (their reconstructions, computed once per run: `mem/decoded_*`) and the
training token grids (Hamming). Every measure is put in context by two references measured in the
same space as the samples, i.e. on images that went through the same autoencoder:
- floor (`mem/floor_*`): the reconstructions of `reference_subset` held-out images (their tokens
  for the latent measures), searched like samples: the rate of a model that generates fresh images
  of the data's law, i.e. the data's own redundancy (the false-positive rate);
- ceiling (`mem/ceiling_*`): the reconstructions of `reference_subset` training images, what a
  perfect copier scores through this decoder (a lossy decoder caps the pixel rates against the
  original images; the decoded and latent rates of a copier are 1 by construction).
`mem/floor_n` and `mem/ceiling_n` are the images each reference was measured on (the n of their
intervals), `mem/num_samples`, `mem/train_size` and `mem/step` (the optimizer step of the model
that drew the samples) say what the rates were measured on. The quality of the samples that are
*not* copies is callbacks/measurements/sample_quality.py's (it shares the samples when it draws as
many with the same seed).
"""

from __future__ import annotations

import torch
import wandb
from lightning.pytorch import LightningModule, Trainer

from callbacks.measurements.base import (
    MeasurementCallback,
    generated_samples,
    reconstructions,
    reference_images,
    training_reconstructions,
    training_tokens,
    wandb_loggers,
)
from imaging.grids import to_uint8
from lightning_modules.model_outputs import Generated
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
        every_n_val_epochs: int | None = 1,
    ):
        super().__init__(every_n_val_epochs)
        self.num_samples, self.seed, self.batch_size = num_samples, seed, batch_size
        self.reference_limit, self.floor_split = reference_limit, floor_split
        self.reference_subset, self.table_rows = reference_subset, table_rows
        self.metric: NNMemorization | None = None
        self.reference_stats: dict | None = None
        self.built_at_step: int | None = None

    def build(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """References (training images, their reconstructions, tokens), floor and ceiling, on every rank alike.

        Once per model: a token model's autoencoder is frozen and it measures once, at the end; an
        autoencoder measured during its own training is rebuilt at every measured step, as its
        reconstructions (and tokens) change with it.
        """
        self.built_at_step = trainer.global_step
        self.train_images = reference_images(trainer, "train", self.reference_limit)
        tokens = training_tokens(trainer, pl_module, self.reference_limit, self.batch_size)
        num_bits = getattr(pl_module, "num_bits", None)
        train_recon = training_reconstructions(trainer, pl_module, self.reference_limit, self.batch_size)  # decoded reference, ceiling
        self.decoded_train = train_recon.images  # (N, C, H, W) uint8
        self.metric = self.new_metric(tokens, num_bits).to(pl_module.device)
        # floor and ceiling are deterministic: every rank computes them in full, without syncing
        floor_images = reference_images(trainer, self.floor_split, self.reference_subset)
        floor = self.reference_rates(tokens, num_bits, reconstructions(pl_module, floor_images, self.batch_size), pl_module.device)
        subset = slice(0, self.reference_subset)
        ceiling_recon = Generated(None if train_recon.tokens is None else train_recon.tokens[subset], train_recon.images[subset])
        ceiling = self.reference_rates(tokens, num_bits, ceiling_recon, pl_module.device)
        self.reference_stats = {
            **{f"floor_{k}": v for k, v in floor.items()},
            **{f"ceiling_{k}": v for k, v in ceiling.items()},
            "floor_n": torch.tensor(float(len(floor_images))),
            "ceiling_n": torch.tensor(float(len(ceiling_recon.images))),
            "train_size": torch.tensor(float(len(self.train_images))),
        }

    def reference_rates(self, tokens, num_bits, recon: Generated, device) -> dict[str, torch.Tensor]:
        """Every rate of reconstructed images (and their tokens), searched exactly as samples are (unsynced)."""
        metric = self.new_metric(tokens, num_bits, sync_on_compute=False).to(device)
        metric.update(recon.images, recon.tokens if metric.with_tokens else None)
        return metric.compute()

    def new_metric(self, tokens, num_bits, **kwargs) -> NNMemorization:
        return NNMemorization(
            self.train_images, tokens, num_bits if tokens is not None else None, decoded_reference=self.decoded_train, **kwargs
        )

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.metric is None or self.built_at_step != trainer.global_step:
            self.build(trainer, pl_module)
        assert self.metric is not None and self.reference_stats is not None  # build() sets both
        samples = generated_samples(pl_module, trainer, self.num_samples, self.seed, self.batch_size)
        if len(samples.images):
            self.metric.update(samples.images, samples.tokens if self.metric.with_tokens else None)
        rates = self.metric.compute()  # collective: every rank
        per_sample = self.metric.per_sample()  # collective: every rank
        # outside compute() the states are this rank's own again: rank 0's table uses them
        local = {name: self.metric.gathered(name) for name in ("nn_psnr", "nearest_index", "hamming") if hasattr(self.metric, name)}
        local = local if len(samples.images) else {}
        self.metric.reset()
        run = {"num_samples": torch.tensor(float(self.num_samples)), "step": torch.tensor(float(trainer.global_step))}
        self.log_scalars(pl_module, "mem", {**rates, **self.reference_stats, **run})
        if trainer.is_global_zero:
            self.log_media(trainer, per_sample, samples, local)

    def log_media(self, trainer: Trainer, per_sample: dict, samples, local: dict) -> None:
        """Histograms of all samples; a table of the most memorized of rank 0's own samples."""
        for logger in wandb_loggers(trainer):
            media: dict[str, wandb.Histogram | wandb.Table] = {
                "mem/nn_psnr_hist": wandb.Histogram(per_sample["nn_psnr"].cpu().numpy()),
                "mem/decoded_nn_psnr_hist": wandb.Histogram(per_sample["decoded_nn_psnr"].cpu().numpy()),
            }
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
                float(local["nn_psnr"][i]),
                hamming,
            )
        return table

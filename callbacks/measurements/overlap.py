"""OverlapCallback: pairwise overlap of per-image latent distributions (MEPS; keys under `ovl/`).

On a fixed evaluation subset (the first `num_images` of the validation split, dealt to ranks
round-robin) the model reports each image's latent law as the decoder is trained on it
(`latent_distribution`): the BL-AE's tanh latent plus its training noise, or a VAE posterior.
Logged beside the overlaps: the lower bound they imply on the reconstruction MSE, the MSE the
model actually makes on one draw from the same laws (`measured_mse`), and for the BL-AE the
overlap of its hard inference codes under the same noise (`hard_codes_mean`). docs/metrics.md
defines every key.

Every overlap is computed per pair as a natural log (metrics/overlap.py) and logged as log10:
`ovl/log10_mean` (log-mean-exp over pairs), `ovl/log10_max`, `ovl/log10_mean_nn`,
`ovl/log10_lower_bound_mse`, for a VAE the Bhattacharyya bracket `ovl/log10_bc_mean`,
`ovl/log10_bc_lower_mean`, `ovl/outside_bounds` and `ovl/low_ess_share` (pairs whose importance
weights' effective sample size is below 10), for the BL-AE `ovl/hard_codes_log10_mean`;
the linear `ovl/mean` etc. are kept (float64 before the loggers' float32 cast: they may read 0).
Nothing is exponentiated before logging.

Two schedules, the same subset and keys:
- after validation (the measurement cadence of `MeasurementCallback`), through `log_dict`, so the
  final value is what `ResultsFile` and the sweep report read;
- while training, at step 0, at steps 1, 2, 4, 8, ... below `every_n_train_steps` and then every
  `every_n_train_steps` optimizer steps (None: off), without `per_bit` and with `curve_mc_samples`
  Monte-Carlo draws where a law needs them (VAE posteriors, Tri noise; default 256 as validation:
  64 draws missed the 5 % log10 bar on 4 of the 16 validation cases and saved only ~25 % of the
  time, bench/overlap_validation.py), so that one point costs about one encode and one decode of
  the subset (`curve_num_images` can take fewer of its images), straight to the loggers at
  x = optimizer steps taken, so the W&B curve of `ovl/log10_mean` shows the log overlap falling as
  the latents binarize. Every rank computes (the metrics are collectives); rank 0 logs.
  `ovl/eval_seconds` is one such evaluation's wall time on rank 0. The model's RNG streams are
  not touched (fixed generators), so a run with the curve trains exactly as one without.
  The curve's points [(step, log10_mean)] are kept in the callback's state (saved in checkpoints,
  restored on resume) and handed to `ResultsFile` by `results_series()`: results.json "series".
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from torchmetrics import MeanSquaredError

from callbacks.measurements.base import MeasurementCallback, reference_images, uint8_to_model_images
from lightning_modules.model_outputs import LatentDistribution
from metrics.overlap import PairwiseOverlap

if TYPE_CHECKING:
    from lightning_modules.blae import BinaryLatentAutoencoder
    from lightning_modules.vae import GaussianVAE


class OverlapCallback(MeasurementCallback):
    def __init__(
        self,
        num_images: int = 200,
        mc_samples: int = 256,
        seed: int = 0,
        every_n_val_epochs: int = 1,
        every_n_train_steps: int | None = 100,
        curve_num_images: int | None = None,
        curve_mc_samples: int = 256,
    ):
        super().__init__(every_n_val_epochs)
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1 or null, got {every_n_train_steps}")
        self.num_images, self.mc_samples, self.seed = num_images, mc_samples, seed
        self.every_n_train_steps = every_n_train_steps
        self.curve_num_images = num_images if curve_num_images is None else min(curve_num_images, num_images)
        self.curve_mc_samples = curve_mc_samples
        self.images: Tensor | None = None  # this rank's share of the subset, uint8, read once
        self.last_curve_step: int | None = None
        self.curve: list[tuple[int, float]] = []  # (optimizer step, ovl/log10_mean) of the training curve

    # --- schedules --------------------------------------------------------------------------
    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_scalars(pl_module, "ovl", self.overlap_values(trainer, pl_module, per_dimension=True))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_training_curve(trainer, pl_module)  # the untrained (or resumed) model

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.is_curve_step(trainer.global_step):
            self.log_training_curve(trainer, pl_module)

    def is_curve_step(self, step: int) -> bool:
        """Steps 1, 2, 4, 8, ... below `every_n_train_steps` (the overlap falls fastest at the start),
        then every `every_n_train_steps`."""
        every = self.every_n_train_steps
        if every is None or step < 1:
            return False
        return step % every == 0 or (step < every and step & (step - 1) == 0)

    def log_training_curve(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every_n_train_steps is None or self.last_curve_step == trainer.global_step:
            return  # off, or this step was measured already (gradient accumulation)
        if latent_model(pl_module) is not pl_module:
            return  # a token model trains on a frozen autoencoder: its latent laws do not move
        self.last_curve_step = trainer.global_step
        start = time.perf_counter()
        with evaluating(pl_module):
            values = self.overlap_values(
                trainer, pl_module, per_dimension=False, limit=self.curve_num_images, mc_samples=self.curve_mc_samples
            )  # collectives
        self.record_curve_point(trainer.global_step, float(values["log10_mean"]))
        if trainer.is_global_zero:
            scalars = {f"ovl/{k}": float(v) for k, v in values.items()}  # float64 -> Python float: logs stay finite
            scalars["ovl/eval_seconds"] = time.perf_counter() - start
            for logger in trainer.loggers:  # x = optimizer steps taken: "after 3 steps" is step 3
                logger.log_metrics(scalars, step=trainer.global_step)

    def record_curve_point(self, step: int, log10_mean: float) -> None:
        """Keep (step, log10_mean), replacing a point of the same step (a resumed run measures its
        first step again), in step order."""
        self.curve = sorted([point for point in self.curve if point[0] != step] + [(step, log10_mean)])

    def results_series(self) -> dict[str, list[list[float]]]:
        """The training curve for results.json "series": {"ovl/log10_mean": [[step, value], ...]}."""
        return {"ovl/log10_mean": [[step, value] for step, value in self.curve]}

    def state_dict(self) -> dict[str, Any]:
        return {"curve": [list(point) for point in self.curve]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curve = [(int(step), float(value)) for step, value in state_dict.get("curve", [])]

    # --- the measurement --------------------------------------------------------------------
    def overlap_values(
        self, trainer: Trainer, pl_module: LightningModule, per_dimension: bool, limit: int | None = None, mc_samples: int | None = None
    ) -> dict[str, Tensor]:
        """Synced overlap statistics of the first `limit` (default `num_images`) subset images, with
        `mc_samples` draws (default the callback's) where a law has no closed form; a collective:
        call on every rank. `per_dimension`: also `per_bit`, the costly part for Gaussian noise."""
        if self.images is None:
            self.images = reference_images(trainer, "val", self.num_images)[trainer.global_rank :: trainer.world_size]
        # this rank holds global images rank, rank + W, ...: those below `limit` are a prefix of its share
        count = len(range(trainer.global_rank, min(limit or self.num_images, self.num_images), trainer.world_size))
        x = uint8_to_model_images(self.images[:count], pl_module.device)
        model = latent_model(pl_module)
        law = model.latent_distribution(x)
        draws = self.mc_samples if mc_samples is None else mc_samples
        values = self.pairwise(law, x, per_dimension, draws)
        if not per_dimension:
            values.pop("per_bit")
        if law.codes is not None:
            hard = self.pairwise(law.centred_on_codes(), per_dimension=False, mc_samples=draws)
            values.update(hard_codes_mean=hard["mean"], hard_codes_log10_mean=hard["log10_mean"])
        measured = MeanSquaredError().to(pl_module.device)
        measured.update(self.noisy_reconstruction(model, law, trainer.global_rank), x)
        values["measured_mse"] = measured.compute()  # collective
        return values

    def pairwise(
        self, law: LatentDistribution, images: Tensor | None = None, per_dimension: bool = True, mc_samples: int | None = None
    ) -> dict[str, Tensor]:
        draws = self.mc_samples if mc_samples is None else mc_samples
        overlap = PairwiseOverlap.of_law(law, mc_samples=draws, seed=self.seed, per_dimension=per_dimension)
        overlap = overlap.to(law.latents.device)
        overlap.update(law.latents, law.logvar, images)
        return overlap.compute()  # collective

    def noisy_reconstruction(self, model: BinaryLatentAutoencoder | GaussianVAE, law: LatentDistribution, rank: int) -> Tensor:
        """Decode one draw from each image's latent law (the left side of the bound), fixed generator."""
        generator = torch.Generator(device=law.latents.device).manual_seed(self.seed + rank)
        return model.decode(law.sample(generator)).clamp(-1, 1)


@contextmanager
def evaluating(pl_module: LightningModule):
    """Eval mode and no autograd for a measurement inside training; the mode is restored after."""
    was_training = pl_module.training
    pl_module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        pl_module.train(was_training)


def latent_model(pl_module: LightningModule) -> BinaryLatentAutoencoder | GaussianVAE:
    """The model whose latents are measured: a token model's frozen BL-AE, else the module itself."""
    return cast("BinaryLatentAutoencoder | GaussianVAE", getattr(pl_module, "autoencoder", pl_module))  # this project's latent models

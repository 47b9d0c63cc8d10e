"""MutualInformationCallback: the LDH diagnostic (keys under `ldh/`).

Empirical MI between tokens (and between equal bits) at grid distance d = 1..D, for the training
latents (`ldh/data_*`) and for the model's samples (`ldh/samples_*`), each against a permutation
null at the same positions (`*_excess_d{d}` = MI - null, with a 95 % bootstrap-over-images interval
`*_excess_lo_d{d}`, `*_excess_hi_d{d}`), and the dependence radius `ldh/{source}_dependence_radius`
(the first d whose interval is not above 0; D + 1: every measured d is significant, beyond the grid;
`ldh/{source}_bit_dependence_radius` the same for bits). metrics/mutual_information.py and
docs/metrics.md have the definitions: does dependence stay local, and does a γ-ARVM reproduce the
data's curve? Models without tokens are skipped.
"""

from __future__ import annotations

from typing import cast

import torch
import wandb
from lightning.pytorch import LightningModule, Trainer

from callbacks.measurements.base import MeasurementCallback, generated_samples, rank_sample_indices, training_tokens, wandb_loggers
from metrics.mutual_information import TokenMutualInformation

RADII = ("dependence_radius", "bit_dependence_radius")
CURVES = (
    "token_mi",
    "token_mi_bias",
    "token_mi_null",
    "token_mi_excess",
    "token_mi_excess_lo",
    "token_mi_excess_hi",
    "bit_mi",
    "bit_mi_null",
    "bit_mi_excess",
    "bit_mi_excess_lo",
    "bit_mi_excess_hi",
)


def ldh_scalars(source: str, curves: dict) -> dict[str, torch.Tensor]:
    """The logged figures of one source ("data" or "samples"), without the ``ldh/`` prefix:
    ``{source}_{curve}_d{d}`` for every curve and d, and ``{source}_dependence_radius`` (+ bits')."""
    scalars = {}
    for name in CURVES:
        if name in curves:
            scalars.update({f"{source}_{name}_d{d + 1}": v for d, v in enumerate(curves[name])})
    scalars.update({f"{source}_{name}": curves[name] for name in RADII if name in curves})
    return scalars


class MutualInformationCallback(MeasurementCallback):
    def __init__(
        self,
        num_samples: int = 200,
        seed: int = 1234,
        max_distance: int = 4,
        data_limit: int | None = 2000,
        batch_size: int = 256,
        num_permutations: int = 100,
        num_bootstrap: int = 200,
        every_n_val_epochs: int = 1,
    ):
        super().__init__(every_n_val_epochs)
        self.num_samples, self.seed, self.max_distance = num_samples, seed, max_distance
        self.data_limit, self.batch_size, self.num_permutations = data_limit, batch_size, num_permutations
        self.num_bootstrap = num_bootstrap
        self.data_curves: dict | None = None

    def curves(self, pl_module: LightningModule, tokens, index) -> dict:
        """MI curves of every rank's tokens together; `index`: their global indices (the null pairs
        images by it, so any split over ranks gives the same numbers)."""
        metric = TokenMutualInformation(
            cast(int, pl_module.num_bits), self.max_distance, self.num_permutations, num_bootstrap=self.num_bootstrap
        ).to(pl_module.device)
        if tokens is not None and len(tokens):
            metric.update(tokens, torch.as_tensor(index))
        return metric.compute()  # collective: every rank

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not hasattr(pl_module, "num_bits"):
            return
        rank, world = trainer.global_rank, trainer.world_size
        if self.data_curves is None:  # training latents, dealt to ranks round-robin
            tokens = training_tokens(trainer, pl_module, self.data_limit, self.batch_size)
            assert tokens is not None  # None only without num_bits, which returned above
            self.data_curves = self.curves(pl_module, tokens[rank::world], range(len(tokens))[rank::world])
        samples = generated_samples(pl_module, trainer, self.num_samples, self.seed, self.batch_size)
        sample_curves = self.curves(pl_module, samples.tokens, rank_sample_indices(self.num_samples, rank, world))
        scalars = {**ldh_scalars("data", self.data_curves), **ldh_scalars("samples", sample_curves)}
        self.log_scalars(pl_module, "ldh", scalars)
        if trainer.is_global_zero:
            self.log_plot(trainer, sample_curves)

    def log_plot(self, trainer: Trainer, sample_curves: dict) -> None:
        key = "token_mi_excess" if "token_mi_excess" in sample_curves else "bit_mi_excess"
        distances = list(range(1, self.max_distance + 1))
        assert self.data_curves is not None  # measure() computes them first
        for logger in wandb_loggers(trainer):
            plot = wandb.plot.line_series(
                xs=distances,
                ys=[self.data_curves[key].tolist(), sample_curves[key].tolist()],
                keys=["training latents", "samples"],
                title=f"LDH: {key} (bits above the permutation null) vs grid distance",
                xname="distance",
            )
            logger.experiment.log({f"ldh/{key}_vs_distance": plot, "trainer/global_step": trainer.global_step})

"""MutualInformationCallback: the LDH diagnostic (paper Eq. 7; keys under `ldh/`).

Empirical MI between tokens (and between equal bits) at grid distance d = 1..D, for the training
latents (`ldh/data_*`) and for the model's samples (`ldh/samples_*`): does dependence fall with
distance, and does a γ-ARVM reproduce the data's curve? Models without tokens are skipped.
"""
from __future__ import annotations

import wandb
from lightning.pytorch import LightningModule, Trainer

from callbacks.measurement import MeasurementCallback, generated_samples, training_tokens, wandb_loggers
from metrics.mutual_information import TokenMutualInformation

CURVES = ("token_mi", "token_mi_bias", "bit_mi")


class MutualInformationCallback(MeasurementCallback):
    def __init__(self, num_samples: int = 200, seed: int = 1234, max_distance: int = 4, data_limit: int | None = 2000,
                 batch_size: int = 256, every_n_val_epochs: int = 1):
        super().__init__(every_n_val_epochs)
        self.num_samples, self.seed, self.max_distance = num_samples, seed, max_distance
        self.data_limit, self.batch_size = data_limit, batch_size
        self.data_curves: dict | None = None

    def curves(self, pl_module: LightningModule, tokens) -> dict:
        metric = TokenMutualInformation(pl_module.num_bits, self.max_distance).to(pl_module.device)
        if tokens is not None and len(tokens):
            metric.update(tokens)
        return metric.compute()  # collective: every rank

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not hasattr(pl_module, "num_bits"):
            return
        if self.data_curves is None:  # training latents, dealt to ranks round-robin
            tokens = training_tokens(trainer, pl_module, self.data_limit, self.batch_size)
            self.data_curves = self.curves(pl_module, tokens[trainer.global_rank :: trainer.world_size])
        samples = generated_samples(pl_module, trainer, self.num_samples, self.seed, self.batch_size)
        sample_curves = self.curves(pl_module, samples.tokens)
        scalars = {}
        for source, curves in (("data", self.data_curves), ("samples", sample_curves)):
            for name in CURVES:
                if name in curves:
                    scalars.update({f"{source}_{name}_d{d + 1}": v for d, v in enumerate(curves[name])})
        self.log_scalars(pl_module, "ldh", scalars)
        if trainer.is_global_zero:
            self.log_plot(trainer, sample_curves)

    def log_plot(self, trainer: Trainer, sample_curves: dict) -> None:
        key = "token_mi" if "token_mi" in sample_curves else "bit_mi"
        distances = list(range(1, self.max_distance + 1))
        for logger in wandb_loggers(trainer):
            plot = wandb.plot.line_series(
                xs=distances, ys=[self.data_curves[key].tolist(), sample_curves[key].tolist()],
                keys=["training latents", "samples"], title=f"LDH: {key} (bits) vs grid distance", xname="distance",
            )
            logger.experiment.log({f"ldh/{key}_vs_distance": plot, "trainer/global_step": trainer.global_step})

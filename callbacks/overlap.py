"""OverlapCallback: pairwise overlap of per-image latent distributions (MEPS; keys under `ovl/`).

On a fixed evaluation subset (the first `num_images` of the validation split, dealt to ranks
round-robin) the model reports each image's latent law (`latent_distribution`): BL-AE codes with
their training noise (closed form), or VAE posteriors (Monte Carlo with a fixed generator). Beside
the overlaps goes the lower bound they imply on reconstruction MSE (paper-spec §1.3) and the MSE
the model actually makes under its own latent noise on the same images.
"""
from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer
from torchmetrics import MeanSquaredError

from callbacks.measurement import MeasurementCallback, reference_images, uint8_to_model_images
from metrics.overlap import PairwiseOverlap
from networks.binarizer import unit_noise


class OverlapCallback(MeasurementCallback):
    def __init__(self, num_images: int = 200, mc_samples: int = 256, seed: int = 0, every_n_val_epochs: int = 1):
        super().__init__(every_n_val_epochs)
        self.num_images, self.mc_samples, self.seed = num_images, mc_samples, seed

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        images = reference_images(trainer, "val", self.num_images)[trainer.global_rank :: trainer.world_size]
        x = uint8_to_model_images(images, pl_module.device)
        model = latent_model(pl_module)
        law = model.latent_distribution(x)
        overlap = PairwiseOverlap(law.kind, law.sigma, self.mc_samples, self.seed).to(pl_module.device)
        overlap.update(law.latents, law.logvar, x)
        measured = MeanSquaredError().to(pl_module.device)
        measured.update(self.noisy_reconstruction(model, law, trainer.global_rank), x)
        values = overlap.compute()  # collective: every rank
        self.log_scalars(pl_module, "ovl", {**values, "measured_mse": measured.compute()})

    def noisy_reconstruction(self, model: LightningModule, law, rank: int) -> torch.Tensor:
        """Decode one draw from each image's latent law (the left side of the bound), fixed generator."""
        generator = torch.Generator(device=law.latents.device).manual_seed(self.seed + rank)
        if law.kind == "diag_gaussian":
            noise = torch.randn(law.latents.shape, generator=generator, device=law.latents.device)
            z = law.latents + noise * (0.5 * law.logvar).exp()
        else:
            binarizer = model.binarizer
            noise = unit_noise(binarizer.noise, law.latents.shape, binarizer.kappa, device=law.latents.device, generator=generator)
            z = law.latents + binarizer.noise_rate * noise
        return model.decode(z).clamp(-1, 1)


def latent_model(pl_module: LightningModule) -> LightningModule:
    """The model whose latents are measured: a token model's frozen BL-AE, else the module itself."""
    return getattr(pl_module, "autoencoder", pl_module)

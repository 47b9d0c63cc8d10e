"""GaussianVAE: the MEPS comparison partner of the BL-AE, on the same encoder/decoder families.

The encoder emits 2C channels, read as the posterior mean and log-variance of C latent
channels; the KL term pulls every per-image posterior toward N(0, I), which is what makes the
posteriors of different images overlap: the conflict between reconstruction and KL that
Zhao & Basu (arXiv 2506.21731, v1) describe.

The loss is the negative ELBO of a stated likelihood, per image and averaged over the batch, with the
KL weighted by β (`kl_weight`, the β of Higgins et al. 2017 on the summed form):

    p(x | z) = N(decoder(z), σ² I) over the D pixels (σ = `likelihood_sigma`, on the [-1, 1] pixel scale)
    loss     = Σ_pixels (x − x̂)² / (2σ²) + β Σ_latent KL(q(z|x) ‖ N(0, 1))

so β = 1 is the ELBO itself; the constant D log(σ √(2π)) of −log p(x|z) is left out of the loss and kept
in the logged `train/nll_nats` and `train/elbo` (docs/models.md says which σ and why).
"""

from __future__ import annotations

import math
from typing import NamedTuple, cast

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lightning_modules.base import InjectedOptimizers
from lightning_modules.model_outputs import Generated, LatentDistribution
from lightning_modules.sample_seeds import per_seed_randn
from metrics.reconstruction import image_psnr


class Posterior(NamedTuple):
    mean: Tensor  # (B, C, h, w)
    logvar: Tensor  # (B, C, h, w)

    def sample(self) -> Tensor:
        return self.mean + torch.randn_like(self.mean) * (0.5 * self.logvar).exp()

    def kl_to_standard_normal(self) -> Tensor:
        """Elementwise KL(q || N(0, 1)), (B, C, h, w)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1 - self.logvar)


class NegativeElbo(NamedTuple):
    """The terms of −ELBO per image, (B,) each, in nats."""

    squared_error: Tensor  # Σ over pixels of (x − x̂)²
    nll: Tensor  # −log N(x; x̂, σ² I) = squared_error / (2σ²) + D log(σ √(2π))
    kl: Tensor  # Σ over latent entries of KL(q(z|x) ‖ N(0, 1))


def negative_elbo_terms(x: Tensor, recon: Tensor, posterior: Posterior, sigma: float) -> NegativeElbo:
    """−log p(x|z) under N(recon, σ² I) and KL(q ‖ N(0, I)), each summed per image: (B,) tensors."""
    squared_error = (recon - x).pow(2).flatten(1).sum(1)  # (B,)
    pixels = x[0].numel()
    nll = squared_error / (2 * sigma**2) + pixels * math.log(sigma * math.sqrt(2 * math.pi))  # (B,)
    kl = posterior.kl_to_standard_normal().flatten(1).sum(1)  # (B,)
    return NegativeElbo(squared_error, nll, kl)


class GaussianVAE(InjectedOptimizers, LightningModule):
    """loss = Σ (x − x̂)² / (2σ²) + β Σ KL per image (the negative ELBO at β = 1); validation decodes the posterior mean."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        kl_weight: float = 1.0,
        likelihood_sigma: float = 0.1,
        image_size: int = 8,
        channels: int = 1,
    ):
        super().__init__()
        if not kl_weight >= 0:  # also refuses NaN
            raise ValueError(f"--model.init_args.kl_weight must be >= 0 (the β of the ELBO's KL term), got {kl_weight}")
        if not likelihood_sigma > 0:
            raise ValueError(f"--model.init_args.likelihood_sigma must be > 0 (the pixel noise σ of p(x|z)), got {likelihood_sigma}")
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.save_hyperparameters(logger=False)
        # the networks of networks/autoencoder.py expose int image_channels, latent_channels and downsample
        if encoder.latent_channels != 2 * cast(int, decoder.latent_channels):
            raise ValueError(
                f"GaussianVAE needs encoder latent_channels = 2 x decoder latent_channels (mean and log-variance), "
                f"got {encoder.latent_channels} and {decoder.latent_channels}"
            )
        for name, net in (("encoder", encoder), ("decoder", decoder)):
            if net.image_channels != channels:
                raise ValueError(f"model.{name}.init_args.image_channels={net.image_channels} does not match data.channels={channels}")
        self.encoder, self.decoder = encoder, decoder
        self.latent_channels = cast(int, decoder.latent_channels)
        self.grid_size = image_size // cast(int, encoder.downsample)
        self.val_psnr, self.val_psnr_sampled = image_psnr(), image_psnr()

    def encode(self, x: Tensor) -> Posterior:
        mean, logvar = self.encoder(x).chunk(2, dim=1)  # (B, C, h, w) each
        return Posterior(mean, logvar.clamp(-30, 20))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x).mean)

    @property
    def beta(self) -> float:
        return float(self.hparams["kl_weight"])

    @property
    def likelihood_sigma(self) -> float:
        return float(self.hparams["likelihood_sigma"])

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x = batch["image"]
        posterior = self.encode(x)
        recon = self.decode(posterior.sample())
        terms = negative_elbo_terms(x, recon, posterior, self.likelihood_sigma)
        # the constant D log(σ √(2π)) moves no parameter: left out of the loss, kept in nll and elbo
        loss = (terms.squared_error / (2 * self.likelihood_sigma**2) + self.beta * terms.kl).mean()
        self.log_dict(
            {
                "train/loss": loss,
                "train/mse": terms.squared_error.mean() / x[0].numel(),
                "train/kl": terms.kl.mean(),
                "train/nll_nats": terms.nll.mean(),
                "train/elbo": -(terms.nll + terms.kl).mean(),
            }
        )
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x = batch["image"]
        posterior = self.encode(x)
        self.val_psnr(self.decode(posterior.mean).clamp(-1, 1), x)
        self.val_psnr_sampled(self.decode(posterior.sample()).clamp(-1, 1), x)
        self.log("val/psnr", self.val_psnr, prog_bar=True)
        self.log("val/psnr_sampled", self.val_psnr_sampled)
        self.log("val/kl", posterior.kl_to_standard_normal().flatten(1).sum(1).mean(), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        """The objective's settings as metrics, so that every results.json and W&B run states its β and σ."""
        self.log_dict({"vae/beta": self.beta, "vae/likelihood_sigma": self.likelihood_sigma}, sync_dist=True, reduce_fx="max")

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Generated:
        return Generated(None, self(images).clamp(-1, 1))

    @torch.no_grad()
    def generate(self, seeds: list[int]) -> Generated:
        """Decode draws from the prior N(0, I), one per seed."""
        z = per_seed_randn(seeds, (self.latent_channels, self.grid_size, self.grid_size), self.device)
        return Generated(None, self.decode(z).clamp(-1, 1))

    @torch.no_grad()
    def latent_distribution(self, images: Tensor) -> LatentDistribution:
        """The posteriors the decoder is trained on (it decodes draws from them)."""
        posterior = self.encode(images)
        return LatentDistribution("diag_gaussian", posterior.mean, posterior.logvar)

    @torch.no_grad()
    def log_images(self, batch: dict, max_images: int = 16) -> dict[str, Tensor]:
        x = batch["image"][:max_images]
        return {"inputs": x, "recon": self(x).clamp(-1, 1)}

"""GaussianVAE: the MEPS comparison partner of the BL-AE, on the same encoder/decoder families.

The encoder emits 2C channels, read as the posterior mean and log-variance of C latent
channels; the KL term pulls every per-image posterior toward N(0, I), which is what makes the
posteriors of different images overlap: the conflict between reconstruction and KL that
Zhao & Basu (arXiv 2506.21731, v1) describe. `kl_weight` is the β of a β-VAE (Higgins et al.
2017) on per-element means: loss = mean squared error + β mean KL (docs/metrics.md).
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
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


class GaussianVAE(InjectedOptimizers, LightningModule):
    """loss = MSE + kl_weight * mean elementwise KL; validation decodes the posterior mean."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        kl_weight: float = 1.0,
        image_size: int = 8,
        channels: int = 1,
    ):
        super().__init__()
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

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x = batch["image"]
        posterior = self.encode(x)
        mse = F.mse_loss(self.decode(posterior.sample()), x)
        kl = posterior.kl_to_standard_normal().mean()
        loss = mse + self.hparams["kl_weight"] * kl
        self.log_dict({"train/loss": loss, "train/mse": mse, "train/kl": kl})
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x = batch["image"]
        posterior = self.encode(x)
        self.val_psnr(self.decode(posterior.mean).clamp(-1, 1), x)
        self.val_psnr_sampled(self.decode(posterior.sample()).clamp(-1, 1), x)
        self.log("val/psnr", self.val_psnr, prog_bar=True)
        self.log("val/psnr_sampled", self.val_psnr_sampled)
        self.log("val/kl", posterior.kl_to_standard_normal().mean(), sync_dist=True)

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

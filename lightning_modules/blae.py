"""BinaryLatentAutoencoder: the paper's BL-AE as a thin LightningModule around injected networks."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lightning_modules.base import InjectedOptimizers
from lightning_modules.model_outputs import Generated, LatentDistribution
from metrics.reconstruction import BinRate, BitUsage, image_psnr
from networks.binarizer import NoiseInjectionBinarizer, hard_sign
from networks.bits import pack_bits, unpack_bits
from networks.token_encoder import encoder_tokens


def check_autoencoder_fits(encoder: nn.Module, decoder: nn.Module, channels: int, image_size: int) -> None:
    """One-line errors for networks that cannot work on the configured data."""
    for name, net in (("encoder", encoder), ("decoder", decoder)):
        if net.image_channels != channels:
            raise ValueError(f"model.{name}.init_args.image_channels={net.image_channels} does not match data.channels={channels}")
    if encoder.latent_channels != decoder.latent_channels:
        raise ValueError(f"encoder latent_channels={encoder.latent_channels} != decoder latent_channels={decoder.latent_channels}")
    if image_size % cast(int, encoder.downsample):  # networks/autoencoder.py: an int
        raise ValueError(f"data.image_size={image_size} is not divisible by the encoder's downsampling {encoder.downsample}")


class ReconstructionMetrics(nn.Module):
    """One stage's metrics (val or test): hard-sign and soft PSNR, bin rate, bit usage."""

    def __init__(self, num_bits: int):
        super().__init__()
        self.psnr, self.psnr_soft = image_psnr(), image_psnr()
        self.bin_rate, self.bit_usage = BinRate(), BitUsage(num_bits)


class BinaryLatentAutoencoder(InjectedOptimizers, LightningModule):
    """Images -> tanh latents -> (noise | hard sign) -> decoder; loss MSE + beta * mean(z^2).

    The validation number that matters is `val/psnr`, computed on hard-sign reconstructions: that
    is what every downstream model (γ-ARVM tokens) sees.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        binarizer: NoiseInjectionBinarizer | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        latent_penalty: float = 0.0,
        straight_through_from_step: int | None = None,
        image_size: int = 8,
        channels: int = 1,
    ):
        super().__init__()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.save_hyperparameters(logger=False)  # under LightningCLI this stores the networks' configs
        check_autoencoder_fits(encoder, decoder, channels, image_size)
        self.encoder, self.decoder = encoder, decoder
        self.binarizer = binarizer if binarizer is not None else NoiseInjectionBinarizer()
        self.num_bits = cast(int, encoder.latent_channels)  # networks/autoencoder.py: ints
        self.grid_size = image_size // cast(int, encoder.downsample)
        self.stage_metrics = nn.ModuleDict({stage: ReconstructionMetrics(self.num_bits) for stage in ("val", "test")})

    # --- public API -------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """(B, channels, H, W) in [-1, 1] -> (B, C, h, w) tanh latent."""
        return torch.tanh(self.encoder(x))

    def binarize(self, z: Tensor) -> Tensor:
        """Noisy / straight-through latent while training, hard ±1 codes in eval mode."""
        return self.binarizer(z, straight_through=self.straight_through_active)

    def decode(self, codes: Tensor) -> Tensor:
        """(B, C, h, w) latent or ±1 codes -> (B, channels, H, W) image in about [-1, 1]."""
        return self.decoder(codes)

    @torch.no_grad()
    def tokens(self, x: Tensor) -> Tensor:
        """(B, channels, H, W) images -> (B, h, w) token ids in [0, 2^C) of their hard codes."""
        return encoder_tokens(self.encoder, x)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.binarize(self.encode(x)))

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Generated:
        """Hard-sign round trip: the tokens and images every downstream model sees."""
        codes = hard_sign(self.encode(images))  # (B, C, h, w)
        return Generated(pack_bits(codes), self.decode(codes).clamp(-1, 1))

    @torch.no_grad()
    def generate(self, seeds: list[int]) -> Generated:
        """Uniformly random codes (the γ = 0 limit: no context at all), one grid per seed."""
        grid = (self.grid_size, self.grid_size)
        tokens = torch.stack([torch.randint(0, 2**self.num_bits, grid, generator=torch.Generator().manual_seed(s)) for s in seeds])
        tokens = tokens.to(self.device)  # (n, h, w)
        return Generated(tokens, self.decode(unpack_bits(tokens, self.num_bits)).clamp(-1, 1))

    @torch.no_grad()
    def latent_distribution(self, images: Tensor) -> LatentDistribution:
        """The law of the latent the decoder is trained on at this step: tanh latent + training noise.

        Gaussian noise of std `noise_rate`, or bounded noise of half-width `noise_rate` (Tri(kappa);
        uniform is Tri(1)); a straight-through phase or noise "none" feeds the decoder a point.
        `codes` are the hard-sign codes of inference (their overlap under the same noise is the
        limit the latents approach as they binarize).
        """
        z = self.encode(images)  # (B, C, h, w) tanh latent
        codes = hard_sign(z)
        binarizer = self.binarizer
        if self.straight_through_in_training:
            return LatentDistribution("point", codes, codes=codes)
        if binarizer.noise == "none" or binarizer.noise_rate == 0:
            return LatentDistribution("point", z, codes=codes)
        if binarizer.noise == "gaussian":
            return LatentDistribution("gaussian", z, scale=binarizer.noise_rate, codes=codes)
        kappa = 1.0 if binarizer.noise == "uniform" else binarizer.kappa
        return LatentDistribution("bounded", z, scale=binarizer.noise_rate, kappa=kappa, codes=codes)

    @torch.no_grad()
    def log_images(self, batch: dict, max_images: int = 16) -> dict[str, Tensor]:
        """Inputs and their hard-sign and soft reconstructions, all in [-1, 1]."""
        x = batch["image"][:max_images]
        z = self.encode(x)
        return {"inputs": x, "recon_hard": self.decode(hard_sign(z)).clamp(-1, 1), "recon_soft": self.decode(z).clamp(-1, 1)}

    # --- training ---------------------------------------------------------------------------
    @property
    def straight_through_in_training(self) -> bool:
        """Whether a training step now feeds the decoder straight-through hard codes (no noise)."""
        start = self.hparams["straight_through_from_step"]
        return self.binarizer.straight_through or (start is not None and self.global_step >= start)

    @property
    def straight_through_active(self) -> bool:
        return self.training and self.straight_through_in_training

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x = batch["image"]
        z = self.encode(x)
        recon = self.decode(self.binarize(z))
        mse = F.mse_loss(recon, x)
        latent_l2 = z.pow(2).mean()
        loss = mse + self.hparams["latent_penalty"] * latent_l2
        self.log("train/loss", loss)
        if self.is_logging_step:  # the logger records only these steps; each self.log costs ~1 ms
            with torch.no_grad():
                bin_rate = ((z.abs() - 1).abs() < 0.1).float().mean()
            self.log_dict(
                {
                    "train/mse": mse,
                    "train/latent_l2": latent_l2,
                    "train/bin_rate": bin_rate,
                    "train/straight_through": float(self.straight_through_active),
                }
            )
        return loss

    @property
    def is_logging_step(self) -> bool:
        every = self._trainer.log_every_n_steps if self._trainer is not None else 1  # type: ignore[attr-defined]  # set by Lightning, not declared
        return (self.global_step + 1) % max(every, 1) == 0

    def _evaluate(self, batch: dict, stage: str) -> None:
        x = batch["image"]
        z = self.encode(x)
        codes = self.binarizer(z)  # eval mode: hard sign
        metrics = cast(ReconstructionMetrics, self.stage_metrics[stage])  # every value of stage_metrics is one
        metrics.psnr(self.decode(codes).clamp(-1, 1), x)
        metrics.psnr_soft(self.decode(z).clamp(-1, 1), x)
        metrics.bin_rate(z)
        metrics.bit_usage(codes)
        self.log(f"{stage}/psnr", metrics.psnr, prog_bar=True)
        self.log(f"{stage}/psnr_soft", metrics.psnr_soft)
        self.log(f"{stage}/bin_rate", metrics.bin_rate, prog_bar=True)

    def _log_bit_usage(self, stage: str) -> None:
        """Every rank computes (a collective), then logs the synced scalars.

        They are equal on every rank already. ``sync_dist`` with a ``max`` reduction says so to Lightning
        (which otherwise warns, on a multi-device run, that epoch-level values need ``sync_dist=True``) and
        returns each value unchanged on any number of ranks: the max of equal numbers is exact, a mean of
        three equal floats need not be.
        """
        bit_usage = cast(ReconstructionMetrics, self.stage_metrics[stage]).bit_usage
        usage = bit_usage.compute()
        self.log_dict(
            {
                f"{stage}/bit_entropy": usage.mean_entropy,
                f"{stage}/dead_bits": usage.dead_bits.float(),
                f"{stage}/bit_p_one_min": usage.p_one.min(),
                f"{stage}/bit_p_one_max": usage.p_one.max(),
            },
            sync_dist=True,
            reduce_fx="max",
        )
        bit_usage.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_bit_usage("val")
        self._log_noise_settings()

    def _log_noise_settings(self) -> None:
        """The training noise as metrics (its rate a and its standard deviation), so that every results.json and
        W&B run states the noise its BL-AE was trained at (the sweep's noise cells, the MEPS frontier)."""
        noise = {"blae/noise_rate": float(self.binarizer.noise_rate), "blae/noise_std": float(self.binarizer.noise_std)}
        self.log_dict(noise, sync_dist=True, reduce_fx="max")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_bit_usage("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, Tensor]:
        return {"tokens": self.tokens(batch["image"]), **({"index": batch["index"]} if "index" in batch else {})}

"""What the two γ-ARVMs (neural and kernel) share: the frozen BL-AE, γ, sampling to images, metrics.

The frozen BL-AE is held outside the module tree (a submodule would be trained, saved and wrapped): it is not in the state_dict (the
checkpoint stores its path and sha256 instead), Lightning's `.train()` cannot flip it back, and DDP
never sees its parameters.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import Tensor
from torchmetrics import MeanMetric

from autoencoder_checkpoint.tokens import autoencoder_spec, check_fits_data
from lightning_modules.blae import BinaryLatentAutoencoder
from lightning_modules.frozen_autoencoder import load_autoencoder
from lightning_modules.model_outputs import Generated, LatentDistribution
from lightning_modules.sample_seeds import sample_seeds
from networks.bits import unpack_bits
from networks.gamma_mask import gamma_name, parse_gamma

Gamma = int | Literal["global"]


class LatentTokenModel(LightningModule):
    """Base of the γ-ARVMs. Subclasses implement `sample(n, temperature, generator)` and `nll_bits(tokens)`."""

    def __init__(
        self,
        autoencoder: str | None,
        gamma: Gamma,
        image_size: int,
        channels: int,
        sample_seed: int,
        temperature: float,
        train_nll_grids: int | None = 1000,
    ):
        super().__init__()
        if autoencoder is None:
            raise ValueError(f"{type(self).__name__} needs a BL-AE checkpoint: pass --data.init_args.autoencoder PATH.ckpt")
        self.gamma = parse_gamma(gamma)
        spec = autoencoder_spec(autoencoder)
        check_fits_data(spec, image_size, channels)
        self.spec = spec
        self.num_bits, self.grid_shape = spec.num_bits, spec.grid_shape
        self.sample_seed, self.temperature = sample_seed, temperature
        self._frozen: dict[str, BinaryLatentAutoencoder | None] = {"autoencoder": None}  # a dict keeps it out of the module tree
        self.train_nll_grids = train_nll_grids
        self.val_nll_bits, self.val_acc = MeanMetric(), MeanMetric()
        self.train_nll_bits, self.test_nll_bits = MeanMetric(), MeanMetric()

    @property
    def gamma_label(self) -> str:
        return gamma_name(self.gamma)

    @property
    def autoencoder(self) -> BinaryLatentAutoencoder:
        """The frozen BL-AE, loaded on first use and kept on this module's device."""
        model = self._frozen["autoencoder"]
        if model is None:
            model = self._frozen["autoencoder"] = load_autoencoder(self.spec.path, expected_sha256=self.spec.sha256)
        if model.device != self.device:
            model.to(self.device)
        return model

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["autoencoder"] = {"path": self.spec.path, "sha256": self.spec.sha256}

    # --- generation -----------------------------------------------------------------------------
    def sample(self, n: int, temperature: float = 1.0, generator=None) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """(n, h, w) ids -> (n, channels, H, W) images in [-1, 1] through the frozen decoder."""
        codes = unpack_bits(tokens.to(self.device), self.num_bits)  # (n, C, h, w) ±1
        return self.autoencoder.decode(codes).clamp(-1, 1)

    @torch.no_grad()
    def generate(self, seeds: list[int]) -> Generated:
        """One sample per seed (seed = base + global sample index, see sample_seeds)."""
        tokens = self.sample(len(seeds), self.temperature, generator=seeds)
        return Generated(tokens, self.decode_tokens(tokens))

    #: how `resample` may condition a redrawn cell, the model's richest first (callbacks/measurements/probes.py)
    conditionings: tuple[str, ...] = ("causal",)

    def resample(self, tokens: Tensor, redraw: Tensor, seeds: list[int], conditioning: str = "causal") -> Tensor:
        """(n, h, w) grids with the `redraw` cells ((n, h, w) bool) drawn anew in raster order, one seed
        per grid (as `generate`): "causal" from the γ window before each cell, "window" (the kernel
        model) from every visible cell around it. Prefix completion and forward-backward restoration."""
        raise NotImplementedError

    def check_conditioning(self, conditioning: str) -> None:
        if conditioning not in self.conditionings:
            raise ValueError(f"{type(self).__name__} resamples with conditioning {self.conditionings}, not {conditioning!r}")

    def reconstruct(self, images: Tensor) -> Generated:
        return self.autoencoder.reconstruct(images)

    def latent_distribution(self, images: Tensor) -> LatentDistribution:
        return self.autoencoder.latent_distribution(images)

    @torch.no_grad()
    def log_images(self, batch: dict, max_images: int = 16) -> dict[str, Tensor]:
        return {f"samples_gamma_{self.gamma_label}": self.generate(sample_seeds(self.sample_seed, range(max_images))).images}

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, Tensor]:
        """A predict batch names the global indices of the samples to draw (disjoint across ranks)."""
        generated = self.generate(sample_seeds(self.sample_seed, batch["index"]))
        return {"index": batch["index"], "tokens": generated.tokens, "images": generated.images}

    # --- evaluation -----------------------------------------------------------------------------
    def nll_bits(self, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B, h, w) -> NLL in bits, per token (B, T) or, for the kernel model, the per-token mean of each grid (B,),
        and, if the model has one, its argmax prediction (B, T). Either way every grid's T tokens weigh alike."""
        raise NotImplementedError

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        tokens = batch["tokens"]
        nll, predicted = self.nll_bits(tokens)
        self.val_nll_bits.update(nll)
        self.log("val/nll_bits", self.val_nll_bits, prog_bar=True)
        if predicted is not None:
            self.val_acc.update((predicted == tokens.flatten(1)).float())
            self.log("val/acc", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        """`train/nll_bits`: the model's NLL of its own training grids, measured like val/nll_bits.

        The fit of the training set, beside the held-out nll: a memorizer drives it to the floor
        (log2(N) / T bits per token for N distinct grids of T tokens) while its val nll rises. Not
        the running training loss (that one averages over a changing model, in train mode). Over the
        first `train_nll_grids` training grids (None: all), each rank its share (the metric syncs).
        """
        if self.train_nll_grids == 0 or self.trainer.sanity_checking:
            return
        datamodule: Any = getattr(self.trainer, "datamodule", None)  # duck-typed: any data module with token_grids()
        if not hasattr(datamodule, "token_grids"):
            return
        grids = datamodule.token_grids()[: self.train_nll_grids][self.trainer.global_rank :: self.trainer.world_size]
        batch_size = getattr(datamodule, "batch_size", None) or 256
        for chunk in grids.split(batch_size):
            self.train_nll_bits.update(self.nll_bits(chunk.long().to(self.device))[0])
        if not len(grids):  # a rank with no share still takes part in the sync
            self.train_nll_bits.update(torch.empty(0, device=self.device))
        self.log("train/nll_bits", self.train_nll_bits)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.test_nll_bits.update(self.nll_bits(batch["tokens"])[0])
        self.log("test/nll_bits", self.test_nll_bits)

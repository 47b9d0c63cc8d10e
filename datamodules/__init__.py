"""DataModules shared by all models: ``HFImageDataModule`` serves images, ``LatentTokenDataModule`` their BL-AE tokens."""

from datamodules.hf_images import HFImageDataModule
from datamodules.latent_tokens import LatentTokenDataModule

__all__ = ["HFImageDataModule", "LatentTokenDataModule"]

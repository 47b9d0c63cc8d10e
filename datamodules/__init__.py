"""DataModules shared by all models: ``HFImageDataModule`` serves images, ``LatentTokenDataModule`` their BL-AE tokens."""

from datamodules.image_datamodule import HFImageDataModule
from datamodules.token_datamodule import LatentTokenDataModule

__all__ = ["HFImageDataModule", "LatentTokenDataModule"]

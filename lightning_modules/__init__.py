from lightning_modules.blae import BinaryLatentAutoencoder
from lightning_modules.vae import GaussianVAE

__all__ = ["BinaryLatentAutoencoder", "GaussianVAE"]

from lightning_modules.blae import BinaryLatentAutoencoder

__all__ = ["BinaryLatentAutoencoder"]

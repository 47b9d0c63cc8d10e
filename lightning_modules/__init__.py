from lightning_modules.blae import BinaryLatentAutoencoder
from lightning_modules.gamma_arvm import GammaARVM
from lightning_modules.kernel_arvm import KernelGammaARVM
from lightning_modules.vae import GaussianVAE

__all__ = ["BinaryLatentAutoencoder", "GammaARVM", "GaussianVAE", "KernelGammaARVM"]

"""The BL-AE binarizer: injected noise (or a straight-through sign) while training, hard sign at inference.

MEPS (Zhao & Basu, arXiv 2506.21731; docs/models.md): a deterministic decoder can only reconstruct every image if the latent
distributions of distinct images do not overlap. Noise added to the tanh latent during training
makes overlap costly, so the encoder learns to push latents to the saturated corners ±1; at
inference the hard sign then loses (almost) nothing. The tanh itself is the BL-AE's
(``BinaryLatentAutoencoder.encode`` in lightning_modules/blae.py): the binarizer receives its output.
"""

import math
from typing import Literal

import torch
from torch import Tensor, nn

NoiseKind = Literal["gaussian", "triangular", "uniform", "none"]


def triangular_noise(shape, kappa: float = 2.0, *, device=None, dtype=None, generator=None) -> Tensor:
    """Tri(kappa) on [-1, 1], density (kappa/2)(1 - |e|)^(kappa - 1) (docs/models.md).

    Inverse-CDF sampling: U ~ U(-1, 1), e = sign(U) * (1 - |U|^(1/kappa)).
    """
    u = torch.rand(shape, device=device, dtype=dtype, generator=generator) * 2 - 1
    return torch.sign(u) * (1 - u.abs().pow(1.0 / kappa))


def unit_noise(kind: NoiseKind, shape, kappa: float, *, device=None, dtype=None, generator=None) -> Tensor:
    """Noise of unit scale: N(0, 1), Tri(kappa) on [-1, 1], or U(-1, 1)."""
    if kind == "gaussian":
        return torch.randn(shape, device=device, dtype=dtype, generator=generator)
    if kind == "triangular":
        return triangular_noise(shape, kappa, device=device, dtype=dtype, generator=generator)
    if kind == "uniform":
        return torch.rand(shape, device=device, dtype=dtype, generator=generator) * 2 - 1
    if kind == "none":
        return torch.zeros(shape, device=device, dtype=dtype)
    raise ValueError(f"unknown noise kind {kind!r}: expected gaussian, triangular, uniform or none")


def hard_sign(z: Tensor) -> Tensor:
    """sign with sign(0) = +1, so every latent is a code in {-1, +1}."""
    return torch.where(z < 0, -torch.ones_like(z), torch.ones_like(z))


def straight_through_sign(z: Tensor) -> Tensor:
    """Hard sign forward, identity gradient backward."""
    return z + (hard_sign(z) - z).detach()


class NoiseInjectionBinarizer(nn.Module):
    """z + rate * noise while training (z: the tanh latent); hard sign in eval mode.

    `straight_through=True` (or the `straight_through` call argument, which a LightningModule can
    switch on late in training) replaces the noisy latent with a straight-through hard sign, so
    the decoder trains on exactly the codes it sees at inference.
    """

    def __init__(self, noise: NoiseKind = "gaussian", noise_rate: float = 0.3, kappa: float = 2.0, straight_through: bool = False):
        super().__init__()
        unit_noise(noise, (1,), kappa)  # validates the kind
        if noise_rate < 0:
            raise ValueError(f"noise_rate must be >= 0, got {noise_rate}")
        self.noise, self.noise_rate, self.kappa = noise, noise_rate, kappa
        self.straight_through = straight_through

    @property
    def noise_std(self) -> float:
        """Standard deviation of the injected noise (used by the overlap closed forms)."""
        unit_var = {"gaussian": 1.0, "uniform": 1 / 3, "none": 0.0}.get(self.noise)
        if unit_var is None:  # Tri(kappa): E[e^2] = 2 / ((kappa + 1)(kappa + 2))
            unit_var = 2 / ((self.kappa + 1) * (self.kappa + 2))
        return self.noise_rate * math.sqrt(unit_var)

    def forward(self, z: Tensor, straight_through: bool | None = None) -> Tensor:
        """z: tanh latent (B, C, h, w) in (-1, 1) -> the latent the decoder sees."""
        if not self.training:
            return hard_sign(z)
        if self.straight_through if straight_through is None else straight_through:
            return straight_through_sign(z)
        return z + self.noise_rate * unit_noise(self.noise, z.shape, self.kappa, device=z.device, dtype=z.dtype)


TanhBinarizer = NoiseInjectionBinarizer
"""The class's former name: BL-AE checkpoints written before the rename record it by this class path."""

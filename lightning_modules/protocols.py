"""What the measurement callbacks ask of a model, so any model can carry any callback.

- `reconstruct(images) -> Generated`: the model's own round trip (ceiling of memorization).
- `generate(seeds) -> Generated`: one sample per seed (seed = base + global sample index).
- `latent_distribution(images) -> LatentDistribution`: per-image latent laws, for overlap (MEPS).
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor


class Generated(NamedTuple):
    tokens: Tensor | None  # (n, h, w) long ids, None for models without tokens (VAE)
    images: Tensor  # (n, channels, H, W) in [-1, 1]


class LatentDistribution(NamedTuple):
    """Per-image latent law: binary codes with a noise model, or a diagonal Gaussian posterior."""

    kind: Literal["binary_gaussian", "binary_bounded", "diag_gaussian"]
    latents: Tensor  # (B, C, h, w): ±1 codes, or posterior means
    logvar: Tensor | None = None  # (B, C, h, w) for diag_gaussian
    sigma: float | None = None  # noise std for binary_gaussian


def sample_seeds(base_seed: int, indices) -> list[int]:
    """One seed per global sample index, so a sample never depends on which rank or batch drew it."""
    return [base_seed + int(i) for i in indices]


def per_seed_randn(seeds: list[int], shape: tuple[int, ...], device=None) -> Tensor:
    """(len(seeds), *shape) standard normals, row i from its own generator."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]).to(device)

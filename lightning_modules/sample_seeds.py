"""Per-sample seeds: a generated sample depends on its global index only, never on the rank or batch that drew it."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_seeds(base_seed: int, indices) -> list[int]:
    """One seed per global sample index, so a sample never depends on which rank or batch drew it."""
    return [base_seed + int(i) for i in indices]


def per_seed_randn(seeds: list[int], shape: tuple[int, ...], device=None) -> Tensor:
    """(len(seeds), *shape) standard normals, row i from its own generator."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]).to(device)

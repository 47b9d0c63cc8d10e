"""Reconstruction-side metrics of the BL-AE, all with fixed-size "sum" states (exact under DDP)."""

from typing import NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.image import PeakSignalNoiseRatio


def image_psnr() -> PeakSignalNoiseRatio:
    """PSNR of pooled MSE for images in [-1, 1] (equals the 0-255 PSNR of the same images)."""
    return PeakSignalNoiseRatio(data_range=2.0)


class BinRate(Metric):
    """Fraction of tanh latents within `tolerance` of ±1 (the authors' "bin rate")."""

    full_state_update = False
    higher_is_better = True
    hits: Tensor  # states (add_state)
    total: Tensor

    def __init__(self, tolerance: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.tolerance = tolerance
        self.add_state("hits", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, z: Tensor) -> None:
        self.hits += ((z.detach().abs() - 1).abs() < self.tolerance).sum()
        self.total += z.numel()

    def compute(self) -> Tensor:
        return self.hits.float() / self.total.clamp_min(1)


class BitUsageSummary(NamedTuple):
    p_one: Tensor  # (C,) P(bit = +1)
    mean_entropy: Tensor  # mean over bits of H(p_one), in bits; 1 = perfectly balanced
    dead_bits: Tensor  # bits whose P(+1) is within `dead_tolerance` of 0 or 1


def binary_entropy_bits(p: Tensor) -> Tensor:
    p = p.clamp(1e-12, 1 - 1e-12)
    return -(p * p.log2() + (1 - p) * (1 - p).log2())


class BitUsage(Metric):
    """Per-bit usage of hard codes: P(+1) per latent channel, mean bit entropy, dead bits."""

    full_state_update = False
    ones: Tensor  # states (add_state)
    count: Tensor

    def __init__(self, num_bits: int, dead_tolerance: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.dead_tolerance = dead_tolerance
        self.add_state("ones", torch.zeros(num_bits, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, codes: Tensor) -> None:
        """codes: (B, C, h, w) hard signs."""
        self.ones += (codes.detach() > 0).sum(dim=(0, 2, 3))
        self.count += codes.shape[0] * codes.shape[2] * codes.shape[3]

    def compute(self) -> BitUsageSummary:
        p_one = self.ones.double() / self.count.clamp_min(1)
        dead = ((p_one < self.dead_tolerance) | (p_one > 1 - self.dead_tolerance)).sum()
        return BitUsageSummary(p_one.float(), binary_entropy_bits(p_one).mean().float(), dead)

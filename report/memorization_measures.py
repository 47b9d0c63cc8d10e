"""The memorization measures the report compares, and the 95 % Wilson interval every rate of them carries.

Three measures of "this sample copies a training item", each a rate over samples (callbacks/measurements/memorization.py):
- "pixel" (`mem/psnr25_rate`): NN-PSNR ≥ 25 dB against the original training images, the authors' rule. A
  lossy decoder caps it: a perfect copier scores only the share of training images it reconstructs at 25 dB;
- "decoded" (`mem/decoded_psnr25_rate`): NN-PSNR ≥ 25 dB against the training images decoded through the
  autoencoder, what a copier of a training token grid (or latent) decodes to; a perfect copier scores 1;
- "latent" (`mem/latent_near_copy_rate`): the token grid within 1 % of the bits of a training grid (Hamming);
  token models only.
Each has a floor (`mem/floor_<rate>`: held-out images' reconstructions, the data's own redundancy) and a
ceiling (`mem/ceiling_<rate>`: training images' reconstructions, a perfect copier), measured on
`mem/floor_n` and `mem/ceiling_n` images.
"""

from __future__ import annotations

import math

Z95 = 1.959964  # two-sided 95 % normal quantile

MEASURES = {"pixel": "psnr25_rate", "decoded": "decoded_psnr25_rate", "latent": "latent_near_copy_rate"}
"""Measure name -> its rate's metric name under `mem/` (in order of preference when two gaps tie)."""

MEASURE_TEXT = {
    "pixel": "NN-PSNR ≥ 25 dB against the original training images (the authors' rule)",
    "decoded": "NN-PSNR ≥ 25 dB against the training images decoded through the autoencoder",
    "latent": "token grid within 1 % of the bits of a training grid",
}


def measure_key(measure: str, reference: str | None = None) -> str:
    """``mem/latent_near_copy_rate``; with reference "floor" or "ceiling": ``mem/floor_latent_near_copy_rate``."""
    return f"mem/{reference + '_' if reference else ''}{MEASURES[measure]}"


def wilson_interval(rate: float, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a rate measured on n samples (good at rates near 0 and 1)."""
    centre = (rate + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(rate * (1 - rate) / n + Z95**2 / (4 * n**2)) / (1 + Z95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_interval(rate: float | None, n: float | None) -> tuple[float | None, float | None]:
    """(low, high) of a rate measured on n items; (None, None) where the rate or its n was not recorded."""
    if rate is None or not n:
        return None, None
    return wilson_interval(rate, int(n))

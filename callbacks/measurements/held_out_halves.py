"""Two disjoint sets of held-out images: the real set samples are scored against, and the reference "generator".

The reference KID/FID of NovelSampleQualityCallback scores the model's reconstructions of held-out
images against real held-out images. If those were reconstructions *of the same* images, each
reconstruction would sit next to its own original, a pairing no sampler can have: the unbiased KID
then falls below zero (digits demo: -0.0029), a score no generator can reach. Reconstructions of
*other* held-out images are an honest best case for a sampler that decodes through this autoencoder:
draws from the data distribution, passed through the decoder, independent of the real set.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from nn_search.deduplication import deduplicate_rows


class HeldOutHalves(NamedTuple):
    real: Tensor  # uint8 (m, C, H, W): the real images every sample set is scored against
    generator: Tensor  # uint8 (k, C, H, W): other images, whose reconstructions are the reference sampler


def disjoint_halves(images: Tensor, real_size: int, generator_size: int) -> HeldOutHalves:
    """Split uint8 (N, C, H, W) held-out images into a real set and a generator set sharing no image.

    Exact duplicates are dropped first (a duplicate in both sets would pair them again). The
    generator set takes min(generator_size, U // 2) of the U distinct images, the real set the
    first min(real_size, U - that) of the others: the real set comes first, so it stays the same
    images when only `generator_size` changes.
    """
    distinct = deduplicate_rows(images).rows  # (U, C, H, W), order of first appearance
    generator_count = min(generator_size, len(distinct) // 2)
    real_count = min(real_size, len(distinct) - generator_count)
    return HeldOutHalves(real=distinct[:real_count], generator=distinct[real_count : real_count + generator_count])

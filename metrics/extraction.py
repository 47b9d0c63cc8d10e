"""Prefix extraction: does the model complete a training grid's first rows into that training image?

The test used to extract training data from language models (Carlini et al., "Extracting Training
Data from Large Language Models", USENIX Security 2021), carried to token grids: the model is given
the first k rows of a grid and draws the rest. A completion is *extracted* when it decodes to within
`threshold_db` (25 dB, the memorization threshold of metrics/memorization.py) PSNR of its source
image, compared as saved uint8 images exactly as NNMemorization compares samples; its latent distance
is the Hamming distance (bits) of the completed grid to the source grid. The same completion of
held-out grids is the control: what a prefix alone gives, without memorization. docs/probes.md.

Per-sample values are float64 "cat" states (metrics/_per_sample.py): `compute()` is exact under DDP
with uneven or empty shares, whatever the number of ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from imaging.pixels import signed_unit_to_uint8
from metrics._per_sample import PerSampleMetric
from metrics.memorization import _median as median
from metrics.memorization import psnr_from_distance

TRAIN, CONTROL = 0, 1


def hamming_bits(a: Tensor, b: Tensor, num_bits: int) -> Tensor:
    """(B, h, w) ids, (B, h, w) ids -> (B,) number of differing bits."""
    diff = (a.long() ^ b.long()).reshape(a.shape[0], -1, 1)  # (B, T, 1)
    shifts = torch.arange(num_bits, device=a.device)
    return ((diff >> shifts) & 1).sum(dim=(1, 2))  # (B,)


def image_psnr(images: Tensor, sources: Tensor) -> Tensor:
    """(B, C, H, W) float in [-1, 1] or uint8, (B, C, H, W) uint8 -> (B,) PSNR in dB, pairwise."""
    a = signed_unit_to_uint8(images).flatten(1).long()  # (B, D)
    b = signed_unit_to_uint8(sources.to(images.device)).flatten(1).long()  # (B, D)
    squared = (a - b).square().sum(1)  # (B,) exact integer
    return psnr_from_distance(squared.double().sqrt(), a.shape[1])


class PrefixExtraction(PerSampleMetric):
    """Extraction rates per prefix length, for training sources and the held-out control.

    prefix_rows: the prefix lengths (rows) to report; a prefix of every row (no completion) is the
    ceiling: the source grid's own decoding, what a perfect copier reaches through this decoder.
    """

    higher_is_better = None

    def __init__(self, prefix_rows: Sequence[int], num_bits: int, threshold_db: float = 25.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix_rows = tuple(int(r) for r in prefix_rows)
        self.num_bits, self.threshold_db = num_bits, float(threshold_db)
        self.add_per_sample_state("psnr", "hamming", "rows", "held_out")

    def update(
        self, completions: Tensor, sources: Tensor, completion_tokens: Tensor, source_tokens: Tensor, rows: int, held_out: bool
    ) -> None:
        """completions: (B, C, H, W) decoded completions; sources: (B, C, H, W) uint8 source images; tokens (B, h, w)."""
        if int(rows) not in self.prefix_rows:
            raise ValueError(f"prefix of {rows} rows is not one of {self.prefix_rows}")
        count = completions.shape[0]
        self.append_per_sample(
            psnr=image_psnr(completions, sources),
            hamming=hamming_bits(completion_tokens, source_tokens.to(completion_tokens.device), self.num_bits),
            rows=torch.full((count,), int(rows), device=completions.device),
            held_out=torch.full((count,), CONTROL if held_out else TRAIN, device=completions.device),
        )

    def compute(self) -> dict[str, Tensor]:
        """rate_rows{k}, control_rate_rows{k}, hamming_median_rows{k}, control_hamming_median_rows{k}, count_rows{k},
        control_count_rows{k} (NaN rates and medians where nothing was measured)."""
        psnr, hamming = self.gathered("psnr"), self.gathered("hamming")
        rows, held_out = self.gathered("rows"), self.gathered("held_out")
        values = {}
        for k in self.prefix_rows:
            for split, prefix in ((TRAIN, ""), (CONTROL, "control_")):
                chosen = (rows == k) & (held_out == split)
                values[f"{prefix}rate_rows{k}"] = (psnr[chosen] >= self.threshold_db).double().mean()
                values[f"{prefix}hamming_median_rows{k}"] = median(hamming[chosen])
                values[f"{prefix}count_rows{k}"] = chosen.sum().double()
        return values

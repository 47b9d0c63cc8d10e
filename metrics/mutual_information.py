"""Mutual information between latent tokens d cells apart: how far spatial dependence reaches.

The gamma-window hypothesis (paper-spec §3-4) is about how much a token tells about its
neighbours at distance d. Plug-in MI from joint counts of (token at p, token at p + d) along
rows and columns, d = 1..max_distance, for whole tokens (V = 2^C values) and for single bits
(the same bit at both ends). Counts are integer "sum" states, so DDP sync is exact and cheap.

The plug-in estimate is biased upwards by about (m_ab - m_a - m_b + 1) / (2 n ln 2) bits
(Miller-Madow, m = occupied cells): independent tokens score that, not 0, so it is returned
alongside as the finite-sample floor.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

MAX_TOKEN_VALUES = 256  # beyond this the (V, V) joint tables get too large to be worth it
AXES = (2, 1)  # horizontal (along a row, dim w), vertical (along a column, dim h) of (B, h, w)


class TokenMutualInformation(Metric):
    """MI (bits) between tokens, and between equal bits of tokens, at offsets d = 1..max_distance.

    compute() -> token_mi (D,) from horizontal and vertical pairs pooled, token_mi_by_axis (2, D)
    rows = (horizontal, vertical), token_mi_bias (D,) the Miller-Madow floor of token_mi, bit_mi
    (D,) mean over bits, bit_mi_by_axis (2, D), distances (D,). The token_* keys are absent when
    2^num_bits > 256 (only the bit-level statistics are kept then).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, num_bits: int, max_distance: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_bits, self.max_distance = num_bits, max_distance
        self.num_values = 2**num_bits
        self.with_tokens = self.num_values <= MAX_TOKEN_VALUES
        if self.with_tokens:
            self.add_state("token_joint", torch.zeros(len(AXES), max_distance, self.num_values, self.num_values, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("bit_joint", torch.zeros(len(AXES), max_distance, num_bits, 2, 2, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, tokens: Tensor) -> None:
        """tokens: (B, h, w) integer ids in [0, 2^num_bits)."""
        tokens = tokens.long().to(self.bit_joint.device)
        shifts = torch.arange(self.num_bits - 1, -1, -1, device=tokens.device)  # (C,) MSB first
        bits = (tokens[..., None] >> shifts) & 1  # (B, h, w, C)
        bit_offsets = torch.arange(self.num_bits, device=tokens.device) * 4  # (C,) start of bit c's 2x2 table
        for axis_index, axis in enumerate(AXES):
            for distance in range(1, min(self.max_distance, tokens.shape[axis] - 1) + 1):
                span = tokens.shape[axis] - distance
                here, there = tokens.narrow(axis, 0, span), tokens.narrow(axis, distance, span)  # (B, ., .)
                if self.with_tokens:
                    pair_ids = (here * self.num_values + there).reshape(-1)  # (pairs,)
                    counts = torch.bincount(pair_ids, minlength=self.num_values**2)  # (V * V,)
                    self.token_joint[axis_index, distance - 1] += counts.view(self.num_values, self.num_values)
                bit_here, bit_there = bits.narrow(axis, 0, span), bits.narrow(axis, distance, span)  # (B, ., ., C)
                bit_pair_ids = (bit_offsets + 2 * bit_here + bit_there).reshape(-1)  # (pairs * C,)
                counts = torch.bincount(bit_pair_ids, minlength=4 * self.num_bits)  # (4 C,)
                self.bit_joint[axis_index, distance - 1] += counts.view(self.num_bits, 2, 2)

    def compute(self) -> dict[str, Tensor]:
        result = {
            "bit_mi": plugin_mi_bits(self.bit_joint.sum(0)).mean(-1),  # (D,)
            "bit_mi_by_axis": plugin_mi_bits(self.bit_joint).mean(-1),  # (2, D)
            "distances": torch.arange(1, self.max_distance + 1, device=self.bit_joint.device),
        }
        if self.with_tokens:
            pooled = self.token_joint.sum(0)  # (D, V, V)
            result["token_mi"] = plugin_mi_bits(pooled)
            result["token_mi_by_axis"] = plugin_mi_bits(self.token_joint)
            result["token_mi_bias"] = miller_madow_mi_bias_bits(pooled)
        return result


def plugin_mi_bits(joint_counts: Tensor) -> Tensor:
    """(..., A, B) joint counts -> (...) plug-in mutual information in bits (NaN without counts)."""
    counts = joint_counts.double()
    total = counts.sum((-2, -1), keepdim=True)  # (..., 1, 1)
    joint = counts / total  # (..., A, B), NaN everywhere without counts
    independent = joint.sum(-1, keepdim=True) * joint.sum(-2, keepdim=True)  # (..., A, B) p(a) p(b)
    terms = torch.where(joint > 0, joint * torch.log2(joint / independent), torch.zeros_like(joint))  # 0 log 0 = 0
    mi = terms.sum((-2, -1))  # (...)
    return torch.where(total[..., 0, 0] > 0, mi, torch.full_like(mi, float("nan")))


def miller_madow_mi_bias_bits(joint_counts: Tensor) -> Tensor:
    """(..., A, B) counts -> (...) expected plug-in MI of independent variables with these supports:
    (m_ab - m_a - m_b + 1) / (2 n ln 2), m = number of occupied cells (Miller-Madow)."""
    occupied = (joint_counts > 0).sum((-2, -1))  # (...)
    occupied_a = (joint_counts.sum(-1) > 0).sum(-1)  # (...)
    occupied_b = (joint_counts.sum(-2) > 0).sum(-1)  # (...)
    total = joint_counts.sum((-2, -1)).double()  # (...)
    return (occupied - occupied_a - occupied_b + 1).double() / (2 * total * math.log(2))

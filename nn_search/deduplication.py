"""Exact row deduplication (the memorization references: duplicated training images would make d2 = d1)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class UniqueRows(NamedTuple):
    """Distinct rows in order of first appearance, and where every original row went."""

    rows: Tensor  # (U, ...) same dtype and trailing shape as the input
    inverse: Tensor  # (N,) long: x[i] == rows[inverse[i]]


def deduplicate_rows(x: Tensor) -> UniqueRows:
    """Exact row deduplication of (N, ...) data (uint8 images, long token grids, any dtype).

    Rows keep the order of their first appearance, so data without duplicates comes back
    unchanged and `first_occurrence(inverse)` maps a unique row to a valid original index.
    """
    flat = x.reshape(x.shape[0], -1)  # (N, F)
    _, inverse = torch.unique(flat, dim=0, return_inverse=True)  # (N,) ids in sorted-row order
    first = first_occurrence(inverse)  # (U,) original index of each sorted unique row
    appearance_order = first.argsort()  # (U,) sorted-row ids by first appearance
    rank = torch.empty_like(appearance_order)
    rank[appearance_order] = torch.arange(len(first), device=x.device)  # sorted id -> appearance id
    return UniqueRows(rows=x[first[appearance_order]], inverse=rank[inverse])


def first_occurrence(inverse: Tensor) -> Tensor:
    """(N,) inverse ids -> (U,) lowest original index of every unique id."""
    num_unique = int(inverse.max()) + 1 if inverse.numel() else 0
    positions = torch.arange(inverse.numel(), device=inverse.device)
    first = torch.full((num_unique,), inverse.numel(), dtype=torch.long, device=inverse.device)
    return first.scatter_reduce_(0, inverse, positions, reduce="amin")

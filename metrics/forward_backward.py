"""Forward–backward resampling: which cells change when a model restores a corrupted grid, and in what chunks.

After Sclocchi et al., "Probing the latent hierarchical structure of data via diffusion models"
(arXiv 2410.13770): corrupt a grid at noise level p (forward), let the model restore it (backward),
and look at the cells whose restored token differs from the clean one. Here the forward process
erases a fraction p of the cells, chosen uniformly (round(p·T) of the T cells of each grid, a
seeded random order per grid whose first cells are erased: the cells erased at a lower p are erased
at every higher p too); the model redraws exactly those cells (callbacks/measurements/probes.py says how each
model conditions). docs/probes.md.

Measured, over all restored grids:
- changed_fraction: changed cells / all cells (≤ p: a kept cell never changes);
- corrupted_changed_fraction: changed / erased cells;
- correlation(d), d = 1..D: the Pearson correlation of the "changed" indicator over ordered pairs
  of *erased* cells at Chebyshev distance d. Restricted to erased cells because a kept cell cannot
  change: over all cells the random erasure itself would decorrelate the indicator (a restoration
  that changes every erased cell at once would read ≈ p). Independent changes give 0; a grid that
  changes all of its erased cells or none (a jump to another training grid) gives 1;
- correlation_length = Σ_{d=1}^{D} correlation(d), in cells (the integrated correlation; 0 when no
  cell changed; it saturates at D for changes coherent across the whole grid);
- exact_rate: grids restored to exactly their clean tokens.

Every state is an integer count summed over ranks, so `compute()` is exact under DDP with uneven or
empty shares, whatever the number of ranks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from networks.gamma_mask import grid_coords

MASK_SEED_OFFSET = 2**32  # erasure orders draw from seeds apart from the samplers' (base + index < 2^32)


def erasure_order(seed: int, num_cells: int) -> Tensor:
    """(T,) long: a uniformly random order of the cells, from its own seed."""
    generator = torch.Generator().manual_seed(MASK_SEED_OFFSET + int(seed))
    return torch.rand(num_cells, generator=generator).argsort()


def erased_cells(orders: Tensor, p: float) -> Tensor:
    """(B, T) orders -> (B, T) bool: the first round(p·T) cells of each order are erased."""
    count = round(p * orders.shape[1])
    erased = torch.zeros(orders.shape, dtype=torch.bool, device=orders.device)
    return erased.scatter_(1, orders[:, :count], True) if count else erased


def distance_rings(height: int, width: int, max_distance: int) -> Tensor:
    """(D, T, T) float64: [d-1, i, j] = 1 where cells i and j lie at Chebyshev distance d."""
    rows, cols = grid_coords(height, width)
    chebyshev = torch.maximum((rows.view(-1, 1) - rows.view(1, -1)).abs(), (cols.view(-1, 1) - cols.view(1, -1)).abs())
    return torch.stack([(chebyshev == d) for d in range(1, max_distance + 1)]).double()


class ChangeCorrelation(Metric):
    """Changed fraction and the spatial correlation of changes of restored grids (module docstring)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None
    rings: Tensor  # buffer
    grids: Tensor  # states (add_state): () counts, then (D,) pair counts
    cells: Tensor
    erased: Tensor
    changed: Tensor
    exact: Tensor
    pairs: Tensor
    pairs_changed: Tensor
    pair_ends_changed: Tensor

    def __init__(self, height: int, width: int, max_distance: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height, self.width = height, width
        self.max_distance = max(height, width) - 1 if max_distance is None else int(max_distance)
        if not 1 <= self.max_distance <= max(height, width) - 1:
            raise ValueError(f"max_distance must lie in 1..{max(height, width) - 1} on a {height}x{width} grid, got {max_distance}")
        self.register_buffer("rings", distance_rings(height, width, self.max_distance), persistent=False)  # (D, T, T)
        for name in ("grids", "cells", "erased", "changed", "exact"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        for name in ("pairs", "pairs_changed", "pair_ends_changed"):  # ordered pairs of erased cells, per distance
            self.add_state(name, default=torch.zeros(self.max_distance, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, clean: Tensor, restored: Tensor, erased: Tensor) -> None:
        """(B, h, w) clean ids, (B, h, w) restored ids, (B, h, w) bool erased cells."""
        if clean.shape != restored.shape or clean.shape != erased.shape or tuple(clean.shape[1:]) != (self.height, self.width):
            raise ValueError(
                f"clean {tuple(clean.shape)}, restored {tuple(restored.shape)} and erased {tuple(erased.shape)} "
                f"must all be (B, {self.height}, {self.width})"
            )
        device = self.rings.device
        erased = erased.reshape(erased.shape[0], -1).to(device)  # (B, T)
        changed = clean.reshape(erased.shape).to(device) != restored.reshape(erased.shape).to(device)  # (B, T)
        if (changed & ~erased).any():
            raise ValueError("a kept cell changed: restoration must redraw the erased cells only")
        self.grids += erased.shape[0]
        self.cells += erased.numel()
        self.erased += erased.sum()
        self.changed += changed.sum()
        self.exact += (~changed.any(1)).sum()
        e, c = erased.double(), changed.double()  # (B, T)
        self.pairs += pair_sums(e, self.rings, e)
        self.pairs_changed += pair_sums(c, self.rings, c)
        self.pair_ends_changed += pair_sums(c, self.rings, e)

    def compute(self) -> dict[str, Tensor]:
        pairs = self.pairs.double()
        mean = self.pair_ends_changed.double() / pairs  # (D,) share of changed ends among erased pair members
        both = self.pairs_changed.double() / pairs  # (D,)
        correlation = (both - mean.square()) / (mean * (1 - mean))  # (D,) NaN where undefined
        finite = correlation[torch.isfinite(correlation)]
        if self.changed == 0:
            length = torch.tensor(0.0, dtype=torch.float64, device=pairs.device)
        else:
            length = finite.sum() if finite.numel() else torch.tensor(float("nan"), dtype=torch.float64, device=pairs.device)
        cells, erased = self.cells.double(), self.erased.double()
        return {
            "changed_fraction": self.changed.double() / cells,
            "corrupted_changed_fraction": self.changed.double() / erased,
            "erased_fraction": erased / cells,
            "exact_rate": self.exact.double() / self.grids.double(),
            "correlation": correlation,
            "correlation_length": length,
            "grids": self.grids.double(),
        }


def pair_sums(left: Tensor, rings: Tensor, right: Tensor) -> Tensor:
    """(B, T), (D, T, T), (B, T) 0/1 -> (D,) long: Σ_b Σ_{i,j at distance d} left[b, i] right[b, j] (exact small integers)."""
    return torch.einsum("bi,dij,bj->d", left, rings, right).round().long()

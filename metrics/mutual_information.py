"""Mutual information between latent tokens d cells apart, against a permutation null.

The local dependence hypothesis (LDH, Zhao & Basu, arXiv 2506.21731) is about how much a token
tells about its neighbours at grid distance d. Plug-in MI from joint counts of (token at p, token
at p + d) along rows and columns, pooled over positions and both axes, d = 1..max_distance, for
whole tokens (V = 2^C values) and for single bits (the same bit at both ends, mean over bits).

The plug-in value is not 0 for independent tokens: it carries a finite-sample bias of about
(m_ab - m_a - m_b + 1) / (2 n ln 2) bits (Miller-Madow; `token_mi_bias`), and pooling positions adds
the MI of position-dependent marginals (a border cell is mostly background at both ends). Both are
cancelled by a permutation null built at the same positions: the token at p from image i paired
with the token at p + d from image pi(i), pi a random cyclic permutation (no image meets itself;
every image is used once at each end, so every position's two marginals are kept exactly). For
tokens that are independent at distance d the observed table and a null table have the same law,
so `*_excess` = MI - mean null MI is ~0, and the 95 % interval [MI - q97.5, MI - q2.5] of the null
quantiles excludes 0 from below exactly when a permutation test rejects independence at 2.5 %
one-sided. docs/metrics.md has the definitions.

DDP: the token grids are tiny, so they are gathered (every rank then holds the same set, ordered
by the global image index given to `update`) and every rank computes the same counts and the same
permutations from a seeded CPU generator: 2 processes give exactly what 1 process gives.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from metrics._per_sample import PerSampleMetric
from networks.bits import token_bits

MAX_TOKEN_VALUES = 256  # beyond this the (V, V) joint tables get too large to be worth it
AXES = (2, 1)  # horizontal (along a row, dim w), vertical (along a column, dim h) of (B, h, w)
NULL_QUANTILES = (0.025, 0.975)


class PairSamples(NamedTuple):
    """Tokens at both ends of every (p, p + d) pair of one axis: (N, pairs per image) each."""

    here: Tensor
    there: Tensor


class TokenMutualInformation(PerSampleMetric):
    """MI (bits) between tokens, and between equal bits of tokens, at offsets d = 1..max_distance.

    update(tokens (B, h, w) ids in [0, 2^num_bits), index=None (B,) global image indices).
    compute() -> (D,) curves unless noted:
      token_mi (pooled over both axes), token_mi_by_axis (2, D) rows = (horizontal, vertical),
      token_mi_bias (Miller-Madow), token_mi_null (mean null MI), token_mi_excess = token_mi -
      token_mi_null, token_mi_excess_lo / _hi (95 % permutation interval), and the same for bits:
      bit_mi, bit_mi_by_axis, bit_mi_null, bit_mi_excess, bit_mi_excess_lo / _hi; distances.
    The token_* keys are absent when 2^num_bits > 256 (only the bit-level statistics are kept).
    Give `index` with every update or with none: with it the null pairs images by their global
    index (DDP-exact); without it, by the order of the gathered rows.
    """

    higher_is_better = None
    height: Tensor  # states (add_state): the grid shape
    width: Tensor

    def __init__(self, num_bits: int, max_distance: int = 4, num_permutations: int = 100, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_permutations < 2:
            raise ValueError(f"num_permutations must be >= 2 for an interval, got {num_permutations}")
        self.num_bits, self.max_distance = num_bits, max_distance
        self.num_permutations, self.seed = num_permutations, seed
        self.num_values = 2**num_bits
        self.with_tokens = self.num_values <= MAX_TOKEN_VALUES
        self.add_per_sample_state("tokens", "index")
        # grid shape; "max" recovers it on a rank that saw no update
        self.add_state("height", torch.tensor(0), dist_reduce_fx="max")
        self.add_state("width", torch.tensor(0), dist_reduce_fx="max")

    def update(self, tokens: Tensor, index: Tensor | None = None) -> None:
        """tokens: (B, h, w) integer ids in [0, 2^num_bits); index: (B,) global image indices."""
        if tokens.ndim != 3:
            raise ValueError(f"tokens must be (B, h, w) grids, got shape {tuple(tokens.shape)}")
        for name, size in (("height", tokens.shape[1]), ("width", tokens.shape[2])):
            if int(getattr(self, name)) not in (0, size):
                raise ValueError(f"token grid {name} changed between updates: {int(getattr(self, name))} then {size}")
            setattr(self, name, torch.full_like(getattr(self, name), size))
        self.append_per_sample(tokens=tokens)
        if index is not None:
            self.append_per_sample(index=torch.as_tensor(index).reshape(-1))

    def compute(self) -> dict[str, Tensor]:
        tokens = self.ordered_tokens()  # (N, h, w) long, the same on every rank
        orders = cyclic_derangements(tokens.shape[0], self.num_permutations, self.seed).to(tokens.device)  # (R, N)
        if self.with_tokens:  # bit tables follow from the token tables (a (V, V) -> (C, 2, 2) projection)
            grids, counts = tokens, lambda here, there: token_joint_counts(here, there, self.num_values)  # noqa: E731
        else:
            grids, counts = token_bits(tokens, self.num_bits).double(), bit_joint_counts  # (N, h, w, C)
        observed = self.tables(grids, grids, counts)  # (2, D, V, V) or (2, D, C, 2, 2)
        null_tables = (self.tables(grids, grids[order], counts).sum(0) for order in orders)  # R x (D, ...)
        null_token, null_bit = [], []
        for table in null_tables:
            if self.with_tokens:
                null_token.append(plugin_mi_bits(table))  # (D,)
                table = self.bit_tables(table)
            null_bit.append(plugin_mi_bits(table).mean(-1))  # (D,)
        bit_observed = self.bit_tables(observed) if self.with_tokens else observed  # (2, D, C, 2, 2)
        result = {
            "distances": torch.arange(1, self.max_distance + 1, device=tokens.device),
            "bit_mi": plugin_mi_bits(bit_observed.sum(0)).mean(-1),  # (D,)
            "bit_mi_by_axis": plugin_mi_bits(bit_observed).mean(-1),  # (2, D)
        }
        result.update(excess_curves("bit_mi", result["bit_mi"], torch.stack(null_bit)))
        if self.with_tokens:
            pooled = observed.sum(0)  # (D, V, V)
            result["token_mi"] = plugin_mi_bits(pooled)
            result["token_mi_by_axis"] = plugin_mi_bits(observed)
            result["token_mi_bias"] = miller_madow_mi_bias_bits(pooled)
            result.update(excess_curves("token_mi", result["token_mi"], torch.stack(null_token)))
        return result

    def ordered_tokens(self) -> Tensor:
        """The gathered grids (N, h, w) as long ids, sorted by global index when indices were given."""
        flat, index = self.gathered("tokens"), self.gathered("index")
        grid = (int(self.height), int(self.width))
        tokens = flat.view(-1, *grid).long() if flat.numel() else torch.zeros(0, *grid, dtype=torch.long, device=flat.device)
        if index.numel() == 0:
            return tokens
        if index.numel() != tokens.shape[0]:
            raise RuntimeError("index was given with some updates but not others")
        return tokens[index.argsort(stable=True)]

    def tables(self, near: Tensor, far: Tensor, counts) -> Tensor:
        """Joint counts of (near grid at p, far grid at p + d) for both axes and every d: (2, D, ...)."""
        return torch.stack(
            [torch.stack([counts(*pair_samples(near, far, axis, d)) for d in range(1, self.max_distance + 1)]) for axis in AXES]
        )

    def bit_tables(self, token_tables: Tensor) -> Tensor:
        """(..., V, V) token joint counts -> (..., C, 2, 2) joint counts of each bit with itself."""
        values = torch.arange(self.num_values, device=token_tables.device)
        one_hot = torch.nn.functional.one_hot(token_bits(values, self.num_bits).long(), 2).double()  # (V, C, 2)
        return torch.einsum("acx,...ab,bcy->...cxy", one_hot, token_tables.double(), one_hot).round().long()


def excess_curves(name: str, observed: Tensor, null: Tensor) -> dict[str, Tensor]:
    """Observed (D,) and null (R, D) MI -> {name}_null, {name}_excess and its 95 % interval."""
    low, high = torch.quantile(null, torch.tensor(NULL_QUANTILES, dtype=null.dtype, device=null.device), dim=0)  # (D,) each
    null_mean = null.mean(0)
    return {
        f"{name}_null": null_mean,
        f"{name}_excess": observed - null_mean,
        f"{name}_excess_lo": observed - high,
        f"{name}_excess_hi": observed - low,
    }


def pair_samples(near: Tensor, far: Tensor, axis: int, distance: int) -> PairSamples:
    """(N, h, w, ...) grids -> the near values at p and the far values at p + distance along `axis`,
    (N, pairs, ...) each (no pairs when the grid is not longer than the distance)."""
    span = max(near.shape[axis] - distance, 0)
    here = near.narrow(axis, 0, span)  # (N, ., ., ...)
    there = far.narrow(axis, min(distance, far.shape[axis]), span)
    trailing = near.shape[3:]
    return PairSamples(here.reshape(near.shape[0], -1, *trailing), there.reshape(far.shape[0], -1, *trailing))


def cyclic_derangements(num: int, count: int, seed: int) -> Tensor:
    """(count, num) long: row r maps image i to its partner, one random cycle through all images
    (so no image is paired with itself and each is a partner exactly once), from a CPU generator."""
    generator = torch.Generator().manual_seed(seed)
    orders = torch.empty(count, num, dtype=torch.long)
    for row in orders:
        cycle = torch.randperm(num, generator=generator)  # visiting order
        row[cycle] = cycle.roll(-1)  # partner of cycle[k] is cycle[k + 1]
    return orders


def token_joint_counts(here: Tensor, there: Tensor, num_values: int) -> Tensor:
    """(N, P) ids at both ends -> (V, V) long joint counts."""
    pair_ids = (here * num_values + there).reshape(-1)  # (N P,)
    return torch.bincount(pair_ids, minlength=num_values**2).view(num_values, num_values)


def bit_joint_counts(here: Tensor, there: Tensor) -> Tensor:
    """(N, P, C) bits at both ends (float64 in {0, 1}) -> (C, 2, 2) joint counts of each bit with
    itself, [here, there], from three sums (n11 = sum here * there, n1. and n.1): no bincount."""
    both = (here * there).sum((0, 1))  # (C,) n11
    near, far = here.sum((0, 1)), there.sum((0, 1))  # (C,) n1., n.1
    total = here.shape[0] * here.shape[1]
    rows = [torch.stack([total - near - far + both, far - both], -1), torch.stack([near - both, both], -1)]  # [here] -> (C, 2)
    return torch.stack(rows, 1).round().long()  # (C, 2, 2)


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

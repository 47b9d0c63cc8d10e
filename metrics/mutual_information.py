"""Mutual information between latent tokens d cells apart: its excess over a permutation null, with a
bootstrap interval over images, and the dependence radius.

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
so `*_excess` = MI - mean null MI is ~0.

The 95 % interval of the excess is a bootstrap over IMAGES (the sampling unit: pairs inside one
image are not independent). A replicate draws N images with replacement, i.e. multinomial weights
w_i on the images, so its joint table is sum_i w_i T_i of the per-image tables T_i (one sparse
matrix product for all replicates), and its null is the permutation null's expectation in closed
form: E = (M - O) / (N - 1), M = sum_p n_p (x) n_{p+d} the products of the position marginals
(self pairs included), O the observed table (self pairs removed; a random cyclic permutation
sends i to every j != i with probability 1 / (N - 1)). Per replicate g* = MI(O*) - MI(E*).

The interval is centred on `*_excess` and takes only its width from the bootstrap (`excess_curves`):
`*_excess_lo` / `_hi` = excess -/+ 1.96 sd, with the null-matched variance

  sd^2 = Var*(g) - Var*(g0) + Var(null) (1 + 1/R),   at least Var(null) (1 + 1/R),

Var*(g) the spread of g* over the resamples, g0 the same statistic for one permuted pairing of the
images (independent at every d, same marginals) under the same resamples, and Var(null) the spread of
the R permutation-null MIs (the exact sampling spread of an independent pairing's plug-in MI). A
plain (percentile or basic) bootstrap of the plug-in MI is wrong near independence: the resampled
images carry their own sampling dependence, which inflates the replicates' spread and shifts their
centre; subtracting the bootstrap's spread on the independent pairing removes that surplus.
Validated for coverage on Markov rows with a closed-form MI and on independent tokens
(tests/metrics/test_mutual_information.py); docs/metrics.md has the figures.

The dependence radius is the first d whose interval is not above 0 (includes 0, lies below, or
has no pairs); `max_distance + 1` when every measured d is significant, i.e. "beyond the grid".
It says nothing of the d beyond it: report/ldh.py lists the d past the radius that are significant
again (dependence returning at longer range, `returns_at`), and the LDH verdict then disagrees.

DDP: the token grids are tiny, so they are gathered (every rank then holds the same set, ordered
by the global image index given to `update`) and every rank computes the same counts, the same
permutations and the same bootstrap weights from seeded CPU generators: 2 processes give exactly
what 1 process gives. docs/metrics.md has the definitions.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor

from metrics._per_sample import PerSampleMetric
from networks.bits import token_bits

MAX_TOKEN_VALUES = 256  # beyond this the (V, V) joint tables get too large to be worth it
AXES = (2, 1)  # horizontal (along a row, dim w), vertical (along a column, dim h) of (B, h, w)
INTERVAL_QUANTILES = (0.025, 0.975)
BOOTSTRAP_STREAM = 0x5EED  # the bootstrap's generators: seed + these, apart from the permutations' stream
NULL_PAIRING_STREAM = 0xCA1
EXPECTED_NULL_BUDGET = 2**23  # multiply-adds per resample (K v^2 x pairs per image) up to which E* is recomputed
NORMAL_975 = 1.959963984540054  # the standard normal's 97.5 % quantile
TABLE_ENTRIES_PER_CHUNK = 2**22  # bootstrap replicates are tabulated a chunk at a time (32 MiB of float64)


class PairSamples(NamedTuple):
    """Tokens at both ends of every (p, p + d) pair of one axis: (N, pairs per image) each."""

    here: Tensor
    there: Tensor


class SymbolGrids(NamedTuple):
    """What the joint tables count: (N, h, w, K) ids in [0, values); K = 1 token, or K = C bits."""

    grids: Tensor
    values: int


class BootstrapCurves(NamedTuple):
    """Bootstrap over images, (B + 1, D) curves of g = MI(observed) - MI(expected null) (row 0: the
    images themselves, rows 1..: resamples): of the images, and of one permuted pairing of them."""

    excess: Tensor
    null_pairing: Tensor


class PairCells(NamedTuple):
    """Every pair of every image at every d, both axes pooled, as a cell of the flat (D, K, v, v)
    tables: cell = near + far, near (N, L) holds d, channel and the near id; far (N, L) the far id."""

    near: Tensor
    far: Tensor


class TokenMutualInformation(PerSampleMetric):
    """MI (bits) between tokens, and between equal bits of tokens, at offsets d = 1..max_distance.

    update(tokens (B, h, w) ids in [0, 2^num_bits), index=None (B,) global image indices).
    compute() -> (D,) curves unless noted:
      token_mi (pooled over both axes), token_mi_by_axis (2, D) rows = (horizontal, vertical),
      token_mi_bias (Miller-Madow), token_mi_null (mean null MI), token_mi_excess = token_mi -
      token_mi_null, token_mi_excess_lo / _hi (95 % bootstrap interval over images), and the same for
      bits: bit_mi, bit_mi_by_axis, bit_mi_null, bit_mi_excess, bit_mi_excess_lo / _hi; distances;
      scalars token_dependence_radius, bit_dependence_radius and dependence_radius (the token one,
      else the bit one): the first d whose interval is not above 0, max_distance + 1 if none.
    The token_* keys are absent when 2^num_bits > 256 (only the bit-level statistics are kept).
    Give `index` with every update or with none: with it the null and the bootstrap see images in
    the order of their global index (DDP-exact); without it, in the order of the gathered rows.
    """

    higher_is_better = None
    height: Tensor  # states (add_state): the grid shape
    width: Tensor

    def __init__(
        self,
        num_bits: int,
        max_distance: int = 4,
        num_permutations: int = 100,
        seed: int = 0,
        num_bootstrap: int = 200,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_permutations < 1:
            raise ValueError(f"num_permutations must be >= 1 for a null, got {num_permutations}")
        if num_bootstrap < 2:
            raise ValueError(f"num_bootstrap must be >= 2 for an interval, got {num_bootstrap}")
        self.num_bits, self.max_distance = num_bits, max_distance
        self.num_permutations, self.seed, self.num_bootstrap = num_permutations, seed, num_bootstrap
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
        symbols = self.symbol_grids(tokens)
        cells = pair_cells(symbols, self.max_distance)
        pooled = self.count(cells.near + cells.far)  # (D, K, v, v)
        orders = cyclic_derangements(tokens.shape[0], self.num_permutations, self.seed).to(tokens.device)  # (R, N)
        nulls = [self.null_curves(cells, order) for order in orders]  # R x {name: (D,)}
        by_axis = self.curves(torch.stack([self.axis_tables(symbols, axis) for axis in AXES]))  # name -> (2, D)
        replicates = self.bootstrap(tokens)  # name -> BootstrapCurves
        result = {"distances": torch.arange(1, self.max_distance + 1, device=tokens.device)}
        for name, curve in self.curves(pooled).items():
            result[name], result[f"{name}_by_axis"] = curve, by_axis[name]
            result.update(excess_curves(name, curve, torch.stack([null[name] for null in nulls]), replicates[name]))
            result[f"{name.removesuffix('_mi')}_dependence_radius"] = dependence_radius(result[f"{name}_excess_lo"])
        if self.with_tokens:
            result["token_mi_bias"] = miller_madow_mi_bias_bits(pooled[:, 0])
        result["dependence_radius"] = result["token_dependence_radius" if self.with_tokens else "bit_dependence_radius"]
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

    def symbol_grids(self, tokens: Tensor) -> SymbolGrids:
        """(N, h, w) ids -> what the tables count: the tokens themselves (K = 1), or their C bits (values 2)."""
        if self.with_tokens:
            return SymbolGrids(tokens[..., None], self.num_values)  # (N, h, w, 1)
        return SymbolGrids(token_bits(tokens, self.num_bits).long(), 2)  # (N, h, w, C)

    def table_shape(self) -> tuple[int, int, int, int]:
        """(D, K, v, v) of the joint tables."""
        channels, values = (1, self.num_values) if self.with_tokens else (self.num_bits, 2)
        return self.max_distance, channels, values, values

    def count(self, cells: Tensor) -> Tensor:
        """Flat table cells (any shape) -> (D, K, v, v) long joint counts."""
        shape = self.table_shape()
        return torch.bincount(cells.reshape(-1), minlength=math.prod(shape)).view(shape)

    def axis_tables(self, symbols: SymbolGrids, axis: int) -> Tensor:
        """The joint counts of one axis alone: (D, K, v, v)."""
        grids, values = symbols
        return torch.stack([joint_counts(*pair_samples(grids, grids, axis, d), values) for d in range(1, self.max_distance + 1)])

    def curves(self, tables: Tensor) -> dict[str, Tensor]:
        """(..., K, v, v) joint counts -> {"token_mi": (...), "bit_mi": (...)} in bits (bits: mean over bits).

        With tokens (K = 1) the bit tables follow from the token tables (a (V, V) -> (C, 2, 2) projection)."""
        if not self.with_tokens:
            return {"bit_mi": plugin_mi_bits(tables).mean(-1)}
        token_tables = tables[..., 0, :, :]  # (..., V, V)
        return {"token_mi": plugin_mi_bits(token_tables), "bit_mi": plugin_mi_bits(bit_tables(token_tables, self.num_bits)).mean(-1)}

    def null_curves(self, cells: PairCells, partner: Tensor) -> dict[str, Tensor]:
        """The curves (name -> (D,)) of one permutation-null table: image i's near ends with image partner[i]'s far ends."""
        return self.curves(self.count(cells.near + cells.far.index_select(0, partner)))

    def bootstrap(self, tokens: Tensor) -> dict[str, BootstrapCurves]:
        """g = MI(observed) - MI(expected null) of the images (row 0) and of `num_bootstrap` resamples
        of them (rows 1..), and the same for a permuted pairing of the images (independent at every d,
        same marginals) under the same resamples: name -> BootstrapCurves. Bits are tabulated as bits
        here (C small tables per image), not projected from token tables (V^2 cells per replicate)."""
        num = tokens.shape[0]
        draws = bootstrap_draws(num, self.num_bootstrap, self.seed + BOOTSTRAP_STREAM).to(tokens.device)  # (B, N)
        weights = torch.cat([torch.ones(1, num, device=tokens.device), draw_counts(draws)]).double()  # (B + 1, N)
        partner = cyclic_derangements(num, 1, self.seed + NULL_PAIRING_STREAM)[0].to(tokens.device)  # (N,)
        bits = SymbolGrids(token_bits(tokens, self.num_bits).long(), 2)  # (N, h, w, C)
        levels = {"token_mi": SymbolGrids(tokens[..., None], self.num_values), "bit_mi": bits} if self.with_tokens else {"bit_mi": bits}
        return {
            name: BootstrapCurves(
                bootstrap_excess_mi(symbols, weights, self.max_distance), bootstrap_excess_mi(symbols, weights, self.max_distance, partner)
            )
            for name, symbols in levels.items()
        }


def excess_curves(name: str, observed: Tensor, null: Tensor, replicates: BootstrapCurves) -> dict[str, Tensor]:
    """Observed (D,) and null (R, D) MI and the bootstrap curves -> {name}_null, {name}_excess =
    observed - mean null, and its 95 % interval excess -/+ 1.96 sd, with the null-matched
    bootstrap variance

      sd^2 = Var*(g) - Var*(g0) + Var(null) (1 + 1/R),   at least Var(null) (1 + 1/R):

    the bootstrap's spread of g over resamples of the images, less the part the bootstrap adds to an
    independent pairing (g0: its spread over the same resamples, against Var(null), the exact spread
    of a permutation null), plus the permutation spread itself."""
    permutations = null.shape[0]
    null_var = null.var(0) * (1 + 1 / permutations) if permutations > 1 else torch.zeros_like(observed)
    spread = replicates.excess[1:].var(0) - replicates.null_pairing[1:].var(0) + null_var  # (D,)
    half_width = NORMAL_975 * torch.maximum(spread, null_var).sqrt()
    excess = observed - null.mean(0)
    return {
        f"{name}_null": null.mean(0),
        f"{name}_excess": excess,
        f"{name}_excess_lo": excess - half_width,
        f"{name}_excess_hi": excess + half_width,
    }


def dependence_radius(excess_lo: Tensor) -> Tensor:
    """(D,) lower ends of the intervals at d = 1..D -> the first d whose excess is not significantly
    above 0 (lo <= 0, or NaN: no pairs), as a float64 scalar; D + 1 when all are ("beyond the grid")."""
    failing = (~(excess_lo > 0)).nonzero()  # NaN compares False
    radius = int(failing[0, 0]) + 1 if failing.numel() else excess_lo.shape[0] + 1
    return torch.tensor(float(radius), dtype=torch.float64, device=excess_lo.device)


def pair_samples(near: Tensor, far: Tensor, axis: int, distance: int) -> PairSamples:
    """(N, h, w, ...) grids -> the near values at p and the far values at p + distance along `axis`,
    (N, pairs, ...) each (no pairs when the grid is not longer than the distance)."""
    span = max(near.shape[axis] - distance, 0)
    here = near.narrow(axis, 0, span)  # (N, ., ., ...)
    there = far.narrow(axis, min(distance, far.shape[axis]), span)
    pairs, trailing = here.shape[1] * here.shape[2], near.shape[3:]
    return PairSamples(here.reshape(near.shape[0], pairs, *trailing), there.reshape(far.shape[0], pairs, *trailing))


def joint_counts(here: Tensor, there: Tensor, values: int) -> Tensor:
    """(N, P, K) ids at both ends -> (K, v, v) long joint counts, one table per channel."""
    channels = here.shape[-1]
    channel = torch.arange(channels, device=here.device)  # (K,)
    cells = (channel * values + here) * values + there  # (N, P, K)
    return torch.bincount(cells.reshape(-1), minlength=channels * values**2).view(channels, values, values)


def pair_cells(symbols: SymbolGrids, max_distance: int, far_grids: Tensor | None = None) -> PairCells:
    """Every (p, p + d) pair of every image, d = 1..D, both axes, as its cell in flat (D, K, v, v)
    tables, split so that a permutation of the far images is one gather: cell = near + far."""
    grids, values = symbols
    channels = grids.shape[3]
    channel = torch.arange(channels, device=grids.device)  # (K,)
    near, far = [], []
    for d in range(1, max_distance + 1):
        for axis in AXES:
            here, there = pair_samples(grids, grids if far_grids is None else far_grids, axis, d)  # (N, P, K) each
            near.append((((d - 1) * channels + channel) * values + here) * values)  # (N, P, K)
            far.append(there)
    flat = [torch.cat([part.flatten(1) for part in parts], 1).int() for parts in (near, far)]  # (N, L) int32 each
    return PairCells(*flat)


def bootstrap_excess_mi(symbols: SymbolGrids, weights: Tensor, max_distance: int, partner: Tensor | None = None) -> Tensor:
    """Image weights (R, N) -> (R, D) g = MI(observed) - MI(expected permutation null) of the weighted
    images' tables, in bits, mean over the K channels; with `partner` (N,), image i's far ends are
    those of image partner[i]. A chunk of replicates at a time.

    The expected null E* costs K v^2 multiply-adds per pair position and resample; beyond
    EXPECTED_NULL_BUDGET per resample (e.g. V = 128 on 32 x 32 grids) it is not recomputed and g* is
    MI(O*) less a constant: the spread of position-dependent marginals then stays in Var*(g), only
    partly removed by the null-pairing term, so the interval is wider (1.5x on the border-marginal test
    case), never narrower."""
    grids, values = symbols
    shape = (max_distance, grids.shape[3], values, values)  # (D, K, v, v)
    far_grids = grids if partner is None else grids.index_select(0, partner)
    pair_matrix = per_image_pair_tables(SymbolGrids(grids, values), far_grids, max_distance)  # (D K v v, N)
    position_matrix = per_image_position_counts(symbols)  # (h w K v, N)
    far_order = torch.arange(grids.shape[0], device=grids.device) if partner is None else partner.argsort()  # far ends' image -> pair
    height, width = grids.shape[1:3]
    pairs_per_image = sum(height * max(width - d, 0) + max(height - d, 0) * width for d in range(1, max_distance + 1))
    with_expected = math.prod(shape[1:]) * pairs_per_image <= EXPECTED_NULL_BUDGET
    rows = []
    for chunk in weights.split(max(1, TABLE_ENTRIES_PER_CHUNK // math.prod(shape))):
        observed = (pair_matrix @ chunk.t().contiguous()).t().reshape(chunk.shape[0], *shape)  # (r, D, K, v, v)
        if not with_expected:  # large grids and vocabularies: E* = E, a constant (wider intervals, still of the stated coverage)
            rows.append(plugin_mi_bits(observed).mean(-1))  # (r, D)
            continue
        near, far = (
            (position_matrix @ part.t().contiguous())
            .t()
            .reshape(chunk.shape[0], *grids.shape[1:], values)  # (r, h, w, K, v) weighted counts
            for part in (chunk, chunk.index_select(1, far_order))
        )
        products = torch.stack(
            [
                torch.stack([torch.einsum("rpka,rpkb->rkab", *pair_samples(near, far, axis, d)) for axis in AXES]).sum(0)  # (r, K, v, v)
                for d in range(1, max_distance + 1)
            ],
            1,
        )  # (r, D, K, v, v): sum over (p, p + d) of the outer products of the counts at p and p + d
        expected_null = products - observed  # (r, D, K, v, v): every pair of distinct images
        rows.append((plugin_mi_bits(observed) - plugin_mi_bits(expected_null)).mean(-1))  # (r, D)
    return torch.cat(rows)


def per_image_pair_tables(symbols: SymbolGrids, far_grids: Tensor, max_distance: int) -> Tensor:
    """(N, h, w, K) ids at the near ends, (N, h, w, K) at the far ends -> (D K v v, N) float64: column
    i is image i's joint tables at d = 1..D (both axes pooled), so the matrix @ weights (N, R) are the
    tables of weighted image sets. Bits: dense, from three sums per bit (n11, n1., n.1); tokens:
    sparse CSR (V^2 cells, a few hundred used per image)."""
    grids, values = symbols
    if values > 2:
        cells = pair_cells(symbols, max_distance, far_grids)
        return per_image_counts(cells.near + cells.far, max_distance * grids.shape[3] * values**2)
    tables = []
    for d in range(1, max_distance + 1):
        pairs = [pair_samples(grids, far_grids, axis, d) for axis in AXES]
        here, there = (torch.cat(ends, 1).double() for ends in zip(*pairs, strict=True))  # (N, P, C) in {0, 1} each
        both, near, far = (here * there).sum(1), here.sum(1), there.sum(1)  # (N, C) n11, n1., n.1
        total = torch.full_like(both, here.shape[1])
        rows = [torch.stack([total - near - far + both, far - both], -1), torch.stack([near - both, both], -1)]  # [here] -> (N, C, 2)
        tables.append(torch.stack(rows, -2))  # (N, C, 2, 2)
    return torch.stack(tables, 1).flatten(1).t().contiguous()


def per_image_position_counts(symbols: SymbolGrids) -> Tensor:
    """(N, h, w, K) ids -> (h w K v, N) float64 one-hot: the matrix @ weights (N, R) are the weighted
    counts of every id at every position (bits: dense; tokens: sparse CSR)."""
    grids, values = symbols
    if values == 2:
        return torch.stack([1 - grids, grids], -1).flatten(1).t().double().contiguous()  # (h w C 2, N)
    slots = torch.arange(math.prod(grids.shape[1:]), device=grids.device).view(grids.shape[1:])  # (h, w, K) position-channel slot
    return per_image_counts((slots * values + grids).flatten(1), slots.numel() * values)


def per_image_counts(cells: Tensor, num_cells: int) -> Tensor:
    """(N, L) flat table cells -> (num_cells, N) sparse CSR float64: column i counts image i's cells."""
    num = cells.shape[0]
    keys = (cells.long() * num + torch.arange(num, device=cells.device)[:, None]).reshape(-1)  # cell-major, then image
    keys, counts = torch.unique(keys, return_counts=True)  # sorted: CSR order
    rows = torch.div(keys, num, rounding_mode="floor")
    crow = torch.zeros(num_cells + 1, dtype=torch.long, device=cells.device)
    crow[1:] = torch.bincount(rows, minlength=num_cells).cumsum(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, keys - rows * num, counts.double(), (num_cells, num), check_invariants=False)


def bit_tables(token_tables: Tensor, num_bits: int) -> Tensor:
    """(..., V, V) token joint counts -> (..., C, 2, 2) joint counts of each bit with itself, from
    n11 = b' T b, n1. = b' rows, n.1 = b' cols and n (b: that bit of every token id, (V,))."""
    tables = token_tables.double()
    bits = token_bits(torch.arange(tables.shape[-1], device=tables.device), num_bits).double()  # (V, C)
    both = ((tables @ bits) * bits).sum(-2)  # (..., C) n11
    near, far = tables.sum(-1) @ bits, tables.sum(-2) @ bits  # (..., C) n1., n.1
    total = tables.sum((-2, -1))[..., None]  # (..., 1)
    rows = [torch.stack([total - near - far + both, far - both], -1), torch.stack([near - both, both], -1)]  # [here] -> (..., C, 2)
    return torch.stack(rows, -2)  # (..., C, 2, 2)


def bootstrap_draws(num: int, count: int, seed: int) -> Tensor:
    """(count, num) long: `count` resamples of `num` images drawn with replacement (which image fills
    each slot), from a seeded CPU generator."""
    if num == 0:
        return torch.zeros(count, 0, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(torch.ones(num), num * count, replacement=True, generator=generator).view(count, num)


def draw_counts(draws: Tensor) -> Tensor:
    """(count, num) resamples -> (count, num) float64: how often each image was drawn (multinomial weights)."""
    ones = torch.ones(draws.shape, dtype=torch.float64, device=draws.device)
    return torch.zeros_like(ones).scatter_add_(1, draws, ones)


def cyclic_derangements(num: int, count: int, seed: int) -> Tensor:
    """(count, num) long: row r maps image i to its partner, one random cycle through all images
    (so no image is paired with itself and each is a partner exactly once), from a CPU generator."""
    generator = torch.Generator().manual_seed(seed)
    orders = torch.empty(count, num, dtype=torch.long)
    for row in orders:
        cycle = torch.randperm(num, generator=generator)  # visiting order
        row[cycle] = cycle.roll(-1)  # partner of cycle[k] is cycle[k + 1]
    return orders


def plugin_mi_bits(joint_counts: Tensor) -> Tensor:
    """(..., A, B) joint counts -> (...) plug-in mutual information in bits (NaN without counts), as
    (sum n_ab ln n_ab - sum n_a ln n_a - sum n_b ln n_b + n ln n) / (n ln 2): one log per cell."""
    counts = joint_counts.double()
    total = counts.sum((-2, -1))  # (...)
    rows, cols = counts.sum(-1), counts.sum(-2)  # (..., A), (..., B)
    nats = xlogx(counts).sum((-2, -1)) - xlogx(rows).sum(-1) - xlogx(cols).sum(-1) + xlogx(total)  # (...) n * MI in nats
    return (nats / (total * math.log(2))).clamp_min(0)  # 0 / 0 = NaN without counts; rounding never goes below 0


def xlogx(counts: Tensor) -> Tensor:
    """n ln n elementwise, 0 ln 0 = 0."""
    return torch.special.xlogy(counts, counts)


def miller_madow_mi_bias_bits(joint_counts: Tensor) -> Tensor:
    """(..., A, B) counts -> (...) expected plug-in MI of independent variables with these supports:
    (m_ab - m_a - m_b + 1) / (2 n ln 2), m = number of occupied cells (Miller-Madow)."""
    occupied = (joint_counts > 0).sum((-2, -1))  # (...)
    occupied_a = (joint_counts.sum(-1) > 0).sum(-1)  # (...)
    occupied_b = (joint_counts.sum(-2) > 0).sum(-1)  # (...)
    total = joint_counts.sum((-2, -1)).double()  # (...)
    return (occupied - occupied_a - occupied_b + 1).double() / (2 * total * math.log(2))

"""KID (the unbiased MMD^2 of Bińkowski et al. 2018) and its percentile-bootstrap 95 % interval.

`kernel_inception_distance` is the unbiased estimate of MMD^2 between two feature sets with the cubic
polynomial kernel k(x, y) = (x.y / D + 1)^3, on the whole sets at once (unequal sizes allowed).

`kid_with_interval` adds a percentile bootstrap over *both* sets: every resample draws m real and n
generated rows with replacement and recomputes the unbiased statistic on the resample. A resample
repeats rows, and a repeated row paired with itself would bring its diagonal k(x, x) into the
"off-diagonal" within-set means: those are far larger than any k(x, y), so the naive bootstrap is
biased upwards (measured: 0 of 40 intervals cover a true MMD^2 of 0). Here a resample is a vector
of multiplicities w (how often each original row was drawn), and the within-set means run over pairs
of *distinct original rows* only:

    within(w) = sum_{p != q} w_p w_q K_pq / sum_{p != q} w_p w_q,    cross(w, v) = w^T K_rf v / (m n)

so each resample is again an unbiased-style estimate centred on the observed KID. All resamples are
three batched matrix products on the kernel matrices computed once: 1000 resamples of m = 100 real
and n = 50 generated 2048-d rows take a few hundredths of a second on one CPU thread.

Coverage, measured on ReLU-Gaussian 256- and 2048-d features (m = 100, n = 40, 40 trials,
tests/metrics/test_fid.py): 40/40 intervals cover a true MMD^2 of 0 and 39/40 cover a large true
value. Near 0 the interval is conservative (about twice as wide as the spread of the estimate over
trials), as the bootstrap of a degenerate U-statistic is: a difference it calls significant is.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

KID_DEGREE = 3
KID_COEF = 1.0
#: below this many rows in either set the bootstrap cannot see the estimate's spread (a resample of
#: 2 rows is one pair or a single row): measured null coverage of the 95 % interval on 256-d
#: ReLU-Gaussian features, 100 real rows, 100 trials: n = 2: 23 %, n = 3: 93 %, n = 5, 10, 20: 100 %.
KID_MIN_N = 5


class KIDInterval(NamedTuple):
    """KID with its percentile-bootstrap interval (float64 scalars; NaN below two rows per set)."""

    kid: Tensor
    low: Tensor
    high: Tensor


def polynomial_kernel(a: Tensor, b: Tensor, degree: int = KID_DEGREE, coef: float = KID_COEF) -> Tensor:
    """(len(a), len(b)) kernel matrix k(x, y) = (x.y / D + coef)^degree."""
    return (a @ b.T / a.shape[1] + coef) ** degree


def kernel_inception_distance(real: Tensor, fake: Tensor, degree: int = KID_DEGREE, coef: float = KID_COEF) -> Tensor:
    """Unbiased MMD^2 between (m, D) and (n, D) features, kernel k(x, y) = (x.y / D + coef)^degree.

    The KID of Bińkowski et al. (2018) on the whole sets at once (sets of unequal size; no subsets).
    NaN when either set has fewer than 2 rows (the unbiased estimate needs two per side).
    """
    m, n = len(real), len(fake)
    if m < 2 or n < 2:
        return torch.tensor(float("nan"), dtype=torch.float64)
    real, fake = real.double(), fake.double()
    k_rr, k_ff, k_rf = (
        polynomial_kernel(real, real, degree, coef),
        polynomial_kernel(fake, fake, degree, coef),
        polynomial_kernel(real, fake, degree, coef),
    )
    within_real = (k_rr.sum() - k_rr.diagonal().sum()) / (m * (m - 1))
    within_fake = (k_ff.sum() - k_ff.diagonal().sum()) / (n * (n - 1))
    return within_real + within_fake - 2 * k_rf.mean()


def kid_with_interval(
    real: Tensor,
    fake: Tensor,
    num_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_n: int = KID_MIN_N,
    degree: int = KID_DEGREE,
    coef: float = KID_COEF,
) -> KIDInterval:
    """KID of (m, D) real and (n, D) generated features and its percentile-bootstrap `level` interval.

    Deterministic for a given `seed` (a CPU generator), so every DDP rank computes the same interval
    from the same gathered features. NaN (all three: no score without its interval) when either set
    has fewer than `min_n` rows.
    """
    m, n = len(real), len(fake)
    if min(m, n) < max(min_n, 2):
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        return KIDInterval(nan, nan.clone(), nan.clone())
    kid = kernel_inception_distance(real, fake, degree, coef)
    real, fake = real.double().cpu(), fake.double().cpu()
    k_rr, k_ff, k_rf = (
        polynomial_kernel(real, real, degree, coef),
        polynomial_kernel(fake, fake, degree, coef),
        polynomial_kernel(real, fake, degree, coef),
    )
    generator = torch.Generator().manual_seed(seed)
    w_real = resample_counts(m, num_resamples, generator)  # (B, m) multiplicities, each row sums to m
    w_fake = resample_counts(n, num_resamples, generator)  # (B, n)
    values = (
        within_distinct_pairs(k_rr, w_real) + within_distinct_pairs(k_ff, w_fake) - 2 * ((w_real @ k_rf) * w_fake).sum(1) / (m * n)
    )  # (B,)
    tail = (1 - level) / 2
    low, high = torch.nanquantile(values, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return KIDInterval(kid.cpu(), low, high)


def resample_counts(size: int, num_resamples: int, generator: torch.Generator) -> Tensor:
    """(B, size) float64 multiplicities of `num_resamples` draws of `size` rows with replacement."""
    draws = torch.randint(0, size, (num_resamples, size), generator=generator)  # (B, size) row ids
    return torch.zeros(num_resamples, size, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(num_resamples, size, dtype=torch.float64)
    )


def within_distinct_pairs(kernel: Tensor, weights: Tensor) -> Tensor:
    """(B,) mean of K_pq over ordered pairs p != q of distinct original rows, pair (p, q) weighted w_p w_q.

    NaN for a resample that drew one row only (possible for tiny sets): nanquantile skips it.
    """
    off_diagonal = kernel - torch.diag(kernel.diagonal())  # (N, N) with a zero diagonal
    pair_weight = weights.sum(1).square() - weights.square().sum(1)  # (B,) sum_{p != q} w_p w_q
    return ((weights @ off_diagonal) * weights).sum(1) / pair_weight

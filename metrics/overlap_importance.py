"""Overlap of two diagonal Gaussians by importance sampling from their normalised geometric mean.

OVL(p, q) = integral min(p, q). With Delta = log p - log q, min(p, q) = sqrt(p q) exp(-|Delta| / 2),
and sqrt(p q) = BC r with BC = integral sqrt(p q) (Bhattacharyya) and r the normalised geometric
mean. So
    OVL = BC E_r[exp(-|Delta(x)| / 2)],     log OVL = log BC + logmeanexp_m(-|Delta(x_m)| / 2),
every weight lies in (0, 1] and the estimate never exceeds BC. r covers the region where p and q
cross, which the plain estimator E_p[min(1, q / p)] (kept here only as a documented comparison,
`diag_gaussian_log_ovl_plain_mc`) almost never visits once OVL << 1 / M: in 384 dims with 256
draws it reads ~4 orders of magnitude low at OVL 2e-6 (docs/metrics.md; bench/overlap_validation.py).

For diagonal Gaussians r is Gaussian, per coordinate: precision (1/v_p + 1/v_q) / 2, i.e.
v_r = 2 v_p v_q / (v_p + v_q), mean m_r = (m_p v_q + m_q v_p) / (v_p + v_q). At x = m_r + s_r eps,
with d = m_q - m_p, V = v_p + v_q and L = log(v_q / v_p), exactly
    Delta = sum_k [ (v_p - v_q)/V eps^2  -  2 s_r d / V eps  +  1/2 (L - (v_p - v_q)/V d^2 / V) ],
a quadratic in eps: (P, 2K) weights @ (2K, M) features [eps^2, eps] plus a per-pair offset, one
GEMM for all pairs of a chunk. (v_p - v_q) / V = -tanh(L / 2) lies in (-1, 1); no term carries
m^2 / v, so rounding stays at the size of Delta; swapping p and q flips the sign of Delta and
leaves the estimate unchanged; identical laws give Delta = 0 exactly (OVL 1).

The standard-normal draws eps (M, K) come from a CPU generator (identical on every device and
rank) and are shared by all pairs (common random numbers): a pair's estimate does not depend on
which pairs share its batch. Everything is float64 and in logs: nothing underflows.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from metrics.overlap_gaussian import Gaussians, log_bhattacharyya_from, log_bhattacharyya_lower

# A pair is outside the Bhattacharyya bracket when its log estimate leaves [log lower, log BC] by
# more than this many nats times max(1, |log BC|): float64 rounding of a sum of K terms of size
# |log BC| is ~1e-15 of it, so only a real violation (an estimate the bracket rules out) counts.
BRACKET_TOLERANCE = 1e-9


class DiagGaussianLogOverlap(NamedTuple):
    """Per-pair natural logs: the importance-sampling estimate, BC and the bracket's lower end."""

    log_ovl: Tensor
    log_bc: Tensor
    log_bc_lower: Tensor

    def outside_bounds(self) -> Tensor:
        """Bool, per pair: the estimate lies outside [lower, BC] beyond `BRACKET_TOLERANCE`."""
        slack = BRACKET_TOLERANCE * self.log_bc.abs().clamp_min(1)
        return (self.log_ovl < self.log_bc_lower - slack) | (self.log_ovl > self.log_bc + slack)


def mc_noise(num_samples: int, dims: int, generator: torch.Generator | None) -> Tensor:
    """(M, K) float64 standard normals, drawn on the CPU (identical on every device and rank)."""
    return torch.randn(num_samples, dims, generator=generator, dtype=torch.float64)


def quadratic_features(noise: Tensor) -> Tensor:
    """(M, K) standard normals eps -> (M, 2K) [eps^2, eps]: the draws' side of the GEMM."""
    return torch.cat([noise.square(), noise], -1)


def pairs_per_chunk(dims: int, num_samples: int) -> int:
    """Pairs per chunk so that every (pairs, K), (pairs, 2K) or (pairs, M) temporary stays at
    ~2^18 float64s (2 MiB): bounded memory at any N, and still a GEMM of a few hundred rows."""
    return max(1, 2**18 // max(2 * dims, num_samples, 1))


def importance_log_ovl_of(p: Gaussians, q: Gaussians, features: Tensor) -> DiagGaussianLogOverlap:
    """Paired (P, K) rows p, q and (M, 2K) `quadratic_features` -> per-pair logs (P,) each.

    Per coordinate, with V = v_p + v_q and d = m_q - m_p: the eps^2 weight (v_p - v_q) / V, the eps
    weight -2 s_r d / V = -2 sqrt2 s_p s_q d / V^(3/2) (s_r = sqrt2 s_p s_q / sqrt V), and the offset
    1/2 [sum lv_q - sum lv_p - sum (v_p - v_q) / V d^2 / V]: products and quotients of per-image
    values, one log (in log BC) and one sqrt per pair coordinate.
    """
    dims = p.mu.shape[-1]
    num_samples = features.shape[0]
    shift = q.mu - p.mu  # (P, K) d
    var_sum = p.var + q.var  # (P, K) V
    scaled_shift = shift / var_sum  # (P, K) d / V
    scaled_shift_sq = shift * scaled_shift  # (P, K) d^2 / V
    log_bc = log_bhattacharyya_from(scaled_shift_sq, var_sum, p, q)  # (P,)
    weights = shift.new_empty(shift.shape[0], 2 * dims)  # (P, 2K): coefficients of [eps^2, eps]
    quad = torch.div(p.var - q.var, var_sum, out=weights[:, :dims])  # (P, K) (v_p - v_q) / V
    torch.mul(p.std, q.std, out=weights[:, dims:]).mul_(scaled_shift).div_(var_sum.sqrt_()).mul_(-2 * math.sqrt(2))
    offset = 0.5 * (q.logvar_sum - p.logvar_sum - (quad * scaled_shift_sq).sum(-1))  # (P,)
    delta = torch.addmm(offset[:, None], weights, features.T)  # (P, M) log p - log q at the draws
    log_ovl = log_bc + torch.logsumexp(delta.abs_().mul_(-0.5), -1) - math.log(num_samples)
    return DiagGaussianLogOverlap(log_ovl, log_bc, log_bhattacharyya_lower(log_bc))


def diag_gaussian_log_ovl(
    mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor, num_samples: int = 256, generator: torch.Generator | None = None
) -> DiagGaussianLogOverlap:
    """Importance-sampling log OVL of diagonal Gaussians (..., K) -> (...) fields, with `num_samples`
    draws eps (M, K) from `generator` (`mc_noise`), shared by all pairs; chunked to bounded memory."""
    mu1, logvar1, mu2, logvar2 = torch.broadcast_tensors(mu1, logvar1, mu2, logvar2)
    batch_shape, dims = mu1.shape[:-1], mu1.shape[-1]
    features = quadratic_features(mc_noise(num_samples, dims, generator).to(mu1.device))  # (M, 2K)
    first = Gaussians.from_logvar(mu1.reshape(-1, dims), logvar1.reshape(-1, dims))  # (P, K) fields
    second = Gaussians.from_logvar(mu2.reshape(-1, dims), logvar2.reshape(-1, dims))
    step = pairs_per_chunk(dims, num_samples)
    chunks = [
        importance_log_ovl_of(first.take(slice(start, start + step)), second.take(slice(start, start + step)), features)
        for start in range(0, first.mu.shape[0], step)
    ]
    if not chunks:
        empty = first.mu.new_zeros(batch_shape)
        return DiagGaussianLogOverlap(empty, empty, empty)
    return DiagGaussianLogOverlap(*(torch.cat(field).view(batch_shape) for field in zip(*chunks, strict=True)))


# --------------------------------------------------------------------------------------------
# the replaced estimator, for comparison only


def diag_gaussian_log_ovl_plain_mc(
    mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor, num_samples: int = 256, generator: torch.Generator | None = None
) -> Tensor:
    """The plain symmetric MC estimate log(1/2 (E_p[min(1, q/p)] + E_q[min(1, p/q)])), (..., K) -> (...).

    NOT used by the metric: kept as the documented comparison that the validation
    (tests/metrics/test_overlap_validation.py, bench/overlap_validation.py) shows failing. It is
    unbiased in the linear domain, but once OVL << 1/M its mass sits in draws that almost never
    occur, so a typical run reads orders of magnitude low (even below the Bhattacharyya lower
    bound). Computed in logs, so that what it shows is that bias, not float64 underflow. Draws:
    (2, M, K) standard normals from `generator`, p samples with [0], q with [1].
    """
    mu1, logvar1, mu2, logvar2 = torch.broadcast_tensors(mu1, logvar1, mu2, logvar2)
    batch_shape, dims = mu1.shape[:-1], mu1.shape[-1]
    noise = torch.randn(2, num_samples, dims, generator=generator, dtype=torch.float64).to(mu1.device)
    features = torch.cat([0.5 * noise.square(), noise], -1)  # (2, M, 2K) [eps^2 / 2, eps]
    p = Gaussians.from_logvar(mu1.reshape(-1, dims), logvar1.reshape(-1, dims))  # (P, K) fields
    q = Gaussians.from_logvar(mu2.reshape(-1, dims), logvar2.reshape(-1, dims))
    shift = q.mu - p.mu
    from_p = _log_expected_min_ratio(p, q, q.var - p.var, shift, features[0])
    from_q = _log_expected_min_ratio(q, p, p.var - q.var, -shift, features[1])
    return (torch.logaddexp(from_p, from_q) - math.log(2)).view(batch_shape)


def _log_expected_min_ratio(p: Gaussians, q: Gaussians, var_gap: Tensor, shift: Tensor, features: Tensor) -> Tensor:
    """log E_{z~p}[min(1, q(z)/p(z))] at z = mu_p + std_p eps: (P, K) rows, (M, 2K) features -> (P,).

    log q(z) - log p(z) = sum_k [var_gap / var_q eps^2 / 2 + shift std_p / var_q eps]
                          + 1/2 [sum lv_p - sum lv_q - sum_k shift^2 / var_q].
    """
    inv_var_q = q.var.reciprocal()
    weights = torch.cat([var_gap * inv_var_q, shift * p.std * inv_var_q], -1)  # (P, 2K)
    offset = 0.5 * (p.logvar_sum - q.logvar_sum - (shift.square() * inv_var_q).sum(-1))  # (P,)
    log_ratio = torch.addmm(offset[:, None], weights, features.T).clamp_max_(0)  # (P, M)
    return torch.logsumexp(log_ratio, -1) - math.log(features.shape[0])

"""Overlap of two diagonal Gaussians by importance sampling from their tilted geometric mean.

OVL(p, q) = integral min(p, q). With Delta = log p - log q and, for t in (0, 1), the tilted
geometric mean r_t = p^t q^(1-t) / Z_t (Z_t = integral p^t q^(1-t), the Chernoff coefficient; at
t = 1/2 it is the Bhattacharyya coefficient BC and r_t is sqrt(pq) / BC),
    min(p, q) / r_t = Z_t min(exp((1-t) Delta), exp(-t Delta)),
    OVL = Z_t E_{r_t}[min(exp((1-t) Delta), exp(-t Delta))],
every weight lies in (0, 1]. log Z_t is convex in t with d/dt log Z_t = E_{r_t}[Delta], so Z_t is
smallest at the Chernoff point t*, where E_{r_t*}[Delta] = 0: r_t* is centred on the crossing region
{p = q}, and the estimate never exceeds Z_t* <= BC. The symmetric t = 1/2 (the earlier estimator)
sits far from that region once one law is narrower than the other across many dimensions: same-mean
isotropic laws with variance ratio 8 in 384 dims give an effective sample size ~1 of 256 and an
estimate 4.5 decades low (docs/metrics.md; bench/overlap_validation.py). t* is found per pair by a
safeguarded Newton iteration on the closed form of E_{r_t}[Delta] (`chernoff_point`); equal
variances give t* = 1/2 exactly. The plain estimator E_p[min(1, q / p)] (kept only as a documented
comparison, `diag_gaussian_log_ovl_plain_mc`) almost never visits the crossing region once
OVL << 1 / M.

For diagonal Gaussians r_t is Gaussian, per coordinate: precision t / v_p + (1-t) / v_q, i.e.
v_t = v_p v_q / W, W = t v_q + (1-t) v_p, mean m_t = (t v_q m_p + (1-t) v_p m_q) / W. With d = m_q - m_p,
L = log(v_q / v_p), at x = m_t + s_t eps, exactly
    Delta = sum_k [ (v_p - v_q) / (2W) eps^2  -  s_p s_q d / W^(3/2) eps  +  d^2 (t^2 v_q - (1-t)^2 v_p) / (2 W^2) + L / 2 ],
    E_{r_t}[Delta] = sum_k [ (v_p - v_q) / (2W) + d^2 (t^2 v_q - (1-t)^2 v_p) / (2 W^2) + L / 2 ],
    d/dt E_{r_t}[Delta] = Var_{r_t}[Delta] = sum_k [ (v_q - v_p)^2 / (2 W^2) + d^2 v_p v_q / W^3 ],
    log Z_t = -1/2 sum_k [ t (1-t) d^2 / W + log(W / v_p) - t L ],
a quadratic in eps: (P, 2K) weights @ (2K, M) features [eps^2, eps] plus a per-pair offset, one
GEMM for all pairs of a chunk. Written through rho = v_q / v_p and y = v_p / W = 1 / (1 + t (rho - 1))
in (0, max(1, 1/rho)]: no term carries m^2 / v. Swapping p and q maps t* to 1 - t* and Delta to
-Delta and leaves the estimate unchanged up to rounding; identical laws give Delta = 0 exactly (OVL 1).

Per pair the effective sample size of the weights, ESS = (sum w)^2 / sum w^2 in [1, M], says how
many draws carry the estimate: at ESS ~ 1 it is one draw's weight and can read decades low while
the Bhattacharyya bracket, |log BC| wide, cannot tell (PairwiseOverlap reports the share of pairs
with ESS < `LOW_ESS`).

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
# A pair's estimate rests on too few draws when its effective sample size is below this.
LOW_ESS = 10.0
# Newton on t stops once |E_{r_t}[Delta]| <= this x sd_{r_t}[Delta] (+ 1e-9): r_t is then centred on
# the crossing region to 1/20 of the spread of Delta, all the sampler needs (any t gives an unbiased
# estimate; t* only makes it efficient). Typically 2 evaluations per chunk (3 at 1e-3, no gain).
CHERNOFF_TOLERANCE = 0.05
CHERNOFF_MAX_STEPS = 60


class DiagGaussianLogOverlap(NamedTuple):
    """Per pair: natural logs of the importance-sampling estimate, BC and the bracket's lower end;
    the effective sample size of the weights and the tilt t of the proposal r_t."""

    log_ovl: Tensor
    log_bc: Tensor
    log_bc_lower: Tensor
    ess: Tensor
    tilt: Tensor

    def outside_bounds(self) -> Tensor:
        """Bool, per pair: the estimate lies outside [lower, BC] beyond `BRACKET_TOLERANCE`."""
        slack = BRACKET_TOLERANCE * self.log_bc.abs().clamp_min(1)
        return (self.log_ovl < self.log_bc_lower - slack) | (self.log_ovl > self.log_bc + slack)

    def low_ess(self) -> Tensor:
        """Bool, per pair: the effective sample size is below `LOW_ESS`."""
        return self.ess < LOW_ESS


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


def _mean_and_slope(tilt: Tensor, half_log_ratio: Tensor, rho_gap: Tensor, scaled_shift_sq: Tensor, rho: Tensor) -> tuple[Tensor, Tensor]:
    """E_{r_t}[Delta] and its t-derivative Var_{r_t}[Delta], (P,) each, at tilts (P, 1).

    Per coordinate, with y = v_p / W = 1 / (1 + t (rho - 1)) and c = d^2 / v_p:
    (v_p - v_q) / (2W) = -(rho - 1) y / 2, d^2 (t^2 v_q - (1-t)^2 v_p) / (2 W^2) = c y (t - (1-t) y) / 2
    (t^2 v_q - (1-t)^2 v_p = t W - (1-t) v_p), (v_q - v_p)^2 / (2 W^2) = ((rho - 1) y)^2 / 2 and
    d^2 v_p v_q / W^3 = c rho y^3.
    """
    y = (rho_gap * tilt).add_(1).reciprocal_()  # (P, K)
    gap_y = rho_gap * y
    c_y = scaled_shift_sq * y
    mean = half_log_ratio + (c_y * (tilt - (1 - tilt) * y) - gap_y).sum(-1) / 2
    slope = (gap_y.square_().div_(2) + c_y.mul_(rho).mul_(y).mul_(y)).sum(-1)
    return mean, slope


def chernoff_point(half_log_ratio: Tensor, rho_gap: Tensor, scaled_shift_sq: Tensor, rho: Tensor) -> Tensor:
    """(P,) t* in (0, 1) with E_{r_t*}[Delta] = 0, from per-pair 1/2 sum L (P,) and (P, K) rho - 1,
    d^2 / v_p, rho = v_q / v_p. E_{r_t}[Delta] rises from -KL(q || p) at t = 0 to KL(p || q) at 1;
    Newton from t = 1/2 inside a bisection bracket that every step shrinks (a step that would leave
    it bisects instead). Pairs with Var[Delta] = 0 (identical laws) keep t = 1/2."""
    tilt = half_log_ratio.new_full(half_log_ratio.shape, 0.5)
    low, high = torch.zeros_like(tilt), torch.ones_like(tilt)
    for _ in range(CHERNOFF_MAX_STEPS):
        mean, slope = _mean_and_slope(tilt[:, None], half_log_ratio, rho_gap, scaled_shift_sq, rho)
        done = mean.abs() <= CHERNOFF_TOLERANCE * slope.sqrt() + 1e-9
        if bool(done.all()):
            break
        above = mean > 0
        high = torch.where(above, tilt, high)
        low = torch.where(above, low, tilt)
        newton = tilt - mean / slope
        inside = (newton > low) & (newton < high)  # False for NaN
        step = torch.where(inside, newton, (low + high) / 2)
        tilt = torch.where(done, tilt, step)
    return tilt


def importance_log_ovl_of(p: Gaussians, q: Gaussians, features: Tensor, tilt: float | None = None) -> DiagGaussianLogOverlap:
    """Paired (P, K) rows p, q and (M, 2K) `quadratic_features` -> per-pair fields (P,) each.

    `tilt` None samples from r_t at the Chernoff point t* (`chernoff_point`); a number fixes t for
    every pair (1/2: the earlier estimator, kept for the validation's comparison). Per coordinate, in
    rho = v_q / v_p and y = 1 / (1 + t (rho - 1)): the eps^2 weight -(rho - 1) y / 2, the eps weight
    -(d / s_p) sqrt(rho y^3) (= -s_p s_q d / W^(3/2)), the offset 1/2 sum L + 1/2 sum c y (t - (1-t) y)
    with c = d^2 / v_p, and log Z_t = -1/2 [t (1-t) sum c y - sum log y - t sum L].
    """
    dims = p.mu.shape[-1]
    num_samples = features.shape[0]
    shift = q.mu - p.mu  # (P, K) d
    var_sum = p.var + q.var  # (P, K) V
    log_bc = log_bhattacharyya_from(shift.square() / var_sum, var_sum, p, q)  # (P,)
    log_ratio = q.logvar - p.logvar  # (P, K) L
    half_log_ratio = 0.5 * (q.logvar_sum - p.logvar_sum)  # (P,) 1/2 sum L
    rho_gap = torch.expm1(log_ratio)  # (P, K) rho - 1
    rho = rho_gap + 1
    scaled_shift = shift / p.std  # (P, K) d / s_p
    scaled_shift_sq = scaled_shift.square()  # (P, K) c
    if tilt is None:
        tilts = chernoff_point(half_log_ratio, rho_gap, scaled_shift_sq, rho)  # (P,)
    else:
        tilts = half_log_ratio.new_full(half_log_ratio.shape, float(tilt))
    t = tilts[:, None]  # (P, 1)
    y = (rho_gap * t).add_(1).reciprocal_()  # (P, K)
    c_y = scaled_shift_sq * y
    weights = shift.new_empty(shift.shape[0], 2 * dims)  # (P, 2K): coefficients of [eps^2, eps]
    torch.mul(rho_gap, y, out=weights[:, :dims]).mul_(-0.5)
    torch.mul(rho, y.pow(3), out=weights[:, dims:]).sqrt_().mul_(scaled_shift).neg_()
    offset = half_log_ratio + 0.5 * (c_y * (t - (1 - t) * y)).sum(-1)  # (P,)
    log_z = -0.5 * (tilts * (1 - tilts) * c_y.sum(-1) + y.log().sum(-1).neg() - tilts * 2 * half_log_ratio)  # (P,)
    log_z = torch.minimum(log_z, log_bc) if tilt is None else log_z  # Z_t* <= BC exactly; rounding must not undo it
    delta = torch.addmm(offset[:, None], weights, features.T)  # (P, M) log p - log q at the draws
    log_w = torch.minimum((1 - t) * delta, delta.mul_(-t))  # (P, M) log min(p, q) / r_t - log Z_t, <= 0
    peak = log_w.amax(-1, keepdim=True)  # (P, 1): weights relative to the largest, one exp for both sums
    scaled = log_w.sub_(peak).exp_()  # (P, M) in (0, 1]
    total = scaled.sum(-1)
    ess = total.square() / scaled.square_().sum(-1)  # (sum w)^2 / sum w^2, in [1, M]
    log_sum = peak.squeeze(-1) + total.log()
    log_ovl = log_z + log_sum - math.log(num_samples)
    return DiagGaussianLogOverlap(log_ovl, log_bc, log_bhattacharyya_lower(log_bc), ess, tilts)


def diag_gaussian_log_ovl(
    mu1: Tensor,
    logvar1: Tensor,
    mu2: Tensor,
    logvar2: Tensor,
    num_samples: int = 256,
    generator: torch.Generator | None = None,
    tilt: float | None = None,
) -> DiagGaussianLogOverlap:
    """Importance-sampling log OVL of diagonal Gaussians (..., K) -> (...) fields, with `num_samples`
    draws eps (M, K) from `generator` (`mc_noise`), shared by all pairs; chunked to bounded memory.
    `tilt`: None for the Chernoff point per pair, a number to fix t (1/2: the earlier estimator)."""
    mu1, logvar1, mu2, logvar2 = torch.broadcast_tensors(mu1, logvar1, mu2, logvar2)
    batch_shape, dims = mu1.shape[:-1], mu1.shape[-1]
    features = quadratic_features(mc_noise(num_samples, dims, generator).to(mu1.device))  # (M, 2K)
    first = Gaussians.from_logvar(mu1.reshape(-1, dims), logvar1.reshape(-1, dims))  # (P, K) fields
    second = Gaussians.from_logvar(mu2.reshape(-1, dims), logvar2.reshape(-1, dims))
    step = pairs_per_chunk(dims, num_samples)
    chunks = [
        importance_log_ovl_of(first.take(slice(start, start + step)), second.take(slice(start, start + step)), features, tilt)
        for start in range(0, first.mu.shape[0], step)
    ]
    if not chunks:
        empty = first.mu.new_zeros(batch_shape)
        return DiagGaussianLogOverlap(empty, empty, empty, empty, empty)
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

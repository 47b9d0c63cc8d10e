"""Closed forms for the overlap (OVL) of Gaussian laws, in the log domain, and the Bhattacharyya bracket.

- Isotropic Gaussians with one variance (the BL-AE's Gaussian noise): OVL = 2 Phi(-d / (2 sigma)),
  log OVL = log 2 + log_ndtr(-d / (2 sigma)), finite at any separation (float64 `erfc` underflows
  to 0 from d / (2 sigma) ~ 27, e.g. +-1 codes ~ 350 bits apart under noise 0.5).
- Two 1-D normals with unequal variances (Inman & Bradley 1989), for the per-dimension overlap.
- Diagonal Gaussians: the Bhattacharyya coefficient BC = integral sqrt(p q) in logs and the bracket
  1 - sqrt(1 - BC^2) <= OVL <= BC it implies (`BhattacharyyaBounds`), which checks every
  Monte-Carlo estimate (`metrics/overlap_importance.py`). See docs/metrics.md.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

SQRT2 = math.sqrt(2.0)
LOG2 = math.log(2.0)


def isotropic_gaussian_log_ovl(dist: Tensor, sigma: float) -> Tensor:
    """log OVL of N(a, s^2 I) and N(b, s^2 I) at ||a - b|| = dist: log 2 + log Phi(-d / (2 s)).

    `log_ndtr` keeps its relative precision in the far tail (it never forms Phi itself), so +-1
    codes 3000 bits apart under noise 0.5 give -6004.92, not -inf.
    """
    return torch.special.log_ndtr(dist.double() / (-2 * sigma)) + LOG2


def isotropic_gaussian_ovl(dist: Tensor, sigma: float) -> Tensor:
    """OVL of N(a, s^2 I) and N(b, s^2 I) at ||a - b|| = dist: 2 Phi(-d / (2 s)), float64 (0 below ~1e-308)."""
    return torch.erfc(dist.double() / (2 * sigma * SQRT2))


class Gaussians(NamedTuple):
    """Rows of diagonal Gaussians (..., K) in float64 with the derived quantities the pair kernels
    share, so that the pairwise metric takes exp / sqrt / logs once per image, not per pair. The
    per-coordinate fields are views of one packed (..., 4, K) tensor, so that taking the rows of a
    chunk of pairs is one gather."""

    packed: Tensor  # (..., 4, K): mu, logvar, var, std
    logvar_sum: Tensor  # (...): sum_k logvar

    @classmethod
    def from_logvar(cls, mu: Tensor, logvar: Tensor) -> Gaussians:
        mu, logvar = torch.broadcast_tensors(mu.double(), logvar.double())
        var = logvar.exp()
        return cls(torch.stack([mu, logvar, var, var.sqrt()], -2), logvar.sum(-1))

    @classmethod
    def from_var(cls, mu: Tensor, var: Tensor) -> Gaussians:
        mu, var = torch.broadcast_tensors(mu.double(), var.double())
        return cls.from_logvar(mu, var.log())

    @property
    def mu(self) -> Tensor:
        return self.packed[..., 0, :]

    @property
    def logvar(self) -> Tensor:
        return self.packed[..., 1, :]

    @property
    def var(self) -> Tensor:
        return self.packed[..., 2, :]

    @property
    def std(self) -> Tensor:
        return self.packed[..., 3, :]

    def take(self, index: Tensor | slice) -> Gaussians:
        """Rows `index` (of the leading dimension)."""
        return Gaussians(self.packed[index], self.logvar_sum[index])


class PairTerms(NamedTuple):
    """Elementwise (P, K) differences of paired rows p, q that every pair kernel uses."""

    shift: Tensor  # mu_q - mu_p
    shift_sq: Tensor  # shift^2
    var_gap: Tensor  # var_q - var_p
    log_var_ratio: Tensor  # logvar_q - logvar_p

    @classmethod
    def of(cls, p: Gaussians, q: Gaussians) -> PairTerms:
        shift = q.mu - p.mu
        return cls(shift, shift.square(), q.var - p.var, q.logvar - p.logvar)


def normal_ovl_1d(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor) -> Tensor:
    """Elementwise OVL of two 1-D normals (Inman & Bradley 1989; the algorithm of
    `statistics.NormalDist.overlap`): crossing points of the densities, then CDF differences.
    Linear domain (it is 1 - a sum of CDF differences): for `per_bit`, not for tiny overlaps."""
    mu1, var1, mu2, var2 = (t.unsqueeze(-1) for t in torch.broadcast_tensors(mu1, var1, mu2, var2))  # elementwise: rows of K = 1
    p, q = Gaussians.from_var(mu1, var1), Gaussians.from_var(mu2, var2)
    return normal_ovl_1d_of(p, q, PairTerms.of(p, q)).squeeze(-1)


def normal_ovl_1d_of(p: Gaussians, q: Gaussians, terms: PairTerms) -> Tensor:
    """`normal_ovl_1d` elementwise on same-shape float64 rows, in a cancellation-free form.

    With d = |mu_q - mu_p| (OVL is invariant under reflection), dv = var_q - var_p,
    L = ln(var_q / var_p) and R = sqrt(d^2 + dv L), the densities cross at two points; standardized
    by q and by p (and divided by sqrt 2, for erf) they are
        t_q = (var_p L - d^2) / (sqrt2 E_q),   -E_q / (sqrt2 dv),   E_q = std_p R + std_q d,
        t_p = (var_q L + d^2) / (sqrt2 E_p),   -E_p / (sqrt2 dv),   E_p = std_q R + std_p d,
    (the first pair is the textbook (a - b) / dv - mu rewritten through the product of the roots,
    so nothing cancels as dv -> 0), and OVL = 1 - 1/2 sum_c |erf(t_q) - erf(t_p)|. Swapping p and q
    swaps the two CDF terms, so no ordering of the pair is needed. Equal variances (|L| <= 1e-12,
    one crossing at the midpoint) take the closed form erfc(d / (2 sqrt2 std)) instead.
    """
    dist = terms.shift.abs()
    equal_var = terms.log_var_ratio.abs() <= 1e-12
    any_equal = bool(equal_var.any())
    radius_sq = torch.addcmul(terms.shift_sq, terms.var_gap, terms.log_var_ratio).clamp_min_(0)
    var_gap = terms.var_gap
    if any_equal:  # keep the (discarded) general formula finite there
        radius_sq.masked_fill_(equal_var, 1.0)
        var_gap = var_gap.masked_fill(equal_var, 1.0)
    radius = radius_sq.sqrt_()
    extent_q = torch.addcmul(q.std * dist, p.std, radius)  # (P, K) E_q
    extent_p = torch.addcmul(p.std * dist, q.std, radius)  # (P, K) E_p
    args = radius.new_empty((4, *radius.shape))
    torch.div(torch.addcmul(terms.shift_sq.neg(), p.var, terms.log_var_ratio), extent_q, out=args[0])
    torch.div(torch.addcmul(terms.shift_sq, q.var, terms.log_var_ratio), extent_p, out=args[1])
    args[:2].mul_(1 / SQRT2)
    far_scale = var_gap.reciprocal().mul_(-1 / SQRT2)
    torch.mul(extent_q, far_scale, out=args[2])
    torch.mul(extent_p, far_scale, out=args[3])
    cdf = args.erf_()  # 2 Phi - 1 at the crossings, under q (rows 0, 2) and p (rows 1, 3)
    ovl = (cdf[0] - cdf[1]).abs_().add_((cdf[2] - cdf[3]).abs_()).mul_(-0.5).add_(1)
    if any_equal:
        std_x = torch.minimum(p.std, q.std)[equal_var]
        ovl = ovl.masked_scatter(equal_var, torch.erfc(dist[equal_var] / (2 * SQRT2 * std_x)))
    return ovl


def log_bhattacharyya_from(scaled_shift_sq: Tensor, var_sum: Tensor, p: Gaussians, q: Gaussians) -> Tensor:
    """(P, K) d^2 / (v_p + v_q) and v_p + v_q of paired rows p, q -> (P,) log BC = -D_B.

    D_B = 1/8 dmu^T S^-1 dmu + 1/2 ln(det S / sqrt(det S_p det S_q)), S = (S_p + S_q) / 2, written
    through V = v_p + v_q: D_B = 1/4 sum d^2 / V + 1/2 [sum ln V - K ln 2 - (sum lv_p + sum lv_q) / 2].
    The second bracket is >= 0 (sum of log cosh of half the log variance ratios) and its rounding
    error ~1e-16 x sum |ln V| (1e-13 at K = 384): far below anything a log10 overlap reports. The
    result is clamped at 0 (BC <= 1), so that rounding never makes log BC positive (identical laws
    would then get a NaN lower bracket end).
    """
    dims = var_sum.shape[-1]
    log_det_term = var_sum.log().sum(-1) - dims * LOG2 - 0.5 * (p.logvar_sum + q.logvar_sum)  # (P,)
    return (0.25 * scaled_shift_sq.sum(-1) + 0.5 * log_det_term).neg_().clamp_max_(0)


def log_bhattacharyya_lower(log_bc: Tensor) -> Tensor:
    """log(1 - sqrt(1 - BC^2)) from log BC, as 2 log BC - log(1 + sqrt(1 - BC^2)): no cancellation,
    ~ 2 log BC - log 2 for tiny BC (where BC^2 underflows), 0 at BC = 1."""
    return 2 * log_bc - torch.log1p(torch.sqrt(-torch.expm1(2 * log_bc)))


class BhattacharyyaBounds(NamedTuple):
    """BC and the OVL bracket it implies: 1 - sqrt(1 - BC^2) <= OVL <= BC, linear and in logs
    (the linear fields underflow to 0 for tiny BC; the log fields do not)."""

    coefficient: Tensor
    lower: Tensor
    upper: Tensor
    log_lower: Tensor
    log_upper: Tensor


def bhattacharyya_diag_gaussian(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> BhattacharyyaBounds:
    """(..., K) diagonal Gaussians -> (...) Bhattacharyya coefficient exp(-D_B) and the OVL bracket."""
    mu1, logvar1, mu2, logvar2 = torch.broadcast_tensors(mu1, logvar1, mu2, logvar2)
    p, q = Gaussians.from_logvar(mu1, logvar1), Gaussians.from_logvar(mu2, logvar2)
    var_sum = p.var + q.var
    log_bc = log_bhattacharyya_from((q.mu - p.mu).square() / var_sum, var_sum, p, q)
    log_lower = log_bhattacharyya_lower(log_bc)
    bc = log_bc.exp()
    return BhattacharyyaBounds(coefficient=bc, lower=log_lower.exp(), upper=bc, log_lower=log_lower, log_upper=log_bc)

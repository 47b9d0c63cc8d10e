"""Overlap (OVL) of bounded-noise laws z + a e, e with iid Tri(kappa) coordinates on [-1, 1], in logs.

- 1-D: two copies of a symmetric unimodal density cross at the midpoint, so
  OVL = 2 P(a e > |gap| / 2) = (1 - |gap| / (2a))_+^kappa (P(e > t) = (1 - t)^kappa / 2 for Tri(kappa)).
- K dims, uniform noise (kappa = 1): the densities are constant on their boxes, so the overlap is
  the product of the 1-D ones: log OVL = sum_k log1p(-|gap_k| / (2a)), exact, -inf exactly where
  the supports are disjoint in some coordinate (|gap_k| >= 2a).
- K dims, kappa > 1: no closed form; a symmetric Monte-Carlo estimate, in logs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from networks.binarizer import triangular_noise


def bounded_noise_ovl_1d(gap: Tensor, half_width: float, kappa: float = 1.0) -> Tensor:
    """OVL of x + a e and x + gap + a e, e ~ Tri(kappa) on [-1, 1]: (1 - |gap| / (2a))_+^kappa.
    Needs kappa >= 1 (a unimodal density)."""
    return (1 - gap.double().abs() / (2 * half_width)).clamp_min(0).pow(kappa)


def bounded_noise_log_ovl_1d(gap: Tensor, half_width: float, kappa: float = 1.0) -> Tensor:
    """log of `bounded_noise_ovl_1d`: kappa log1p(-|gap| / (2a)), -inf where |gap| >= 2a."""
    fraction = gap.double().abs() / (2 * half_width)
    inside = fraction < 1
    return torch.where(inside, kappa * torch.log1p(-fraction.clamp_max(1)), float("-inf"))


def bounded_mc_noise(num_samples: int, dims: int, kappa: float, generator: torch.Generator | None) -> Tensor:
    """(2, M, K) float64 Tri(kappa) draws on (-1, 1): one set to sample from each side of a pair."""
    return triangular_noise((2, num_samples, dims), kappa, dtype=torch.float64, generator=generator)


def bounded_noise_log_ovl_mc(gap: Tensor, half_width: float, kappa: float, noise: Tensor) -> Tensor:
    """Symmetric MC log OVL of z + a e and z + gap + a e, e with iid Tri(kappa) coordinates.

    gap (P, K), noise (2, M, K) from `bounded_mc_noise` -> (P,) natural logs. With s = gap / a and
    the unit density f(e) = (kappa/2)(1 - |e|)^(kappa - 1), a draw e of the first law has
        log q/p = (kappa - 1) sum_k [log(1 - |e_k - s_k|) - log(1 - |e_k|)]   (-inf off q's support),
    the second law mirrors it with -s; log of 1/2 (E_p[min(1, q/p)] + E_q[min(1, p/q)]) by
    log-sum-exp, so nothing underflows. Plain sampling: an estimate below ~1/M is a noisy count of
    rare draws (the Gaussian case has an importance sampler, this one has none); for the BL-AE's
    binarized latents the overlap is exactly 0 (disjoint supports), which `PairwiseOverlap` takes
    from the closed form before any MC. Elementwise over (P, M, K) in chunks of ~2^22 values.
    """
    shift = gap.double() / half_width  # (P, K)
    num_pairs, (num_samples, dims) = shift.shape[0], noise.shape[1:]
    log_density = torch.log1p(-noise.abs())  # (2, M, K) finite: Tri draws never reach +-1
    step = max(1, 2**22 // max(num_samples * dims, 1))
    chunks = []
    for start in range(0, num_pairs, step):
        s = shift[start : start + step, None, :]  # (p, 1, K)
        from_p = _log_bounded_min_ratio(noise[0], log_density[0], s, kappa)
        from_q = _log_bounded_min_ratio(noise[1], log_density[1], -s, kappa)
        chunks.append(torch.logaddexp(from_p, from_q) - math.log(2))
    return torch.cat(chunks) if chunks else shift.new_zeros(0)


def bounded_noise_ovl_mc(gap: Tensor, half_width: float, kappa: float, noise: Tensor) -> Tensor:
    """exp of `bounded_noise_log_ovl_mc` (float64, may underflow)."""
    return bounded_noise_log_ovl_mc(gap, half_width, kappa, noise).exp()


def _log_bounded_min_ratio(noise: Tensor, log_density: Tensor, shift: Tensor, kappa: float) -> Tensor:
    """(M, K) unit draws of p and log(1 - |e|), (p, 1, K) shifts of q in units of a -> (p,) log E_p[min(1, q/p)]."""
    inside = (noise - shift).abs_().neg_().add_(1)  # (p, M, K) 1 - |e - s|, <= 0 off q's support
    on_support = (inside > 0).all(-1)  # (p, M)
    if kappa == 1:  # uniform: q/p is 1 on q's support
        log_ratio = on_support.double().log()  # 0 on the support, -inf off it
    else:
        log_ratio = (inside.clamp_min_(1e-300).log_() - log_density).sum(-1).mul_(kappa - 1).clamp_max_(0)  # (p, M)
        log_ratio = log_ratio.masked_fill_(~on_support, float("-inf"))
    return torch.logsumexp(log_ratio, -1) - math.log(noise.shape[0])

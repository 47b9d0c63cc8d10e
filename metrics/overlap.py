"""Overlap coefficients (OVL) between per-image latent distributions: the MEPS diagnostic.

OVL(p, q) = integral of min(p, q) = E_p[min(1, q/p)]. The paper's claim (paper-spec §1.2-1.3) is
that reconstruction under latent noise is only possible when the per-image latent distributions
barely overlap, and that signed binary codes with bounded noise make them overlap exactly 0.
Closed forms where they exist (metrics.md §2.2), a symmetric Monte-Carlo estimator otherwise,
with Bhattacharyya bounds as a check, and the MSE lower bound the overlaps imply.
"""
from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from metrics._per_sample import PerSampleMetric

SQRT2 = math.sqrt(2.0)
LOG10_FLOOR = 1e-300  # log10_mean of an exactly-zero overlap is reported as -300


# --------------------------------------------------------------------------------------------
# closed forms


def standard_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x / SQRT2)


def isotropic_gaussian_ovl(dist: Tensor, sigma: float) -> Tensor:
    """OVL of N(a, s^2 I) and N(b, s^2 I) at ||a - b|| = dist: 2 Phi(-d / (2 s)).

    Written with erfc so that tiny overlaps (1e-45 for well separated codes) keep their digits.
    """
    return torch.erfc(dist.double() / (2 * sigma * SQRT2))


def gaussian_code_ovl(hamming: Tensor, sigma: float) -> Tensor:
    """OVL of two +-1 codes at Hamming distance H under isotropic Gaussian noise: 2 Phi(-sqrt(H) / s).

    ||s - t|| = 2 sqrt(H) for signed bits, so this is the isotropic case.
    """
    return isotropic_gaussian_ovl(2 * hamming.double().sqrt(), sigma)


def bounded_noise_code_ovl(hamming: Tensor) -> Tensor:
    """OVL of two +-1 codes under any factorized noise supported in [-a, a], a <= 1: 1 if H = 0 else 0.

    Distinct codes differ by 2 >= 2a in some coordinate, so the supports are disjoint there.
    """
    return (hamming == 0).double()


def normal_ovl_1d(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor) -> Tensor:
    """Elementwise OVL of two 1-D normals (Inman & Bradley 1989; the algorithm of
    `statistics.NormalDist.overlap`): crossing points of the densities, then CDF differences."""
    mu1, var1, mu2, var2 = torch.broadcast_tensors(*(t.double() for t in (mu1, var1, mu2, var2)))
    swap = var1 > var2  # order so that X has the smaller variance
    mu_x, mu_y = torch.where(swap, mu2, mu1), torch.where(swap, mu1, mu2)
    var_x, var_y = torch.where(swap, var2, var1), torch.where(swap, var1, var2)
    std_x, std_y = var_x.sqrt(), var_y.sqrt()
    dm, dv = (mu_y - mu_x).abs(), var_y - var_x

    equal_var = dv <= 1e-12 * var_y
    same_var_ovl = torch.erfc(dm / (2 * std_x * SQRT2))

    dv_safe = torch.where(equal_var, torch.ones_like(dv), dv)
    a = mu_x * var_y - mu_y * var_x
    b = std_x * std_y * (dm.square() + dv * torch.log(var_y / var_x)).sqrt()
    crossings = torch.stack([(a + b) / dv_safe, (a - b) / dv_safe])  # (2, ...)
    cdf_gap = standard_normal_cdf((crossings - mu_y) / std_y) - standard_normal_cdf((crossings - mu_x) / std_x)  # (2, ...)
    unequal_ovl = 1 - cdf_gap.abs().sum(0)
    return torch.where(equal_var, same_var_ovl, unequal_ovl)


class BhattacharyyaBounds(NamedTuple):
    """BC and the OVL bracket it implies: 1 - sqrt(1 - BC^2) <= OVL <= BC."""

    coefficient: Tensor
    lower: Tensor
    upper: Tensor


def bhattacharyya_diag_gaussian(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> BhattacharyyaBounds:
    """(..., K) diagonal Gaussians -> (...) Bhattacharyya coefficient exp(-D_B) and OVL bounds.

    D_B = 1/8 dmu^T S^-1 dmu + 1/2 ln(det S / sqrt(det S1 det S2)), S = (S1 + S2) / 2. The lower
    bound is evaluated as -expm1(log1p(-BC^2) / 2) so that it keeps ~BC^2/2 for tiny BC.
    """
    mu1, logvar1, mu2, logvar2 = (t.double() for t in (mu1, logvar1, mu2, logvar2))
    mean_var = 0.5 * (logvar1.exp() + logvar2.exp())  # (..., K)
    distance = 0.125 * ((mu1 - mu2).square() / mean_var).sum(-1) + 0.5 * (
        mean_var.log() - 0.5 * (logvar1 + logvar2)
    ).sum(-1)  # (...)
    bc = torch.exp(-distance)
    return BhattacharyyaBounds(coefficient=bc, lower=-torch.expm1(0.5 * torch.log1p(-bc.square())), upper=bc)


# --------------------------------------------------------------------------------------------
# Monte Carlo


def diag_gaussian_ovl_mc(
    mu1: Tensor,
    logvar1: Tensor,
    mu2: Tensor,
    logvar2: Tensor,
    num_samples: int = 256,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Symmetric MC estimate 0.5 (E_p[min(1, q/p)] + E_q[min(1, p/q)]) for diagonal Gaussians.

    Inputs (P, K) (or broadcastable (..., K)) -> (...). Every term lies in [0, 1], so the standard
    error is at most 0.5 / sqrt(num_samples); overlaps below ~1e-6 come out as 0 (biased low:
    bracket them with `bhattacharyya_diag_gaussian`). The same standard-normal draws (from
    `generator`, on the CPU so that every device and rank agrees) serve every pair, so one pair's
    estimate does not depend on which other pairs share the batch.
    """
    noise = mc_noise(num_samples, mu1.shape[-1], generator).to(mu1.device)  # (2, M, K)
    return _symmetric_mc_ovl(mu1, logvar1, mu2, logvar2, noise)


def mc_noise(num_samples: int, dims: int, generator: torch.Generator | None) -> Tensor:
    """(2, M, K) float64 standard normals: one set to sample from each side of a pair."""
    return torch.randn(2, num_samples, dims, generator=generator, dtype=torch.float64)


def _symmetric_mc_ovl(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor, noise: Tensor) -> Tensor:
    mu1, logvar1, mu2, logvar2 = (t.double() for t in (mu1, logvar1, mu2, logvar2))
    from_p = _expected_min_ratio(mu1, logvar1, mu2, logvar2, noise[0])
    from_q = _expected_min_ratio(mu2, logvar2, mu1, logvar1, noise[1])
    return 0.5 * (from_p + from_q)


def _expected_min_ratio(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor, noise: Tensor) -> Tensor:
    """E_{z~p}[min(1, q(z)/p(z))] with z = mu_p + sigma_p * noise, in log space (no underflow of
    the densities, only of the final ratio). (..., K) params, (M, K) noise -> (...)."""
    z = mu_p[..., None, :] + (0.5 * logvar_p).exp()[..., None, :] * noise  # (..., M, K)
    log_p = -0.5 * (logvar_p.sum(-1)[..., None] + noise.square().sum(-1))  # (..., M); 2 pi terms cancel
    log_q = -0.5 * (logvar_q[..., None, :] + (z - mu_q[..., None, :]).square() * (-logvar_q).exp()[..., None, :]).sum(-1)  # (..., M)
    return (log_q - log_p).clamp(max=0).exp().mean(-1)


# --------------------------------------------------------------------------------------------
# the bound on reconstruction error


def ovl_reconstruction_lower_bound(ovl: Tensor, images: Tensor) -> Tensor:
    """Per-pixel MSE lower bound 1/(4 N (N-1)) sum_{i != j} OVL_ij ||x_i - x_j||^2 / D.

    paper-spec §1.3: any deterministic decoder pays at least OVL_ij ||x_i - x_j||^2 / 2 on a pair,
    so per-pixel reconstruction MSE (on the scale of `images`, e.g. [-1, 1]) cannot go below this.
    ovl (N, N), images (N, D) or (N, ...).
    """
    x = images.reshape(images.shape[0], -1).double()  # (N, D)
    num = x.shape[0]
    if num < 2:
        return x.new_tensor(float("nan"))
    sq_norms = x.square().sum(1)  # (N,)
    sq_dist = (sq_norms[:, None] + sq_norms[None, :] - 2 * x @ x.T).clamp_min(0)  # (N, N)
    off_diagonal = ~torch.eye(num, dtype=torch.bool, device=x.device)
    total = (ovl.double() * sq_dist)[off_diagonal].sum()
    return total / (4 * num * (num - 1)) / x.shape[1]


# --------------------------------------------------------------------------------------------
# the metric

OverlapKind = Literal["binary_gaussian", "binary_bounded", "diag_gaussian"]


class PairwiseOverlap(PerSampleMetric):
    """Pairwise OVL between the latent distributions of a gathered evaluation set (N <= a few hundred).

    kind:
    - "binary_gaussian": codes sign(latents) in {-1, +1} with isotropic Gaussian noise `sigma`
      (closed form 2 Phi(-sqrt(H) / sigma)); soft tanh latents are binarized, i.e. this is the
      overlap of the codes the decoder sees at inference.
    - "binary_bounded": the same codes with noise of support <= 1 per dimension (MEPS: exactly 0
      for distinct codes).
    - "diag_gaussian": VAE posteriors N(mu, exp(logvar)), symmetric MC with `mc_samples` draws
      from a generator seeded with `seed` (identical on every rank), plus the Bhattacharyya bound.
    update(latents (B, ...), logvar=None (diag_gaussian only), images=None (B, ...) in [-1, 1]):
    images feed `lower_bound_mse`; give them with every update or never.
    """

    higher_is_better = False

    def __init__(self, kind: OverlapKind, sigma: float | None = None, mc_samples: int = 256, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kind not in ("binary_gaussian", "binary_bounded", "diag_gaussian"):
            raise ValueError(f"unknown overlap kind {kind!r}")
        if kind == "binary_gaussian" and (sigma is None or sigma <= 0):
            raise ValueError("binary_gaussian needs a positive sigma")
        self.kind, self.sigma, self.mc_samples, self.seed = kind, sigma, mc_samples, seed
        self.add_per_sample_state("latents", "logvars", "images")
        # flattened per-sample sizes; "max" recovers them on a rank that saw no update
        self.add_state("latent_dim", torch.tensor(0), dist_reduce_fx="max")
        self.add_state("image_dim", torch.tensor(0), dist_reduce_fx="max")

    def update(self, latents: Tensor, logvar: Tensor | None = None, images: Tensor | None = None) -> None:
        if (logvar is not None) != (self.kind == "diag_gaussian"):
            raise ValueError("logvar is required for diag_gaussian and meaningless for the binary kinds")
        flat = latents.reshape(latents.shape[0], -1)  # (B, K)
        pixels = images.reshape(images.shape[0], -1) if images is not None else None  # (B, D)
        self.latent_dim = _checked_size(self.latent_dim, flat.shape[1], "latent")
        if pixels is not None:
            self.image_dim = _checked_size(self.image_dim, pixels.shape[1], "image")
        self.append_per_sample(latents=flat)
        if logvar is not None:
            self.append_per_sample(logvars=logvar.reshape(flat.shape))
        if pixels is not None:
            self.append_per_sample(images=pixels)

    def compute(self) -> dict[str, Tensor]:
        latents = self.gathered("latents").view(-1, max(int(self.latent_dim), 1))  # (N, K)
        ovl, per_bit, extra = self._pairwise(latents)  # (N, N) (diagonal unused), scalar, dict
        num = latents.shape[0]
        off_diagonal = ~torch.eye(num, dtype=torch.bool, device=latents.device)
        pair_values = ovl[off_diagonal]  # (N (N - 1),)
        mean = pair_values.mean() if num > 1 else latents.new_tensor(float("nan"))
        return {
            "mean": mean,
            "max": pair_values.max() if num > 1 else mean,
            "mean_nn": ovl.masked_fill(~off_diagonal, -1).max(1).values.mean() if num > 1 else mean,
            "log10_mean": mean.clamp_min(LOG10_FLOOR).log10(),
            "per_bit": per_bit,
            "lower_bound_mse": self._lower_bound(ovl, num),
            **extra,
        }

    def _pairwise(self, latents: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        if self.kind == "diag_gaussian":
            logvars = self.gathered("logvars").view(latents.shape)  # (N, K)
            return self._diag_gaussian_pairwise(latents, logvars)
        codes = torch.where(latents > 0, 1.0, -1.0).double()  # (N, K)
        bits = codes.shape[1]
        hamming = (bits - codes @ codes.T) / 2  # (N, N) exact integers in float64
        if self.kind == "binary_gaussian":
            ovl, differing_bit_ovl = gaussian_code_ovl(hamming, self.sigma), gaussian_code_ovl(hamming.new_tensor(1.0), self.sigma)
        else:
            ovl, differing_bit_ovl = bounded_noise_code_ovl(hamming), hamming.new_tensor(0.0)
        # a bit's 1-D overlap is 1 where the codes agree and `differing_bit_ovl` where they differ
        mean_differing_fraction = _off_diagonal_mean(hamming) / bits
        per_bit = 1 - (1 - differing_bit_ovl) * mean_differing_fraction
        return ovl, per_bit, {}

    def _diag_gaussian_pairwise(self, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """MC OVL, BC and per-dimension closed-form OVL for every unordered pair, chunked so that
        the (pairs, samples, dims) MC tensor stays at ~2^22 elements."""
        num, dims = mu.shape
        first, second = torch.triu_indices(num, num, offset=1, device=mu.device)  # (P,), (P,)
        generator = torch.Generator().manual_seed(self.seed)
        noise = mc_noise(self.mc_samples, dims, generator).to(mu.device)  # (2, M, K)
        pairs_per_chunk = max(1, 2**22 // (self.mc_samples * dims))
        ovl_pairs, bc_pairs, per_dim_sums = [], [], []
        for start in range(0, first.numel(), pairs_per_chunk):
            i, j = first[start : start + pairs_per_chunk], second[start : start + pairs_per_chunk]
            ovl_pairs.append(_symmetric_mc_ovl(mu[i], logvar[i], mu[j], logvar[j], noise))  # (p,)
            bc_pairs.append(bhattacharyya_diag_gaussian(mu[i], logvar[i], mu[j], logvar[j]).coefficient)  # (p,)
            per_dim_sums.append(normal_ovl_1d(mu[i], logvar[i].exp(), mu[j], logvar[j].exp()).sum())
        ovl = _symmetric_matrix(torch.cat(ovl_pairs) if ovl_pairs else mu.new_zeros(0), first, second, num)  # (N, N)
        num_pairs = first.numel()
        per_bit = torch.stack(per_dim_sums).sum() / (num_pairs * dims) if num_pairs else mu.new_tensor(float("nan"))
        bc_upper = torch.cat(bc_pairs).mean() if num_pairs else mu.new_tensor(float("nan"))
        return ovl, per_bit, {"bc_upper": bc_upper}

    def _lower_bound(self, ovl: Tensor, num: int) -> Tensor:
        images = self.gathered("images")
        if images.numel() == 0:
            return ovl.new_tensor(float("nan"))
        if images.numel() != num * int(self.image_dim):
            raise RuntimeError("images were given with some updates but not others")
        return ovl_reconstruction_lower_bound(ovl, images.view(num, -1))


def _checked_size(state: Tensor, size: int, what: str) -> Tensor:
    """The flattened per-sample size seen so far (0 = none yet), which every update must repeat."""
    if int(state) not in (0, size):
        raise ValueError(f"{what} size changed between updates: {int(state)} then {size}")
    return torch.full_like(state, size)


def _symmetric_matrix(values: Tensor, first: Tensor, second: Tensor, num: int) -> Tensor:
    """Upper-triangle pair values -> (N, N) symmetric matrix with a zero diagonal."""
    matrix = values.new_zeros(num, num)
    matrix[first, second] = values
    matrix[second, first] = values
    return matrix


def _off_diagonal_mean(matrix: Tensor) -> Tensor:
    num = matrix.shape[0]
    if num < 2:
        return matrix.new_tensor(float("nan"))
    return (matrix.sum() - matrix.diagonal().sum()) / (num * (num - 1))

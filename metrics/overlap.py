"""Overlap coefficients (OVL) between per-image latent distributions: the MEPS diagnostic, in logs.

OVL(p, q) = integral of min(p, q) (Inman & Bradley 1989). MEPS (Zhao & Basu, arXiv 2506.21731)
says that a deterministic decoder can reconstruct every image under latent noise only if the
per-image latent laws barely overlap; the overlaps imply a lower bound on the reconstruction MSE
(`log_ovl_reconstruction_lower_bound`). The laws measured are the ones the decoder is trained on
(`lightning_modules.model_outputs.LatentDistribution`). Every pair's overlap is computed as a
natural log, so values like 1e-2608 (+-1 codes 3000 bits apart under noise 0.5) stay finite:
- isotropic Gaussian noise around any latent: log 2 + log_ndtr(-||z_i - z_j|| / (2 sigma)), exact
  (`metrics/overlap_gaussian.py`);
- bounded noise with iid Tri(kappa) coordinates of half-width a: -inf exactly where the supports
  are disjoint in some coordinate (|z_ik - z_jk| >= 2a), the exact sum_k log(1 - |dz_k| / (2a))
  for uniform noise (kappa = 1), a symmetric Monte-Carlo estimate in logs otherwise
  (`metrics/overlap_bounded.py`);
- diagonal Gaussians (VAE posteriors): importance sampling from the tilted geometric mean
  p^t q^(1-t) / Z_t at each pair's Chernoff point, checked pair by pair against the Bhattacharyya
  bracket and by the weights' effective sample size (`metrics/overlap_importance.py`);
- points: 0 for identical latents, -inf otherwise.
The mean over pairs is a log-mean-exp. See docs/metrics.md.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics.utilities import rank_zero_warn

from metrics._per_sample import PerSampleMetric
from metrics.overlap_bounded import (
    bounded_mc_noise,
    bounded_noise_log_ovl_1d,
    bounded_noise_log_ovl_mc,
    bounded_noise_ovl_1d,
    bounded_noise_ovl_mc,
)
from metrics.overlap_gaussian import (
    BhattacharyyaBounds,
    Gaussians,
    PairTerms,
    bhattacharyya_diag_gaussian,
    isotropic_gaussian_log_ovl,
    isotropic_gaussian_ovl,
    normal_ovl_1d,
    normal_ovl_1d_of,
)
from metrics.overlap_importance import (
    BRACKET_TOLERANCE,
    LOW_ESS,
    DiagGaussianLogOverlap,
    diag_gaussian_log_ovl,
    diag_gaussian_log_ovl_plain_mc,
    importance_log_ovl_of,
    mc_noise,
    pairs_per_chunk,
    quadratic_features,
)

__all__ = [
    "BRACKET_TOLERANCE",
    "KINDS",
    "LOW_ESS",
    "BhattacharyyaBounds",
    "DiagGaussianLogOverlap",
    "OverlapKind",
    "PairwiseOverlap",
    "bhattacharyya_diag_gaussian",
    "bounded_mc_noise",
    "bounded_noise_log_ovl_1d",
    "bounded_noise_log_ovl_mc",
    "bounded_noise_ovl_1d",
    "bounded_noise_ovl_mc",
    "diag_gaussian_log_ovl",
    "diag_gaussian_log_ovl_plain_mc",
    "isotropic_gaussian_log_ovl",
    "isotropic_gaussian_ovl",
    "log_mean_exp",
    "log_ovl_reconstruction_lower_bound",
    "mc_noise",
    "normal_ovl_1d",
    "ovl_reconstruction_lower_bound",
]

LN10 = math.log(10.0)


def log_mean_exp(values: Tensor) -> Tensor:
    """log of the mean of exp(values) over all elements (-inf entries are zeros of the mean)."""
    return torch.logsumexp(values.reshape(-1), 0) - math.log(values.numel())


# --------------------------------------------------------------------------------------------
# the bound on reconstruction error


def log_ovl_reconstruction_lower_bound(log_ovl: Tensor, images: Tensor) -> Tensor:
    """Natural log of the per-pixel MSE lower bound 1/(4 N (N-1)) sum_{i != j} OVL_ij ||x_i - x_j||^2 / D.

    Any deterministic decoder d pays, on a pair, E_{p_i}||d - x_i||^2 + E_{p_j}||d - x_j||^2 >=
    int min(p_i, p_j) (||d - x_i||^2 + ||d - x_j||^2) >= OVL_ij ||x_i - x_j||^2 / 2; summing over the
    ordered pairs gives this bound on the per-pixel MSE (on the scale of `images`, e.g. [-1, 1])
    that the decoder makes on draws from the latent laws (docs/metrics.md). Summed as
    logsumexp(log OVL_ij + log ||x_i - x_j||^2): no pair's term underflows.
    log_ovl (N, N) (the diagonal is ignored), images (N, D) or (N, ...).
    """
    x = images.reshape(images.shape[0], -1).double()  # (N, D)
    num = x.shape[0]
    if num < 2:
        return x.new_tensor(float("nan"))
    sq_dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").square_()  # (N, N), no cancellation
    terms = (log_ovl.double() + sq_dist.log_()).fill_diagonal_(float("-inf"))  # (N, N)
    return torch.logsumexp(terms.reshape(-1), 0) - math.log(4 * num * (num - 1) * x.shape[1])


def ovl_reconstruction_lower_bound(ovl: Tensor, images: Tensor) -> Tensor:
    """`log_ovl_reconstruction_lower_bound` from linear overlaps (N, N), exponentiated (may underflow)."""
    return log_ovl_reconstruction_lower_bound(ovl.double().log(), images).exp()


# --------------------------------------------------------------------------------------------
# the metric

OverlapKind = Literal["gaussian", "bounded", "diag_gaussian", "point"]
KINDS = ("gaussian", "bounded", "diag_gaussian", "point")


class PairwiseOverlap(PerSampleMetric):
    """Pairwise OVL between the per-image latent laws of a gathered evaluation set (N <= a few hundred).

    kind (the `LatentDistribution` kinds):
    - "gaussian": N(z_i, scale^2 I) around any latents (soft tanh latents, or +-1 codes, where it is
      2 Phi(-sqrt(H) / scale) at Hamming distance H); exact closed form per pair, in logs.
    - "bounded": z_i + scale * e, e with iid Tri(kappa) coordinates on [-1, 1] (kappa = 1: uniform).
      Exactly 0 (log -inf) for a pair whose supports are disjoint in some coordinate; the exact box
      overlap for kappa = 1; a symmetric MC estimate in logs with `mc_samples` draws otherwise.
    - "diag_gaussian": VAE posteriors N(mu, exp(logvar)): importance sampling from p^t q^(1-t) / Z_t
      at each pair's Chernoff point t* with `mc_samples` draws, each pair checked against the
      Bhattacharyya bracket and by its effective sample size.
    - "point": no noise (OVL 1 for identical latents, else 0).
    MC draws come from a CPU generator seeded with `seed`, identical on every rank and shared by
    all pairs. update(latents (B, ...), logvar=None (diag_gaussian only), images=None (B, ...) in
    [-1, 1]): images feed the MSE bound; give them with every update or never.

    compute() (float64 scalars):
    - log10_mean: log10 of the mean OVL over the N (N - 1) ordered pairs, as a log-mean-exp of the
      pairs' logs: finite for Gaussian laws at any separation, -inf only when every pair's overlap
      is exactly 0 (bounded noise with disjoint supports, or distinct points);
    - log10_max, log10_mean_nn: the largest pair overlap, the mean over images of the overlap with
      the most-overlapping other image (log-mean-exp of the row maxima);
    - mean, max, mean_nn: the same in the linear domain (exp of the logs: may underflow to 0);
    - log10_lower_bound_mse, lower_bound_mse: the MSE bound (NaN without images);
    - per_bit: mean 1-D overlap per latent dimension over pairs (linear; N^2 K / 2 erfc / erf, 0.3 s
      at N = 200, K = 384 on one CPU thread: `per_dimension=False` skips it for the Gaussian kinds,
      NaN then; the bounded and point kinds compute it on the way);
    - diag_gaussian only: bc_upper (mean BC, linear), log10_bc_mean (log10 mean BC: the upper end of
      the bracket), log10_bc_lower_mean (log10 mean of 1 - sqrt(1 - BC^2): the lower end), and
      outside_bounds, the fraction of pairs whose estimate lies outside their bracket by more than
      `BRACKET_TOLERANCE`, and low_ess_share, the fraction of pairs whose importance weights have an
      effective sample size (sum w)^2 / sum w^2 below `LOW_ESS` (10): their estimates rest on a
      handful of draws and may read low by decades, which the bracket (|log BC| wide) cannot show
      (a rank-0 warning says so when either is > 0).
    """

    higher_is_better = False
    latent_dim: Tensor  # states (add_state): flattened per-sample sizes
    image_dim: Tensor

    def __init__(
        self,
        kind: OverlapKind,
        scale: float | None = None,
        kappa: float = 1.0,
        mc_samples: int = 256,
        seed: int = 0,
        per_dimension: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"unknown overlap kind {kind!r}: expected one of {', '.join(KINDS)}")
        if kind in ("gaussian", "bounded") and (scale is None or scale <= 0):
            raise ValueError(f"{kind} noise needs a positive scale, got {scale}")
        if kind == "bounded" and kappa < 1:  # the closed forms and the MC ratio assume a unimodal density
            raise ValueError(f"bounded noise needs Tri(kappa) with kappa >= 1 (unimodal), got {kappa}")
        self.kind, self.scale, self.kappa, self.mc_samples, self.seed = kind, scale, kappa, mc_samples, seed
        self.per_dimension = per_dimension
        self.add_per_sample_state("latents", "logvars", "images")
        # flattened per-sample sizes; "max" recovers them on a rank that saw no update
        self.add_state("latent_dim", torch.tensor(0), dist_reduce_fx="max")
        self.add_state("image_dim", torch.tensor(0), dist_reduce_fx="max")

    @classmethod
    def of_law(cls, law, **kwargs: Any) -> PairwiseOverlap:
        """The metric for a `LatentDistribution`'s kind and noise parameters."""
        return cls(law.kind, law.scale, law.kappa, **kwargs)

    def update(self, latents: Tensor, logvar: Tensor | None = None, images: Tensor | None = None) -> None:
        if (logvar is not None) != (self.kind == "diag_gaussian"):
            raise ValueError("logvar is required for diag_gaussian and meaningless for the other kinds")
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
        log_ovl, per_bit, extra = self.pairwise_log_ovl(latents)  # (N, N) with a -inf diagonal, scalar, dict
        num = latents.shape[0]
        nan = latents.new_tensor(float("nan"))
        if num > 1:
            log_mean = log_mean_exp(log_ovl.fill_diagonal_(float("-inf"))) + math.log(num / (num - 1))  # over the N (N - 1) pairs
            log_max = log_ovl.max()
            log_mean_nn = log_mean_exp(log_ovl.max(1).values)
        else:
            log_mean = log_max = log_mean_nn = nan
        log_bound = self._log_lower_bound(log_ovl, num)
        return {
            "mean": log_mean.exp(),
            "max": log_max.exp(),
            "mean_nn": log_mean_nn.exp(),
            "log10_mean": log_mean / LN10,
            "log10_max": log_max / LN10,
            "log10_mean_nn": log_mean_nn / LN10,
            "per_bit": per_bit,
            "lower_bound_mse": log_bound.exp(),
            "log10_lower_bound_mse": log_bound / LN10,
            **extra,
        }

    def pairwise_log_ovl(self, latents: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Gathered latents (N, K) -> (N, N) natural-log OVL (diagonal -inf), per_bit, kind-specific values."""
        if self.kind == "diag_gaussian":
            logvars = self.gathered("logvars").view(latents.shape)  # (N, K)
            return self._diag_gaussian_pairwise(latents, logvars)
        return self._noise_pairwise(latents.double())

    @property
    def _noise_scale(self) -> float:
        """`scale` of the "gaussian" and "bounded" kinds, the only ones that read it."""
        assert self.scale is not None  # cannot fire: __init__ rejects these kinds without a positive scale
        return self.scale

    def _noise_pairwise(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Pair log OVL and per-dimension OVL of the shared-noise kinds. Gaussian pair OVL needs only
        the (N, N) distances; everything else goes over chunks of unordered pairs i < j with
        gap = z_j - z_i (pairs, K), every temporary at ~2^18 elements."""
        num, dims = z.shape
        if self.kind == "gaussian" and not self.per_dimension:
            distances = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")  # (N, N), no cancellation
            log_ovl = isotropic_gaussian_log_ovl(distances, self._noise_scale).fill_diagonal_(float("-inf"))
            return log_ovl, z.new_tensor(float("nan")), {}
        first, second = torch.triu_indices(num, num, offset=1, device=z.device)  # (P,), (P,)
        noise = None
        if self.kind == "bounded" and self.kappa != 1:
            noise = bounded_mc_noise(self.mc_samples, dims, self.kappa, torch.Generator().manual_seed(self.seed)).to(z.device)
        step = pairs_per_chunk(dims, 1)
        log_ovl_pairs, per_dim_sums = [], []
        for start in range(0, first.numel(), step):
            gap = z[second[start : start + step]] - z[first[start : start + step]]  # (p, K)
            log_per_dim = self._per_dimension_log_ovl(gap)  # (p, K)
            per_dim_sums.append(log_per_dim.exp().sum())
            log_ovl_pairs.append(self._pair_log_ovl(gap, log_per_dim, noise))  # (p,)
        log_ovl = _symmetric_matrix(torch.cat(log_ovl_pairs) if log_ovl_pairs else z.new_zeros(0), first, second, num)  # (N, N)
        num_pairs = first.numel()
        per_bit = torch.stack(per_dim_sums).sum() / (num_pairs * dims) if num_pairs else z.new_tensor(float("nan"))
        return log_ovl, per_bit, {}

    def _per_dimension_log_ovl(self, gap: Tensor) -> Tensor:
        """(p, K) gaps -> (p, K) log 1-D overlaps of the noise law along each latent dimension."""
        if self.kind == "gaussian":
            return isotropic_gaussian_log_ovl(gap.abs(), self._noise_scale)
        if self.kind == "bounded":
            return bounded_noise_log_ovl_1d(gap, self._noise_scale, self.kappa)
        return (gap == 0).double().log()  # point: 0 where equal, -inf elsewhere

    def _pair_log_ovl(self, gap: Tensor, log_per_dim: Tensor, noise: Tensor | None) -> Tensor:
        """(p, K) gaps and their 1-D log overlaps -> (p,) log OVL of the K-dimensional laws."""
        if self.kind == "gaussian":  # the problem is 1-D along the gap
            return isotropic_gaussian_log_ovl(gap.square().sum(-1).sqrt(), self._noise_scale)
        if self.kind == "point" or self.kappa == 1:  # product densities constant on their supports
            return log_per_dim.sum(-1)
        log_ovl = gap.new_full((gap.shape[0],), float("-inf"))
        overlapping = (log_per_dim > float("-inf")).all(-1)  # elsewhere the supports are disjoint in some coordinate: exactly 0
        if overlapping.any():
            assert noise is not None  # cannot fire: _noise_pairwise draws it for bounded noise with kappa != 1, the only kind here
            log_ovl[overlapping] = bounded_noise_log_ovl_mc(gap[overlapping], self._noise_scale, self.kappa, noise)
        return log_ovl

    def _diag_gaussian_pairwise(self, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Importance-sampling log OVL, BC bracket, ESS and per-dimension closed-form OVL for every unordered
        pair i < j, in chunks of pairs: the estimate is one (pairs, 2K) @ (2K, M) GEMM
        (`importance_log_ovl_of`), the rest is elementwise over (pairs, K), every temporary ~2^18 elements."""
        num, dims = mu.shape
        images = Gaussians.from_logvar(mu, logvar)  # (N, K) fields, float64
        first, second = torch.triu_indices(num, num, offset=1, device=mu.device)  # (P,), (P,)
        generator = torch.Generator().manual_seed(self.seed)
        features = quadratic_features(mc_noise(self.mc_samples, dims, generator).to(mu.device))  # (M, 2K)
        step = pairs_per_chunk(dims, self.mc_samples)
        estimates, per_dim_sums = [], []
        for start in range(0, first.numel(), step):
            p, q = images.take(first[start : start + step]), images.take(second[start : start + step])  # (p, K) fields
            estimates.append(importance_log_ovl_of(p, q, features))  # (p,) fields
            if self.per_dimension:
                per_dim_sums.append(normal_ovl_1d_of(p, q, PairTerms.of(p, q)).sum())
        nan = images.mu.new_tensor(float("nan"))
        num_pairs = first.numel()
        if not num_pairs:
            empty = _symmetric_matrix(images.mu.new_zeros(0), first, second, num)
            return (
                empty,
                nan,
                {"bc_upper": nan, "log10_bc_mean": nan, "log10_bc_lower_mean": nan, "outside_bounds": nan, "low_ess_share": nan},
            )
        pairs = DiagGaussianLogOverlap(*(torch.cat(field) for field in zip(*estimates, strict=True)))  # (P,) each
        outside = pairs.outside_bounds().double().mean()
        if outside > 0:
            rank_zero_warn(
                f"PairwiseOverlap(diag_gaussian): {outside.item():.2%} of the pairs' overlap estimates lie outside their "
                f"Bhattacharyya bracket (tolerance {BRACKET_TOLERANCE:g} nats x max(1, |log BC|)): raise mc_samples"
            )
        low_ess = pairs.low_ess().double().mean()
        if low_ess > 0:
            rank_zero_warn(
                f"PairwiseOverlap(diag_gaussian): {low_ess.item():.2%} of the pairs' importance weights have an effective "
                f"sample size below {LOW_ESS:g} of {self.mc_samples}: their overlap estimates may read low, raise mc_samples"
            )
        per_bit = torch.stack(per_dim_sums).sum() / (num_pairs * dims) if per_dim_sums else nan
        log_bc_mean = log_mean_exp(pairs.log_bc)
        extra = {
            "bc_upper": log_bc_mean.exp(),
            "log10_bc_mean": log_bc_mean / LN10,
            "log10_bc_lower_mean": log_mean_exp(pairs.log_bc_lower) / LN10,
            "outside_bounds": outside,
            "low_ess_share": low_ess,
        }
        return _symmetric_matrix(pairs.log_ovl, first, second, num), per_bit, extra

    def _log_lower_bound(self, log_ovl: Tensor, num: int) -> Tensor:
        images = self.gathered("images")
        if images.numel() == 0:
            return log_ovl.new_tensor(float("nan"))
        if images.numel() != num * int(self.image_dim):
            raise RuntimeError("images were given with some updates but not others")
        return log_ovl_reconstruction_lower_bound(log_ovl, images.view(num, -1))


def _checked_size(state: Tensor, size: int, what: str) -> Tensor:
    """The flattened per-sample size seen so far (0 = none yet), which every update must repeat."""
    if int(state) not in (0, size):
        raise ValueError(f"{what} size changed between updates: {int(state)} then {size}")
    return torch.full_like(state, size)


def _symmetric_matrix(values: Tensor, first: Tensor, second: Tensor, num: int) -> Tensor:
    """Upper-triangle pair values -> (N, N) symmetric matrix with a -inf diagonal (log 0: a pair is distinct images)."""
    matrix = values.new_full((num, num), float("-inf"))
    matrix[first, second] = values
    matrix[second, first] = values
    return matrix

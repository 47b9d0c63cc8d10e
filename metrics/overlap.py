"""Overlap coefficients (OVL) between per-image latent distributions: the MEPS diagnostic.

OVL(p, q) = integral of min(p, q) = E_p[min(1, q/p)] (Inman & Bradley 1989). MEPS (Zhao & Basu,
arXiv 2506.21731) says that a deterministic decoder can reconstruct every image under latent noise
only if the per-image latent laws barely overlap; the overlaps imply a lower bound on the
reconstruction MSE (`ovl_reconstruction_lower_bound`). The laws measured are the ones the decoder is
trained on (`lightning_modules.model_outputs.LatentDistribution`):
- isotropic Gaussian noise around any latent: closed form 2 Phi(-||z_i - z_j|| / (2 sigma));
- bounded noise with iid Tri(kappa) coordinates of half-width a: exactly 0 when the supports are
  disjoint in some coordinate (|z_ik - z_jk| >= 2a), the closed form prod_k (1 - |dz_k| / (2a)) for
  uniform noise (kappa = 1), a symmetric Monte-Carlo estimate otherwise;
- diagonal Gaussians (VAE posteriors): symmetric Monte Carlo, with Bhattacharyya bounds as a check.
See docs/metrics.md.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from metrics._per_sample import PerSampleMetric
from networks.binarizer import triangular_noise

SQRT2 = math.sqrt(2.0)
LOG10_FLOOR = 1e-300  # log10_mean of an exactly-zero overlap is reported as -300
# MC log-ratios below this (ratios < 1e-304) count as 0: below any reportable overlap, and it keeps
# exp off its slow path for subnormal results (25-120 ns an element instead of ~4)
LOG_RATIO_FLOOR = -700.0


# --------------------------------------------------------------------------------------------
# closed forms


def isotropic_gaussian_ovl(dist: Tensor, sigma: float) -> Tensor:
    """OVL of N(a, s^2 I) and N(b, s^2 I) at ||a - b|| = dist: 2 Phi(-d / (2 s)).

    Written with erfc so that tiny overlaps (1e-45 for well separated codes) keep their digits.
    """
    return torch.erfc(dist.double() / (2 * sigma * SQRT2))


def bounded_noise_ovl_1d(gap: Tensor, half_width: float, kappa: float = 1.0) -> Tensor:
    """OVL of x + a e and x + gap + a e, e ~ Tri(kappa) on [-1, 1]: (1 - |gap| / (2a))_+^kappa.

    Two copies of a symmetric unimodal density cross at the midpoint, so OVL = 2 P(a e > |gap| / 2)
    and P(e > t) = (1 - t)^kappa / 2 for Tri(kappa). kappa = 1 (uniform) gives the overlap of two
    intervals, kappa = 2 the triangular (1 - d / 2a)^2. Needs kappa >= 1 (a unimodal density).
    """
    return (1 - gap.double().abs() / (2 * half_width)).clamp_min(0).pow(kappa)


class _Gaussians(NamedTuple):
    """Rows of diagonal Gaussians (..., K) in float64 with the derived quantities the pair kernels
    share, so that the pairwise metric takes exp / sqrt / reciprocals once per image, not per pair."""

    mu: Tensor
    logvar: Tensor
    var: Tensor
    inv_var: Tensor
    std: Tensor
    logvar_sum: Tensor  # (...): sum_k logvar

    @classmethod
    def from_logvar(cls, mu: Tensor, logvar: Tensor) -> _Gaussians:
        mu, logvar = mu.double(), logvar.double()
        var = logvar.exp()
        return cls(mu, logvar, var, var.reciprocal(), var.sqrt(), logvar.sum(-1))

    @classmethod
    def from_var(cls, mu: Tensor, var: Tensor) -> _Gaussians:
        mu, var = mu.double(), var.double()
        logvar = var.log()
        return cls(mu, logvar, var, var.reciprocal(), var.sqrt(), logvar.sum(-1))

    def take(self, index: Tensor | slice) -> _Gaussians:
        """Rows `index` of every field."""
        return _Gaussians(*(field[index] for field in self))


class _PairTerms(NamedTuple):
    """Elementwise (P, K) differences of paired rows p, q that every pair kernel uses."""

    shift: Tensor  # mu_q - mu_p
    shift_sq: Tensor  # shift^2
    var_gap: Tensor  # var_q - var_p
    log_var_ratio: Tensor  # logvar_q - logvar_p

    @classmethod
    def of(cls, p: _Gaussians, q: _Gaussians) -> _PairTerms:
        shift = q.mu - p.mu
        return cls(shift, shift.square(), q.var - p.var, q.logvar - p.logvar)


def normal_ovl_1d(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor) -> Tensor:
    """Elementwise OVL of two 1-D normals (Inman & Bradley 1989; the algorithm of
    `statistics.NormalDist.overlap`): crossing points of the densities, then CDF differences."""
    mu1, var1, mu2, var2 = torch.broadcast_tensors(mu1, var1, mu2, var2)
    p, q = _Gaussians.from_var(mu1, var1), _Gaussians.from_var(mu2, var2)
    return _normal_ovl_1d(p, q, _PairTerms.of(p, q))


def _normal_ovl_1d(p: _Gaussians, q: _Gaussians, terms: _PairTerms) -> Tensor:
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
    p, q = _Gaussians.from_logvar(mu1, logvar1), _Gaussians.from_logvar(mu2, logvar2)
    bc = _bhattacharyya_coefficient(p, q, _PairTerms.of(p, q))
    return BhattacharyyaBounds(coefficient=bc, lower=-torch.expm1(0.5 * torch.log1p(-bc.square())), upper=bc)


def _bhattacharyya_coefficient(p: _Gaussians, q: _Gaussians, terms: _PairTerms) -> Tensor:
    """exp(-D_B) with S = (var_p + var_q) / 2 written through their sum:
    D_B = 1/4 sum d^2 / (var_p + var_q) + 1/2 [sum ln(var_p + var_q) - K ln 2 - (sum lv_p + sum lv_q) / 2]."""
    var_sum = p.var + q.var  # (..., K)
    dims = var_sum.shape[-1]
    distance = 0.25 * (terms.shift_sq / var_sum).sum(-1) + 0.5 * (
        var_sum.log_().sum(-1) - dims * math.log(2.0) - 0.5 * (p.logvar_sum + q.logvar_sum)
    )  # (...)
    return torch.exp(-distance)


# --------------------------------------------------------------------------------------------
# Monte Carlo


def diag_gaussian_ovl_mc(
    mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor, num_samples: int = 256, generator: torch.Generator | None = None
) -> Tensor:
    """Symmetric MC estimate 0.5 (E_p[min(1, q/p)] + E_q[min(1, p/q)]) for diagonal Gaussians.

    Inputs (P, K) (or broadcastable (..., K)) -> (...). Every term lies in [0, 1], so the standard
    error is at most 0.5 / sqrt(num_samples); overlaps below ~1e-6 come out as 0 (biased low:
    bracket them with `bhattacharyya_diag_gaussian`). The same standard-normal draws (from
    `generator`, on the CPU so that every device and rank agrees) serve every pair, so one pair's
    estimate does not depend on which other pairs share the batch (up to float64 rounding):
    the first distribution samples with noise[0] of `mc_noise`, the second with noise[1].
    Evaluated as GEMMs over chunks of pairs (`_expected_min_ratio`).
    """
    mu1, logvar1, mu2, logvar2 = torch.broadcast_tensors(mu1, logvar1, mu2, logvar2)
    batch_shape, dims = mu1.shape[:-1], mu1.shape[-1]
    noise = mc_noise(num_samples, dims, generator).to(mu1.device)  # (2, M, K)
    features = _mc_features(noise)  # (2, M, 2K)
    first = _Gaussians.from_logvar(mu1.reshape(-1, dims), logvar1.reshape(-1, dims))  # (P, K) fields
    second = _Gaussians.from_logvar(mu2.reshape(-1, dims), logvar2.reshape(-1, dims))
    step = _pairs_per_chunk(dims, num_samples)
    chunks = []
    for start in range(0, first.mu.shape[0], step):
        p, q = first.take(slice(start, start + step)), second.take(slice(start, start + step))
        chunks.append(_symmetric_mc_ovl(p, q, _PairTerms.of(p, q), features))
    return (torch.cat(chunks) if chunks else first.mu.new_zeros(0)).view(batch_shape)


def mc_noise(num_samples: int, dims: int, generator: torch.Generator | None) -> Tensor:
    """(2, M, K) float64 standard normals: one set to sample from each side of a pair."""
    return torch.randn(2, num_samples, dims, generator=generator, dtype=torch.float64)


def _mc_features(noise: Tensor) -> Tensor:
    """(..., M, K) standard normals eps -> (..., M, 2K) [eps^2 / 2, eps]: the draws' side of the MC GEMM."""
    return torch.cat([0.5 * noise.square(), noise], -1)


def _pairs_per_chunk(dims: int, num_samples: int) -> int:
    """Pairs per chunk so that every (pairs, K), (pairs, 2K) or (pairs, M) temporary stays at
    ~2^18 float64s (2 MiB): bounded memory at any N, near-cache elementwise passes, and still a
    GEMM of a few hundred rows."""
    return max(1, 2**18 // max(2 * dims, num_samples, 1))


def _symmetric_mc_ovl(p: _Gaussians, q: _Gaussians, terms: _PairTerms, features: Tensor) -> Tensor:
    """(P, K) rows paired with (P, K) rows, (2, M, 2K) `_mc_features` -> (P,) symmetric MC OVL:
    p samples with features[0], q with features[1]."""
    from_p = _expected_min_ratio(p, q, terms.var_gap, terms.shift, terms.shift_sq, features[0])
    from_q = _expected_min_ratio(q, p, terms.var_gap.neg(), terms.shift.neg(), terms.shift_sq, features[1])
    return from_p.add_(from_q).mul_(0.5)


def _expected_min_ratio(p: _Gaussians, q: _Gaussians, var_gap: Tensor, shift: Tensor, shift_sq: Tensor, features: Tensor) -> Tensor:
    """E_{z~p}[min(1, q(z)/p(z))] at the draws z = mu_p + std_p eps for every pair at once: one GEMM.

    (P, K) rows, var_gap = var_q - var_p, shift = mu_q - mu_p, its square, and (M, 2K) features
    [eps^2 / 2, eps] -> (P,). As z - mu_q = std_p eps - shift, exactly (the 2 pi terms cancel)
        log q(z) - log p(z) = sum_k [ var_gap / var_q eps^2 / 2 + shift std_p / var_q eps ]
                              + 1/2 [ sum lv_p - sum lv_q - sum_k shift^2 / var_q ],
    i.e. (P, 2K) weights @ (2K, M) features + a per-pair offset. Centred on mu_p, no term carries
    mu^2 / var (no cancellation of large terms: rounding stays at the size of the log ratio), and
    identical p and q give exactly 0. The densities themselves are never formed (no underflow).
    """
    dims = shift.shape[-1]
    weights = shift.new_empty(shift.shape[0], 2 * dims)  # (P, 2K)
    torch.mul(var_gap, q.inv_var, out=weights[:, :dims])
    torch.mul(shift, p.std, out=weights[:, dims:]).mul_(q.inv_var)
    offset = (p.logvar_sum - q.logvar_sum - (shift_sq * q.inv_var).sum(-1)).mul_(0.5)  # (P,)
    log_ratio = torch.addmm(offset[:, None], weights, features.T)  # (P, M)
    keep = log_ratio > LOG_RATIO_FLOOR
    return log_ratio.clamp_(LOG_RATIO_FLOOR, 0).exp_().mul_(keep).mean(-1)


def bounded_mc_noise(num_samples: int, dims: int, kappa: float, generator: torch.Generator | None) -> Tensor:
    """(2, M, K) float64 Tri(kappa) draws on (-1, 1): one set to sample from each side of a pair."""
    return triangular_noise((2, num_samples, dims), kappa, dtype=torch.float64, generator=generator)


def bounded_noise_ovl_mc(gap: Tensor, half_width: float, kappa: float, noise: Tensor) -> Tensor:
    """Symmetric MC OVL of z + a e and z + gap + a e, e with iid Tri(kappa) coordinates.

    gap (P, K), noise (2, M, K) from `bounded_mc_noise` -> (P,). With s = gap / a and the unit
    density f(e) = (kappa/2)(1 - |e|)^(kappa - 1), a draw e of the first law has
        q/p = [prod_k (1 - |e_k - s_k|) / (1 - |e_k|)]^(kappa - 1)   (0 off q's support),
    and the second law mirrors it with -s. The product is taken over the ratios, so it neither
    under- nor overflows where the two densities are alike, and the power is applied per draw,
    not per coordinate; elementwise over (P, M, K) in chunks of ~2^22 values.
    """
    shift = gap.double() / half_width  # (P, K)
    num_pairs, (num_samples, dims) = shift.shape[0], noise.shape[1:]
    density = 1 - noise.abs()  # (2, M, K) > 0: Tri draws never reach +-1
    step = max(1, 2**22 // max(num_samples * dims, 1))
    chunks = []
    for start in range(0, num_pairs, step):
        s = shift[start : start + step, None, :]  # (p, 1, K)
        from_p = _bounded_min_ratio(noise[0], density[0], s, kappa)
        from_q = _bounded_min_ratio(noise[1], density[1], -s, kappa)
        chunks.append(from_p.add_(from_q).mul_(0.5))
    return torch.cat(chunks) if chunks else shift.new_zeros(0)


def _bounded_min_ratio(noise: Tensor, density: Tensor, shift: Tensor, kappa: float) -> Tensor:
    """(M, K) unit draws of p and their 1 - |e|, (p, 1, K) shifts of q in units of a -> (p,) E_p[min(1, q/p)]."""
    inside = (noise - shift).abs_().neg_().add_(1).clamp_min_(0)  # (p, M, K) 1 - |e - s|, 0 off q's support
    if kappa == 1:  # uniform: q/p is 1 on q's support
        return (inside > 0).all(-1).double().mean(-1)
    ratio = inside.div_(density).prod(-1).nan_to_num_(nan=0.0)  # (p, M); nan = 0 * inf: a draw off q's support
    return ratio.pow_(kappa - 1).clamp_(max=1).mean(-1)


# --------------------------------------------------------------------------------------------
# the bound on reconstruction error


def ovl_reconstruction_lower_bound(ovl: Tensor, images: Tensor) -> Tensor:
    """Per-pixel MSE lower bound 1/(4 N (N-1)) sum_{i != j} OVL_ij ||x_i - x_j||^2 / D.

    Any deterministic decoder d pays, on a pair, E_{p_i}||d - x_i||^2 + E_{p_j}||d - x_j||^2 >=
    int min(p_i, p_j) (||d - x_i||^2 + ||d - x_j||^2) >= OVL_ij ||x_i - x_j||^2 / 2; summing over the
    ordered pairs gives this bound on the per-pixel MSE (on the scale of `images`, e.g. [-1, 1])
    that the decoder makes on draws from the latent laws (docs/metrics.md).
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

OverlapKind = Literal["gaussian", "bounded", "diag_gaussian", "point"]
KINDS = ("gaussian", "bounded", "diag_gaussian", "point")


class PairwiseOverlap(PerSampleMetric):
    """Pairwise OVL between the per-image latent laws of a gathered evaluation set (N <= a few hundred).

    kind (the `LatentDistribution` kinds):
    - "gaussian": N(z_i, scale^2 I) around any latents (soft tanh latents, or ±1 codes, where it is
      2 Phi(-sqrt(H) / scale) at Hamming distance H); closed form per pair.
    - "bounded": z_i + scale * e, e with iid Tri(kappa) coordinates on [-1, 1] (kappa = 1: uniform).
      Exactly 0 for a pair whose supports are disjoint in some coordinate; the closed-form box
      overlap for kappa = 1; a symmetric MC estimate with `mc_samples` draws otherwise.
    - "diag_gaussian": VAE posteriors N(mu, exp(logvar)), symmetric MC plus the Bhattacharyya bound.
    - "point": no noise (OVL 1 for identical latents, else 0).
    MC draws come from a CPU generator seeded with `seed`, identical on every rank.
    update(latents (B, ...), logvar=None (diag_gaussian only), images=None (B, ...) in [-1, 1]):
    images feed `lower_bound_mse`; give them with every update or never.
    compute() -> mean, max, mean_nn (mean over images of the largest overlap with another image),
    log10_mean, per_bit (mean 1-D overlap per latent dimension over pairs), lower_bound_mse, and
    bc_upper for diag_gaussian. per_bit costs N^2 K / 2 erfc / erf (0.3 s at N = 200, K = 384 on
    one CPU thread, 100x the pair overlaps for Gaussian noise): `per_dimension=False` skips it for
    the Gaussian kinds (it is NaN then); the bounded and point kinds compute it on the way.
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
        return self._noise_pairwise(latents.double())

    @property
    def _noise_scale(self) -> float:
        """`scale` of the "gaussian" and "bounded" kinds, the only ones that read it."""
        assert self.scale is not None  # cannot fire: __init__ rejects these kinds without a positive scale
        return self.scale

    def _noise_pairwise(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Pair OVL and per-dimension OVL of the shared-noise kinds. Gaussian pair OVL needs only
        the (N, N) distances; everything else goes over chunks of unordered pairs i < j with
        gap = z_j - z_i (pairs, K), every temporary at ~2^18 elements."""
        num, dims = z.shape
        if self.kind == "gaussian" and not self.per_dimension:
            distances = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")  # (N, N), no cancellation
            return isotropic_gaussian_ovl(distances, self._noise_scale).fill_diagonal_(0), z.new_tensor(float("nan")), {}
        first, second = torch.triu_indices(num, num, offset=1, device=z.device)  # (P,), (P,)
        noise = None
        if self.kind == "bounded" and self.kappa != 1:
            noise = bounded_mc_noise(self.mc_samples, dims, self.kappa, torch.Generator().manual_seed(self.seed)).to(z.device)
        step = _pairs_per_chunk(dims, 1)
        ovl_pairs, per_dim_sums = [], []
        for start in range(0, first.numel(), step):
            gap = z[second[start : start + step]] - z[first[start : start + step]]  # (p, K)
            per_dim = self._per_dimension_ovl(gap)  # (p, K)
            per_dim_sums.append(per_dim.sum())
            ovl_pairs.append(self._pair_ovl(gap, per_dim, noise))  # (p,)
        ovl = _symmetric_matrix(torch.cat(ovl_pairs) if ovl_pairs else z.new_zeros(0), first, second, num)  # (N, N)
        num_pairs = first.numel()
        per_bit = torch.stack(per_dim_sums).sum() / (num_pairs * dims) if num_pairs else z.new_tensor(float("nan"))
        return ovl, per_bit, {}

    def _per_dimension_ovl(self, gap: Tensor) -> Tensor:
        """(p, K) gaps -> (p, K) 1-D overlaps of the noise law along each latent dimension."""
        if self.kind == "gaussian":
            return isotropic_gaussian_ovl(gap.abs(), self._noise_scale)
        if self.kind == "bounded":
            return bounded_noise_ovl_1d(gap, self._noise_scale, self.kappa)
        return (gap == 0).double()  # point

    def _pair_ovl(self, gap: Tensor, per_dim: Tensor, noise: Tensor | None) -> Tensor:
        """(p, K) gaps and their 1-D overlaps -> (p,) OVL of the K-dimensional laws."""
        if self.kind == "gaussian":  # the problem is 1-D along the gap
            return isotropic_gaussian_ovl(gap.square().sum(-1).sqrt(), self._noise_scale)
        if self.kind == "point" or self.kappa == 1:  # product densities constant on their supports
            return per_dim.prod(-1)
        ovl = gap.new_zeros(gap.shape[0])
        overlapping = (per_dim > 0).all(-1)  # elsewhere the supports are disjoint in some coordinate: exactly 0
        if overlapping.any():
            assert noise is not None  # cannot fire: _noise_pairwise draws it for bounded noise with kappa != 1, the only kind here
            ovl[overlapping] = bounded_noise_ovl_mc(gap[overlapping], self._noise_scale, self.kappa, noise)
        return ovl

    def _diag_gaussian_pairwise(self, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """MC OVL, BC and per-dimension closed-form OVL for every unordered pair i < j, in chunks of
        pairs: the MC part is one (pairs, 2K) @ (2K, M) GEMM per side (`_expected_min_ratio`), the
        closed forms are elementwise over (pairs, K), and every temporary stays at ~2^18 elements.
        Image i of a pair samples with noise[0], image j with noise[1], as in `diag_gaussian_ovl_mc`."""
        num, dims = mu.shape
        images = _Gaussians.from_logvar(mu, logvar)  # (N, K) fields, float64
        first, second = torch.triu_indices(num, num, offset=1, device=mu.device)  # (P,), (P,)
        generator = torch.Generator().manual_seed(self.seed)
        features = _mc_features(mc_noise(self.mc_samples, dims, generator).to(mu.device))  # (2, M, 2K)
        step = _pairs_per_chunk(dims, self.mc_samples)
        ovl_pairs, bc_pairs, per_dim_sums = [], [], []
        for start in range(0, first.numel(), step):
            p, q = images.take(first[start : start + step]), images.take(second[start : start + step])  # (p, K) fields
            terms = _PairTerms.of(p, q)
            ovl_pairs.append(_symmetric_mc_ovl(p, q, terms, features))  # (p,)
            bc_pairs.append(_bhattacharyya_coefficient(p, q, terms))  # (p,)
            if self.per_dimension:
                per_dim_sums.append(_normal_ovl_1d(p, q, terms).sum())
        ovl = _symmetric_matrix(torch.cat(ovl_pairs) if ovl_pairs else images.mu.new_zeros(0), first, second, num)  # (N, N)
        num_pairs = first.numel()
        nan = images.mu.new_tensor(float("nan"))
        per_bit = torch.stack(per_dim_sums).sum() / (num_pairs * dims) if per_dim_sums else nan
        bc_upper = torch.cat(bc_pairs).mean() if num_pairs else nan
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

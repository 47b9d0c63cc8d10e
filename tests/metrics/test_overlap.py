"""Overlap coefficients: closed forms vs stdlib / quadrature / Monte Carlo, bounds, and the PairwiseOverlap metric.

The log domain (tiny overlaps) is tested in test_overlap_log_domain.py, the VAE estimator against
ground truth in test_overlap_validation.py."""

import math
from statistics import NormalDist

import pytest
import torch
from torch.distributions import Normal

import metrics.overlap as overlap_module
import metrics.overlap_importance as importance_module
from metrics.overlap import (
    PairwiseOverlap,
    bhattacharyya_diag_gaussian,
    bounded_mc_noise,
    bounded_noise_ovl_1d,
    bounded_noise_ovl_mc,
    diag_gaussian_log_ovl,
    diag_gaussian_log_ovl_plain_mc,
    isotropic_gaussian_ovl,
    mc_noise,
    normal_ovl_1d,
    ovl_reconstruction_lower_bound,
)

NORMAL_PAIRS = [(0.0, 1.0, 1.0, 2.0), (0.0, 1.0, 1.0, 1.0), (2.0, 0.5, -1.0, 3.0), (0.3, 1.0, 0.3, 1.0), (0.0, 2.0, 0.0, 1.0)]


def log_variance(std):
    return torch.tensor([[2 * math.log(std)]], dtype=torch.float64)


def code_ovl(hamming, sigma):
    """2 Phi(-sqrt(H) / sigma): +-1 codes at Hamming distance H are 2 sqrt(H) apart."""
    return 2 * NormalDist().cdf(-math.sqrt(hamming) / sigma)


def triangular_density(x, half_width, kappa):
    """Density of half_width * Tri(kappa): (kappa / 2a) (1 - |x| / a)^(kappa - 1) on [-a, a]."""
    inside = 1 - (x / half_width).abs()
    return torch.where(inside > 0, (kappa / (2 * half_width)) * inside.clamp_min(0).pow(kappa - 1), 0.0)


def test_closed_forms_known_values():
    assert isotropic_gaussian_ovl(torch.tensor(2.0), 1.0).item() == pytest.approx(NormalDist(0, 1).overlap(NormalDist(2, 1)))
    assert isotropic_gaussian_ovl(2 * torch.tensor(3.0, dtype=torch.float64).sqrt(), 1.0).item() == pytest.approx(
        code_ovl(3, 1.0), rel=1e-12
    )
    tiny = isotropic_gaussian_ovl(torch.tensor(8.0), 0.3).item()  # ~1.5e-40: keeps its digits
    assert tiny == pytest.approx(math.erfc(4 / 0.3 / math.sqrt(2)), rel=1e-10) and tiny < 1e-39
    assert bounded_noise_ovl_1d(torch.tensor([0.0, 0.3, 1.0, 1.5]), 0.5).tolist() == pytest.approx([1.0, 0.7, 0.0, 0.0])


@pytest.mark.parametrize("kappa", [1.0, 2.0, 3.5])
def test_bounded_noise_1d_closed_form_matches_quadrature(kappa):
    grid = torch.linspace(-2, 3, 200_001, dtype=torch.float64)
    for gap in (0.0, 0.2, 0.7, 1.2):
        both = torch.minimum(triangular_density(grid, 0.6, kappa), triangular_density(grid - gap, 0.6, kappa))
        integral = torch.trapezoid(both, grid).item()
        assert bounded_noise_ovl_1d(torch.tensor(gap), 0.6, kappa).item() == pytest.approx(integral, abs=2e-4)


def test_bounded_noise_mc_matches_quadrature_in_two_dimensions():
    """Tri(2) noise in 2-D is not a product of 1-D overlaps: the MC estimate against a grid integral."""
    half_width, gap = 0.5, torch.tensor([0.3, -0.45], dtype=torch.float64)
    axis = torch.linspace(-1, 1.5, 1201, dtype=torch.float64)
    x, y = torch.meshgrid(axis, axis, indexing="ij")
    p = triangular_density(x, half_width, 2) * triangular_density(y, half_width, 2)
    q = triangular_density(x - gap[0], half_width, 2) * triangular_density(y - gap[1], half_width, 2)
    integral = torch.trapezoid(torch.trapezoid(torch.minimum(p, q), axis), axis).item()
    product_of_1d = bounded_noise_ovl_1d(gap, half_width, 2).prod().item()
    assert abs(integral - product_of_1d) > 0.02  # a real test: the shortcut would be wrong
    noise = bounded_mc_noise(200_000, 2, 2.0, torch.Generator().manual_seed(0))
    assert bounded_noise_ovl_mc(gap[None], half_width, 2.0, noise).item() == pytest.approx(integral, abs=0.005)
    uniform = bounded_mc_noise(200_000, 2, 1.0, torch.Generator().manual_seed(1))  # kappa = 1: the box overlap
    assert bounded_noise_ovl_mc(gap[None], half_width, 1.0, uniform).item() == pytest.approx(
        bounded_noise_ovl_1d(gap, half_width).prod().item(), abs=0.005
    )


@pytest.mark.parametrize("mu1,s1,mu2,s2", NORMAL_PAIRS)
def test_normal_ovl_1d_matches_statistics_normaldist(mu1, s1, mu2, s2):
    ours = normal_ovl_1d(torch.tensor(mu1), torch.tensor(s1**2), torch.tensor(mu2), torch.tensor(s2**2))
    assert ours.item() == pytest.approx(NormalDist(mu1, s1).overlap(NormalDist(mu2, s2)), abs=1e-12)


def test_normal_ovl_1d_is_symmetric_and_stable_near_equal_variances():
    """The textbook crossing formula loses ~eps / (dv / var) (1e-7 at dv = 1e-9 var); ours must
    approach the equal-variance value erfc(dm / (2 sqrt2 s)) continuously."""
    relative_gaps = torch.logspace(-13, -3, 41, dtype=torch.float64)
    mu1, var1, mu2 = torch.tensor(0.3, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64), torch.tensor(1.4, dtype=torch.float64)
    near = normal_ovl_1d(mu1, var1, mu2, var1 * (1 + relative_gaps))
    equal = math.erfc(1.1 / (2 * math.sqrt(2 * 1.7)))
    assert normal_ovl_1d(mu1, var1, mu2, var1).item() == pytest.approx(equal, abs=1e-15)
    assert ((near - equal).abs() <= relative_gaps + 1e-14).all()  # |dOVL/d(var2/var1)| < 1 here
    generator = torch.Generator().manual_seed(6)
    mu_a, mu_b = torch.randn(2, 500, generator=generator, dtype=torch.float64) * 2
    var_a, var_b = torch.rand(2, 500, generator=generator, dtype=torch.float64) * 4 + 0.01
    torch.testing.assert_close(normal_ovl_1d(mu_a, var_a, mu_b, var_b), normal_ovl_1d(mu_b, var_b, mu_a, var_a), rtol=0, atol=1e-15)
    for i in range(0, 500, 50):
        expected = NormalDist(mu_a[i].item(), var_a[i].sqrt().item()).overlap(NormalDist(mu_b[i].item(), var_b[i].sqrt().item()))
        assert normal_ovl_1d(mu_a[i], var_a[i], mu_b[i], var_b[i]).item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("mu1,s1,mu2,s2", NORMAL_PAIRS[:3])
def test_importance_estimator_matches_normaldist_in_1d(mu1, s1, mu2, s2):
    generator = torch.Generator().manual_seed(0)
    estimate = diag_gaussian_log_ovl(
        torch.tensor([[mu1]]), log_variance(s1), torch.tensor([[mu2]]), log_variance(s2), num_samples=40_000, generator=generator
    )
    assert estimate.log_ovl.exp().item() == pytest.approx(NormalDist(mu1, s1).overlap(NormalDist(mu2, s2)), abs=0.005)


def test_hamming_closed_form_matches_importance_sampling_on_codes():
    codes = torch.ones(2, 8, dtype=torch.float64)
    codes[1, :3] = -1  # Hamming 3
    sigma = 1.0
    logvar = torch.full_like(codes, 2 * math.log(sigma))
    estimate = diag_gaussian_log_ovl(
        codes[:1], logvar[:1], codes[1:], logvar[1:], num_samples=40_000, generator=torch.Generator().manual_seed(1)
    )
    assert estimate.log_ovl.exp().item() == pytest.approx(code_ovl(3, sigma), rel=0.02)  # 0.0833


def test_importance_identical_is_one_and_far_is_the_closed_form_not_zero():
    for seed in range(20):  # log BC of identical laws rounds to +-1e-16: clamped at 0, so the bracket stays finite
        generator = torch.Generator().manual_seed(seed)
        mu, logvar = (
            torch.randn(3, 16, generator=generator, dtype=torch.float64),
            torch.randn(3, 16, generator=generator, dtype=torch.float64),
        )
        identical = diag_gaussian_log_ovl(mu, logvar, mu, logvar, num_samples=64)
        assert (identical.log_ovl <= 0).all() and (identical.log_ovl > -1e-14).all()  # Delta = 0 exactly, BC = 1 up to rounding
        assert torch.isfinite(identical.log_bc_lower).all() and not identical.outside_bounds().any()
    far = diag_gaussian_log_ovl(mu, logvar, mu + 100, logvar, num_samples=256, generator=torch.Generator().manual_seed(0))
    mahalanobis = (100 / (0.5 * logvar).exp()).square().sum(-1).sqrt()  # equal covariances: log 2 + log Phi(-Delta_M / 2)
    exact = math.log(2) + torch.special.log_ndtr(-mahalanobis / 2)  # ~ -1e5 nats
    assert torch.isfinite(far.log_ovl).all()
    assert ((far.log_ovl - exact).abs() / exact.abs() < 0.05).all()
    assert not far.outside_bounds().any()


def test_bhattacharyya_brackets_the_importance_estimate():
    generator = torch.Generator().manual_seed(2)
    mu1, mu2 = torch.randn(2, 5, 16, generator=generator, dtype=torch.float64) * 0.5
    logvar1, logvar2 = torch.randn(2, 5, 16, generator=generator, dtype=torch.float64) * 0.5
    bounds = bhattacharyya_diag_gaussian(mu1, logvar1, mu2, logvar2)
    estimate = diag_gaussian_log_ovl(mu1, logvar1, mu2, logvar2, num_samples=256, generator=generator)
    assert (bounds.log_lower <= estimate.log_ovl).all() and (estimate.log_ovl <= bounds.log_upper).all()
    assert not estimate.outside_bounds().any()
    torch.testing.assert_close(estimate.log_bc, bounds.log_upper, rtol=0, atol=1e-12)
    torch.testing.assert_close(estimate.log_bc_lower, bounds.log_lower, rtol=0, atol=1e-12)
    assert (bounds.lower < bounds.upper).all()
    torch.testing.assert_close(bounds.lower, -torch.expm1(0.5 * torch.log1p(-bounds.coefficient.square())), rtol=1e-12, atol=0)
    # an estimate outside the bracket is flagged: below 1 - sqrt(1 - BC^2), above BC
    shifted = estimate._replace(log_ovl=bounds.log_lower - 1e-3)
    assert shifted.outside_bounds().all()
    assert estimate._replace(log_ovl=bounds.log_upper + 1e-3).outside_bounds().all()
    # 1-D closed form: sqrt(2 s1 s2 / (s1^2 + s2^2)) exp(-(mu1 - mu2)^2 / (4 (s1^2 + s2^2)))
    one_d = bhattacharyya_diag_gaussian(torch.tensor([0.0]), log_variance(1.0)[0], torch.tensor([1.0]), log_variance(2.0)[0])
    assert one_d.coefficient.item() == pytest.approx(math.sqrt(4 / 5) * math.exp(-1 / 20))


def test_lower_bound_of_full_overlap_is_a_quarter_of_mean_pairwise_distance():
    images = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, -1.0]])
    sq_distances = torch.cdist(images.double(), images.double()).square()
    expected = sq_distances.sum() / (4 * 3 * 2) / 2
    assert ovl_reconstruction_lower_bound(torch.ones(3, 3), images).item() == pytest.approx(expected.item())
    assert ovl_reconstruction_lower_bound(torch.eye(3), images).item() == 0.0


def distinct_codes(num, channels=2, size=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2, (num, channels, size, size), generator=generator).float() * 2 - 1
    codes[:, 0, 0, 0] = torch.arange(num) % 2 * 2 - 1.0  # not all equal
    return torch.unique(codes, dim=0)


def pairs_of(num):
    first, second = torch.triu_indices(num, num, offset=1)
    return first.tolist(), second.tolist()


def test_gaussian_noise_on_codes_is_the_hamming_closed_form():
    codes = distinct_codes(10, seed=1)
    sigma = 0.7
    metric = PairwiseOverlap("gaussian", scale=sigma)
    metric.update(codes[:4])
    metric.update(codes[4:])
    flat = codes.flatten(1)
    hamming = (flat[:, None] != flat[None]).sum(-1)  # (N, N)
    expected = torch.tensor(
        [[code_ovl(int(h), sigma) if i != j else 0.0 for j, h in enumerate(row)] for i, row in enumerate(hamming)], dtype=torch.float64
    )
    off_diagonal = ~torch.eye(len(flat), dtype=torch.bool)
    values = metric.compute()
    assert values["mean"].item() == pytest.approx(expected[off_diagonal].mean().item(), rel=1e-9)
    assert values["max"].item() == pytest.approx(expected[off_diagonal].max().item(), rel=1e-9)
    assert values["mean_nn"].item() == pytest.approx(expected.max(1).values.mean().item(), rel=1e-9)
    fraction_different = hamming[off_diagonal].double().mean().item() / flat.shape[1]  # a differing bit overlaps 2 Phi(-1/sigma)
    assert values["per_bit"].item() == pytest.approx(1 - (1 - 2 * NormalDist().cdf(-1 / sigma)) * fraction_different)
    assert math.isnan(values["lower_bound_mse"].item())


def test_gaussian_noise_on_soft_latents_overlaps_where_codes_do_not():
    """The law the BL-AE trains with: tanh latents near 0 overlap strongly, their signs hardly at all."""
    generator = torch.Generator().manual_seed(2)
    soft = 0.05 * torch.randn(8, 3, 4, 4, generator=generator)
    metric = PairwiseOverlap("gaussian", scale=0.5)
    metric.update(soft)
    values = metric.compute()
    flat = soft.flatten(1).double()
    first, second = pairs_of(8)
    expected = [NormalDist(0, 0.5).overlap(NormalDist((flat[i] - flat[j]).norm().item(), 0.5)) for i, j in zip(first, second, strict=True)]
    assert values["mean"].item() == pytest.approx(sum(expected) / len(expected), rel=1e-9)
    assert values["mean"].item() > 0.3
    codes = PairwiseOverlap("gaussian", scale=0.5)
    codes.update(torch.where(soft > 0, 1.0, -1.0))
    assert codes.compute()["mean"].item() < 1e-4
    cheap = PairwiseOverlap("gaussian", scale=0.5, per_dimension=False)
    cheap.update(soft)
    cheap_values = cheap.compute()
    assert math.isnan(cheap_values["per_bit"].item())
    for key in ("mean", "max", "mean_nn"):
        assert cheap_values[key].item() == pytest.approx(values[key].item(), rel=1e-12), key


def test_gaussian_noise_agrees_with_the_diagonal_monte_carlo():
    generator = torch.Generator().manual_seed(3)
    latents = 0.3 * torch.randn(4, 6, generator=generator, dtype=torch.float64)
    closed = PairwiseOverlap("gaussian", scale=0.4)
    closed.update(latents)
    mc = PairwiseOverlap("diag_gaussian", mc_samples=20_000)
    mc.update(latents, logvar=torch.full_like(latents, 2 * math.log(0.4)))
    assert mc.compute()["mean"].item() == pytest.approx(closed.compute()["mean"].item(), abs=0.01)
    assert mc.compute()["per_bit"].item() == pytest.approx(closed.compute()["per_bit"].item(), abs=1e-9)  # both closed forms


def test_bounded_noise_is_exactly_zero_where_supports_are_disjoint():
    codes = distinct_codes(12)
    metric = PairwiseOverlap("bounded", scale=1.0, kappa=2.0)  # supports [-1, 1] around +-1 codes touch only at 0
    metric.update(codes, images=torch.rand(codes.shape[0], 1, 4, 4) * 2 - 1)
    values = metric.compute()
    assert set(values) == {
        "mean",
        "max",
        "mean_nn",
        "log10_mean",
        "log10_max",
        "log10_mean_nn",
        "per_bit",
        "lower_bound_mse",
        "log10_lower_bound_mse",
    }
    assert values["mean"].item() == 0.0 and values["max"].item() == 0.0 and values["lower_bound_mse"].item() == 0.0
    for key in ("log10_mean", "log10_max", "log10_mean_nn", "log10_lower_bound_mse"):  # exactly 0: log -inf, no floor
        assert values[key].item() == -math.inf, key
    flat = codes.flatten(1)
    mean_hamming = (flat[:, None] != flat[None]).sum(-1).double().sum() / (len(flat) * (len(flat) - 1))
    assert values["per_bit"].item() == pytest.approx(1 - mean_hamming.item() / flat.shape[1])

    one_coordinate_apart = torch.zeros(2, 5, dtype=torch.float64)
    one_coordinate_apart[1, 3] = 0.6  # >= 2a = 0.6: disjoint there, identical elsewhere
    for kappa in (1.0, 2.0):
        apart = PairwiseOverlap("bounded", scale=0.3, kappa=kappa)
        apart.update(one_coordinate_apart)
        assert apart.compute()["mean"].item() == 0.0
        near = PairwiseOverlap("bounded", scale=0.3, kappa=kappa, mc_samples=4000)
        near.update(one_coordinate_apart * 0.5)  # 0.3 apart: the 1-D overlap (1 - 0.3 / 0.6)^kappa
        assert near.compute()["mean"].item() == pytest.approx(0.5**kappa, abs=0.02)


def test_bounded_noise_on_soft_latents_matches_per_pair_estimates():
    generator = torch.Generator().manual_seed(4)
    soft = 0.1 * torch.randn(5, 3, generator=generator, dtype=torch.float64)
    box = PairwiseOverlap("bounded", scale=0.4, kappa=1.0)
    box.update(soft)
    triangle = PairwiseOverlap("bounded", scale=0.4, kappa=2.0, mc_samples=256, seed=7)
    triangle.update(soft)
    first, second = pairs_of(5)
    gaps = soft[second] - soft[first]
    assert box.compute()["mean"].item() == pytest.approx(bounded_noise_ovl_1d(gaps, 0.4).prod(-1).mean().item(), rel=1e-12)
    noise = bounded_mc_noise(256, 3, 2.0, torch.Generator().manual_seed(7))  # the metric's draws
    expected = bounded_noise_ovl_mc(gaps, 0.4, 2.0, noise)
    assert triangle.compute()["mean"].item() == pytest.approx(expected.mean().item(), rel=1e-12)
    assert 0.1 < triangle.compute()["mean"].item() < box.compute()["mean"].item()  # a peaked law overlaps less


def test_point_laws_overlap_only_when_identical():
    latents = torch.tensor([[0.5, -0.2], [0.5, -0.2], [0.5, -0.1]])
    metric = PairwiseOverlap("point")
    metric.update(latents)
    values = metric.compute()
    assert values["mean"].item() == pytest.approx(2 / 6) and values["max"].item() == 1.0


def test_pairwise_diag_gaussian_identical_far_and_reproducible():
    generator = torch.Generator().manual_seed(3)
    mu = torch.randn(1, 4, 2, 2, generator=generator)
    logvar = torch.randn(1, 4, 2, 2, generator=generator) * 0.2
    identical = PairwiseOverlap("diag_gaussian", mc_samples=32)
    identical.update(mu.expand(4, -1, -1, -1), logvar=logvar.expand(4, -1, -1, -1))
    values = identical.compute()
    assert values["mean"].item() == pytest.approx(1.0, abs=1e-12) and values["bc_upper"].item() == pytest.approx(1.0)
    assert values["per_bit"].item() == pytest.approx(1.0)

    spread_mu = torch.randn(6, 16, generator=generator) * 3
    spread_logvar = torch.randn(6, 16, generator=generator) * 0.3 - 2
    first, second = PairwiseOverlap("diag_gaussian", mc_samples=64, seed=5), PairwiseOverlap("diag_gaussian", mc_samples=64, seed=5)
    first.update(spread_mu, logvar=spread_logvar)
    second.update(spread_mu[:2], logvar=spread_logvar[:2])
    second.update(spread_mu[2:], logvar=spread_logvar[2:])
    torch.testing.assert_close(first.compute(), second.compute(), rtol=0, atol=0, equal_nan=True)
    assert first.compute()["mean"].item() < 1e-6 and first.compute()["bc_upper"].item() < 1e-3


def test_pairwise_diag_gaussian_matches_mc_of_each_pair():
    generator = torch.Generator().manual_seed(4)
    mu, logvar = torch.randn(5, 3, generator=generator) * 0.5, torch.randn(5, 3, generator=generator) * 0.3
    metric = PairwiseOverlap("diag_gaussian", mc_samples=20_000, seed=0)
    metric.update(mu, logvar=logvar)
    first, second = torch.triu_indices(5, 5, offset=1)
    bounds = bhattacharyya_diag_gaussian(mu[first], logvar[first], mu[second], logvar[second])
    values = metric.compute()
    assert bounds.lower.mean() - 0.01 <= values["mean"] <= values["bc_upper"] + 0.01
    assert values["bc_upper"].item() == pytest.approx(bounds.upper.mean().item())
    cheap = PairwiseOverlap("diag_gaussian", mc_samples=20_000, seed=0, per_dimension=False)
    cheap.update(mu, logvar=logvar)
    cheap_values = cheap.compute()
    assert math.isnan(cheap_values["per_bit"].item()) and not math.isnan(values["per_bit"].item())
    assert cheap_values["mean"].item() == pytest.approx(values["mean"].item(), rel=1e-12)


def tilted_proposal(mu_p, logvar_p, mu_q, logvar_q, tilt):
    """r_t = p^t q^(1-t) / Z_t per coordinate, straight from the precisions: mean and variance (P, K)."""
    var_p, var_q = logvar_p.exp(), logvar_q.exp()
    t = torch.as_tensor(tilt, dtype=torch.float64).expand(mu_p.shape[:-1])[..., None]
    precision = t / var_p + (1 - t) / var_q
    return (t * mu_p / var_p + (1 - t) * mu_q / var_q) / precision, precision.reciprocal()


def expected_log_density(mean_r, var_r, mu, logvar):
    """E_{x ~ N(mean_r, var_r)}[log N(x; mu, exp(logvar))] summed over coordinates: (P,)."""
    return (-0.5 * (math.log(2 * math.pi) + logvar + ((mean_r - mu).square() + var_r) / logvar.exp())).sum(-1)


def elementwise_mean_delta(mu_p, logvar_p, mu_q, logvar_q, tilt):
    """E_{r_t}[log p - log q] (P,), from the Gaussian r_t's first two moments."""
    mean_r, var_r = tilted_proposal(mu_p, logvar_p, mu_q, logvar_q, tilt)
    return expected_log_density(mean_r, var_r, mu_p, logvar_p) - expected_log_density(mean_r, var_r, mu_q, logvar_q)


def elementwise_importance_log_ovl(mu_p, logvar_p, mu_q, logvar_q, noise, tilt=0.5):
    """The definition, straight: x = m_t + s_t eps (P, M, K) from r_t = p^t q^(1-t) / Z_t, then
    log Z_t + log mean min(exp((1-t) Delta), exp(-t Delta)), Delta = log p(x) - log q(x), with
    log Z_t = E_{r_t}[t log p + (1-t) log q - log r_t] (exact: the integrand is constant in x). At t = 1/2
    Z_t is the textbook BC = exp(-D_B), checked here too."""
    var_p, var_q = logvar_p.exp(), logvar_q.exp()
    mean_r, var_r = tilted_proposal(mu_p, logvar_p, mu_q, logvar_q, tilt)
    t = torch.as_tensor(tilt, dtype=torch.float64).expand(mu_p.shape[:-1])
    x = mean_r[:, None] + var_r.sqrt()[:, None] * noise  # (P, M, K)
    p, q = Normal(mu_p[:, None], var_p.sqrt()[:, None]), Normal(mu_q[:, None], var_q.sqrt()[:, None])
    delta = p.log_prob(x).sum(-1) - q.log_prob(x).sum(-1)  # (P, M)
    entropy = (0.5 * (2 * math.pi * math.e * var_r).log()).sum(-1)
    log_z = (
        t * expected_log_density(mean_r, var_r, mu_p, logvar_p) + (1 - t) * expected_log_density(mean_r, var_r, mu_q, logvar_q) + entropy
    )
    if not torch.is_tensor(tilt) and tilt == 0.5:
        mean_var = (var_p + var_q) / 2
        log_bc = -((mu_p - mu_q).square() / mean_var).sum(-1) / 8 - 0.5 * (mean_var / (var_p * var_q).sqrt()).log().sum(-1)
        torch.testing.assert_close(log_z, log_bc, rtol=1e-12, atol=1e-12)
    t = t[:, None]
    log_w = torch.minimum((1 - t) * delta, -t * delta)
    return log_z + torch.logsumexp(log_w, -1) - math.log(noise.shape[0])


def overlapping_posteriors(num, dims, seed):
    """VAE-like posteriors that overlap partly (OVL ~ 1e-3 .. 1), away from 0 so that an expansion in
    z^2 would cancel, with one exact duplicate (OVL exactly 1)."""
    generator = torch.Generator().manual_seed(seed)
    mu = 3 + 0.4 * torch.randn(num, dims, generator=generator, dtype=torch.float64)
    logvar = torch.randn(num, dims, generator=generator, dtype=torch.float64) * 0.4 - 1
    mu[-1], logvar[-1] = mu[0], logvar[0]
    return mu, logvar


def test_gemm_importance_sampling_matches_the_elementwise_definition_with_the_same_noise(monkeypatch):
    monkeypatch.setattr(overlap_module, "pairs_per_chunk", lambda dims, samples: 7)  # many chunks, ragged last one
    mu, logvar = overlapping_posteriors(num=9, dims=6, seed=7)
    metric = PairwiseOverlap("diag_gaussian", mc_samples=300, seed=11)
    metric.update(mu[:4].float(), logvar=logvar[:4].float())  # float32 states, as the callback feeds them
    metric.update(mu[4:].float(), logvar=logvar[4:].float())
    mu, logvar = mu.float().double(), logvar.float().double()
    values = metric.compute()

    noise = mc_noise(300, 6, torch.Generator().manual_seed(11))  # the metric's draws: seed, then (M, K)
    first, second = torch.triu_indices(9, 9, offset=1)
    tilts = diag_gaussian_log_ovl(mu[first], logvar[first], mu[second], logvar[second], 8).tilt  # each pair's Chernoff point
    expected = elementwise_importance_log_ovl(mu[first], logvar[first], mu[second], logvar[second], noise, tilts)  # (36,)
    assert -7 < expected.min() and expected.max() == 0.0  # a non-trivial set (OVL 1e-3 .. 1), the duplicate included
    log_ovl, _, _ = metric.pairwise_log_ovl(mu)
    torch.testing.assert_close(log_ovl[first, second], expected, rtol=0, atol=1e-11)  # same noise: rounding only
    torch.testing.assert_close(log_ovl, log_ovl.T, rtol=0, atol=0)
    assert values["log10_mean"].item() == pytest.approx(math.log10(expected.exp().mean().item()), abs=1e-11)
    assert values["mean"].item() == pytest.approx(expected.exp().mean().item(), rel=1e-11)
    assert values["max"].item() == 1.0 and values["outside_bounds"].item() == 0.0

    per_bit = sum(
        NormalDist(mu[i, k].item(), logvar[i, k].exp().sqrt().item()).overlap(NormalDist(mu[j, k].item(), logvar[j, k].exp().sqrt().item()))
        for i, j in zip(first.tolist(), second.tolist(), strict=True)
        for k in range(6)
    ) / (36 * 6)
    assert values["per_bit"].item() == pytest.approx(per_bit, abs=1e-12)
    var1, var2 = logvar[first].exp(), logvar[second].exp()
    mean_var = (var1 + var2) / 2
    bc = torch.exp(-((mu[first] - mu[second]).square() / mean_var).sum(-1) / 8 - 0.5 * (mean_var / (var1 * var2).sqrt()).log().sum(-1))
    assert values["bc_upper"].item() == pytest.approx(bc.mean().item(), rel=1e-12)
    assert values["log10_bc_mean"].item() == pytest.approx(math.log10(bc.mean().item()), abs=1e-12)
    lower = 1 - (1 - bc.square()).sqrt()
    assert values["log10_bc_lower_mean"].item() == pytest.approx(math.log10(lower.mean().item()), abs=1e-9)


def test_diag_gaussian_log_ovl_matches_the_elementwise_definition_and_broadcasts(monkeypatch):
    mu, logvar = overlapping_posteriors(num=7, dims=5, seed=8)
    noise = mc_noise(200, 5, torch.Generator().manual_seed(2))
    pairwise = diag_gaussian_log_ovl(mu[:, None], logvar[:, None], mu[None], logvar[None], 200, torch.Generator().manual_seed(2))  # (7, 7)
    first, second = (index.flatten() for index in torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij"))
    tilts = pairwise.tilt.reshape(-1)
    expected = elementwise_importance_log_ovl(mu[first], logvar[first], mu[second], logvar[second], noise, tilts).view(7, 7)
    torch.testing.assert_close(pairwise.log_ovl, expected, rtol=0, atol=1e-11)
    # swapping p and q: t -> 1 - t (to the Newton tolerance) and Delta -> -Delta, the same r_t up to that
    torch.testing.assert_close(pairwise.tilt + pairwise.tilt.T, torch.ones(7, 7, dtype=torch.float64), rtol=0, atol=0.02)
    torch.testing.assert_close(pairwise.log_ovl, pairwise.log_ovl.T, rtol=0, atol=0.05)
    monkeypatch.setattr(importance_module, "pairs_per_chunk", lambda dims, samples: 4)
    chunked = diag_gaussian_log_ovl(mu[:, None], logvar[:, None], mu[None], logvar[None], 200, torch.Generator().manual_seed(2))
    torch.testing.assert_close(chunked.log_ovl, pairwise.log_ovl, rtol=0, atol=1e-14)  # a pair's estimate ignores its chunk-mates
    torch.testing.assert_close(chunked.tilt, pairwise.tilt, rtol=0, atol=0)
    single = diag_gaussian_log_ovl(mu[2], logvar[2], mu[5], logvar[5], 200, torch.Generator().manual_seed(2))
    assert single.log_ovl.shape == () and single.log_ovl.item() == pytest.approx(expected[2, 5].item(), abs=1e-11)


def test_the_chernoff_point_centres_the_proposal_and_minimises_z():
    """t* solves E_{r_t}[Delta] = 0 (to 5 % of sd Delta, checked against the moments of r_t computed
    independently), lies in (0, 1), equals an independent bisection, and Z_t* <= BC."""
    generator = torch.Generator().manual_seed(5)
    mu_p, mu_q = 0.5 * torch.randn(2, 12, 64, generator=generator, dtype=torch.float64)
    logvar_p = -1 + torch.randn(12, 64, generator=generator, dtype=torch.float64)
    logvar_q = logvar_p + torch.empty(12, 64, dtype=torch.float64).uniform_(-3, 3, generator=generator)
    estimate = diag_gaussian_log_ovl(mu_p, logvar_p, mu_q, logvar_q, 64, torch.Generator().manual_seed(0))
    assert ((estimate.tilt > 0) & (estimate.tilt < 1)).all()
    low, high = torch.zeros(12, dtype=torch.float64), torch.ones(12, dtype=torch.float64)
    for _ in range(60):
        middle = (low + high) / 2
        above = elementwise_mean_delta(mu_p, logvar_p, mu_q, logvar_q, middle) > 0
        low, high = torch.where(above, low, middle), torch.where(above, middle, high)
    torch.testing.assert_close(estimate.tilt, (low + high) / 2, rtol=0, atol=5e-3)
    mean = elementwise_mean_delta(mu_p, logvar_p, mu_q, logvar_q, estimate.tilt)
    variance = (
        elementwise_mean_delta(mu_p, logvar_p, mu_q, logvar_q, estimate.tilt + 1e-5)
        - elementwise_mean_delta(mu_p, logvar_p, mu_q, logvar_q, estimate.tilt - 1e-5)
    ) / 2e-5  # d/dt E[Delta] = Var[Delta]
    assert (mean.abs() <= importance_module.CHERNOFF_TOLERANCE * variance.sqrt() + 1e-6).all()
    assert (estimate.log_ovl <= estimate.log_bc).all() and not estimate.outside_bounds().any()
    symmetric = diag_gaussian_log_ovl(mu_p, logvar_p, mu_q, logvar_q, 64, torch.Generator().manual_seed(0), tilt=0.5)
    assert (estimate.ess >= 1).all() and (estimate.ess <= 64).all() and (symmetric.ess >= 1 - 1e-12).all()


def test_equal_variances_give_t_one_half_and_the_earlier_estimator():
    """E_{r_1/2}[Delta] = 0 exactly for equal covariances: t* = 1/2 and the estimate is the t = 1/2
    estimator log BC + log mean exp(-|Delta| / 2), same draws, to rounding."""
    generator = torch.Generator().manual_seed(6)
    mu_p, mu_q = torch.randn(2, 10, 32, generator=generator, dtype=torch.float64)
    logvar = torch.randn(10, 32, generator=generator, dtype=torch.float64) * 0.5
    estimate = diag_gaussian_log_ovl(mu_p, logvar, mu_q, logvar, 128, torch.Generator().manual_seed(3))
    assert (estimate.tilt == 0.5).all()
    noise = mc_noise(128, 32, torch.Generator().manual_seed(3))
    p, q = Normal(mu_p[:, None], (0.5 * logvar).exp()[:, None]), Normal(mu_q[:, None], (0.5 * logvar).exp()[:, None])
    x = (mu_p + mu_q)[:, None] / 2 + (0.5 * logvar).exp()[:, None] * noise  # r_1/2 = N(midpoint, v)
    delta = p.log_prob(x).sum(-1) - q.log_prob(x).sum(-1)
    earlier = estimate.log_bc + torch.logsumexp(-delta.abs() / 2, -1) - math.log(128)
    torch.testing.assert_close(estimate.log_ovl, earlier, rtol=0, atol=1e-11)
    fixed = diag_gaussian_log_ovl(mu_p, logvar, mu_q, logvar, 128, torch.Generator().manual_seed(3), tilt=0.5)
    torch.testing.assert_close(fixed.log_ovl, estimate.log_ovl, rtol=0, atol=1e-12)  # t* path: log Z_t* clamped at log BC


def test_ess_is_the_effective_sample_size_of_the_weights():
    mu, logvar = overlapping_posteriors(num=6, dims=5, seed=10)
    first, second = torch.triu_indices(6, 6, offset=1)
    estimate = diag_gaussian_log_ovl(mu[first], logvar[first], mu[second], logvar[second], 100, torch.Generator().manual_seed(1))
    noise = mc_noise(100, 5, torch.Generator().manual_seed(1))
    mean_r, var_r = tilted_proposal(mu[first], logvar[first], mu[second], logvar[second], estimate.tilt)
    x = mean_r[:, None] + var_r.sqrt()[:, None] * noise
    p = Normal(mu[first][:, None], (0.5 * logvar[first]).exp()[:, None])
    q = Normal(mu[second][:, None], (0.5 * logvar[second]).exp()[:, None])
    delta = p.log_prob(x).sum(-1) - q.log_prob(x).sum(-1)
    t = estimate.tilt[:, None]
    weights = torch.minimum((1 - t) * delta, -t * delta).exp()
    torch.testing.assert_close(estimate.ess, weights.sum(-1).square() / weights.square().sum(-1), rtol=1e-10, atol=0)
    duplicate = (first == 0) & (second == 5)
    assert estimate.ess[duplicate].item() == pytest.approx(100, rel=1e-12)  # identical laws: every weight 1
    assert not estimate.low_ess().any()


def test_low_ess_share_flags_the_pairs_the_t_one_half_proposal_misses(monkeypatch):
    """Same-mean isotropic laws, variance ratio 8 in 384 dims: the Chernoff proposal keeps ESS ~ 30;
    the t = 1/2 proposal has ESS ~ 1 and the metric's low_ess_share says so."""
    dims = 384
    mu = torch.zeros(2, dims)
    logvar = torch.stack([torch.zeros(dims), torch.full((dims,), math.log(8.0))])
    metric = PairwiseOverlap("diag_gaussian", per_dimension=False)
    metric.update(mu, logvar=logvar)
    assert metric.compute()["low_ess_share"].item() == 0.0
    original = importance_module.importance_log_ovl_of
    monkeypatch.setattr(overlap_module, "importance_log_ovl_of", lambda p, q, features: original(p, q, features, 0.5))
    symmetric = PairwiseOverlap("diag_gaussian", per_dimension=False)
    symmetric.update(mu, logvar=logvar)
    with pytest.warns(UserWarning, match="effective sample size"):
        assert symmetric.compute()["low_ess_share"].item() == 1.0


def elementwise_plain_log_ovl(mu_p, logvar_p, mu_q, logvar_q, noise):
    """The replaced estimator's definition: log of 1/2 (E_p[min(1, q/p)] + E_q[min(1, p/q)]) with z = mu + s eps."""

    def log_min_ratio(mu_a, logvar_a, mu_b, logvar_b, eps):
        a = Normal(mu_a[:, None], (0.5 * logvar_a).exp()[:, None])
        b = Normal(mu_b[:, None], (0.5 * logvar_b).exp()[:, None])
        z = a.loc + a.scale * eps  # (P, M, K)
        return torch.logsumexp((b.log_prob(z).sum(-1) - a.log_prob(z).sum(-1)).clamp(max=0), -1) - math.log(eps.shape[0])

    return torch.logaddexp(
        log_min_ratio(mu_p, logvar_p, mu_q, logvar_q, noise[0]), log_min_ratio(mu_q, logvar_q, mu_p, logvar_p, noise[1])
    ) - math.log(2)


def test_plain_mc_comparison_matches_its_definition():
    """The replaced estimator, kept for the validation table: same draws -> the definition, in logs."""
    mu, logvar = overlapping_posteriors(num=6, dims=5, seed=9)
    first, second = torch.triu_indices(6, 6, offset=1)
    noise = torch.randn(2, 300, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    plain = diag_gaussian_log_ovl_plain_mc(mu[first], logvar[first], mu[second], logvar[second], 300, torch.Generator().manual_seed(4))
    expected = elementwise_plain_log_ovl(mu[first], logvar[first], mu[second], logvar[second], noise)
    torch.testing.assert_close(plain, expected, rtol=0, atol=1e-11)


def test_pairwise_argument_errors():
    with pytest.raises(ValueError):
        PairwiseOverlap("gaussian")  # scale missing
    with pytest.raises(ValueError):
        PairwiseOverlap("binary_gaussian", scale=1.0)
    with pytest.raises(ValueError, match="kappa >= 1"):
        PairwiseOverlap("bounded", scale=0.3, kappa=0.5)
    with pytest.raises(ValueError):
        PairwiseOverlap("diag_gaussian").update(torch.zeros(2, 3))  # logvar missing
    metric = PairwiseOverlap("point")
    metric.update(torch.ones(2, 3))
    with pytest.raises(ValueError):
        metric.update(torch.ones(2, 4))  # latent size changed

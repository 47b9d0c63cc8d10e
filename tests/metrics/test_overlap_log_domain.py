"""PairwiseOverlap in the log domain: overlaps far below float64's range keep their value.

References are computed independently in mpmath (arbitrary precision, no underflow): the closed
form 2 Phi(-sqrt(H) / sigma) of +-1 codes at Hamming distance H under Gaussian noise, exact sums
of exp over pairs, the box overlap of uniform noise.
"""

import math

import mpmath
import pytest
import torch

from metrics.overlap import PairwiseOverlap, bounded_mc_noise, bounded_noise_log_ovl_mc, isotropic_gaussian_log_ovl, log_mean_exp

mpmath.mp.dps = 50
BITS = 4000


def log_code_ovl(hamming: int, sigma: float) -> mpmath.mpf:
    """ln of 2 Phi(-sqrt(H) / sigma) = erfc(sqrt(H) / (sigma sqrt 2)), 50 digits."""
    return mpmath.log(mpmath.erfc(mpmath.sqrt(hamming) / (sigma * mpmath.sqrt(2))))


def codes_at_hamming(distances_from_first: list[int], bits: int = BITS) -> torch.Tensor:
    """+-1 codes: the first all +1, code i flips the first distances[i - 1] bits (nested flips)."""
    codes = torch.ones(len(distances_from_first) + 1, bits)
    for row, hamming in enumerate(distances_from_first, start=1):
        codes[row, :hamming] = -1
    return codes


@pytest.mark.parametrize("hamming", [300, 3000])
@pytest.mark.parametrize("per_dimension", [True, False])
def test_codes_hundreds_of_bits_apart_keep_the_closed_form_log_value(hamming, per_dimension):
    """float64 erfc underflows from ~351 bits at noise 0.5: the old metric read 0 (log10 -300) here."""
    metric = PairwiseOverlap("gaussian", scale=0.5, per_dimension=per_dimension)
    metric.update(codes_at_hamming([hamming]))
    values = metric.compute()
    expected = float(log_code_ovl(hamming, 0.5) / mpmath.log(10))  # -262.2 at 300 bits, -2607.9 at 3000
    closed_form = (math.log(2) + torch.special.log_ndtr(torch.tensor(-math.sqrt(hamming) / 0.5, dtype=torch.float64))).item()
    assert closed_form / math.log(10) == pytest.approx(expected, rel=1e-12)
    for key in ("log10_mean", "log10_max", "log10_mean_nn"):  # one pair: all three are its overlap
        assert math.isfinite(values[key].item()), key
        assert values[key].item() == pytest.approx(expected, rel=1e-12), key
    assert values["mean"].item() == (0.0 if hamming == 3000 else pytest.approx(10**expected, rel=1e-9))


def test_the_mean_over_pairs_of_wildly_different_overlaps_is_the_exact_log_sum():
    """Pairs at 3 .. 3000 bits (overlaps 5e-4 .. 1e-2605): the log-mean-exp equals the exact sum."""
    distances = [3, 300, 1000, 3000]
    codes = codes_at_hamming(distances)
    num = codes.shape[0]
    images = torch.linspace(-1, 1, num * 12).view(num, 1, 3, 4).pow(3)
    metric = PairwiseOverlap("gaussian", scale=0.5)
    metric.update(codes[:2], images=images[:2])
    metric.update(codes[2:], images=images[2:])
    values = metric.compute()

    flat = codes.flatten(1)
    pairs = [(i, j) for i in range(num) for j in range(num) if i != j]
    log_pairs = {(i, j): log_code_ovl(int((flat[i] != flat[j]).sum()), 0.5) for i, j in pairs}
    mean = mpmath.fsum(mpmath.exp(v) for v in log_pairs.values()) / len(pairs)
    assert values["log10_mean"].item() == pytest.approx(float(mpmath.log10(mean)), rel=1e-12)
    assert values["log10_max"].item() == pytest.approx(float(max(log_pairs.values()) / mpmath.log(10)), rel=1e-12)
    nearest = [max(v for (i, _), v in log_pairs.items() if i == row) for row in range(num)]
    mean_nn = mpmath.fsum(mpmath.exp(v) for v in nearest) / num
    assert values["log10_mean_nn"].item() == pytest.approx(float(mpmath.log10(mean_nn)), rel=1e-12)

    pixels = images.flatten(1).double()
    bound = mpmath.fsum(mpmath.exp(log_pairs[i, j]) * mpmath.mpf((pixels[i] - pixels[j]).square().sum().item()) for i, j in pairs) / (
        4 * len(pairs) * pixels.shape[1]
    )
    assert values["log10_lower_bound_mse"].item() == pytest.approx(float(mpmath.log10(bound)), rel=1e-10)
    # the tiny pairs change nothing at float64 precision here, but a mean of ONLY tiny pairs is still exact
    far = PairwiseOverlap("gaussian", scale=0.5, per_dimension=False)
    far.update(codes[2:])  # pairwise 700 .. 2700 bits apart
    far_flat = flat[2:]
    far_logs = [log_code_ovl(int((far_flat[i] != far_flat[j]).sum()), 0.5) for i in range(3) for j in range(3) if i != j]
    exact = mpmath.log10(mpmath.fsum(mpmath.exp(v) for v in far_logs) / 6)
    assert far.compute()["log10_mean"].item() == pytest.approx(float(exact), rel=1e-12)


def test_log_mean_exp_and_the_isotropic_log_closed_form():
    values = torch.tensor([-1e4, -5.0, float("-inf"), -700.0], dtype=torch.float64)
    expected = mpmath.log(mpmath.fsum([mpmath.exp(-1e4), mpmath.exp(-5), mpmath.exp(-700)]) / 4)
    assert log_mean_exp(values).item() == pytest.approx(float(expected), rel=1e-14)
    assert log_mean_exp(torch.full((3,), float("-inf"), dtype=torch.float64)).item() == -math.inf
    distances = torch.tensor([0.0, 1.0, 60.0, 600.0], dtype=torch.float64)
    for d, value in zip(distances.tolist(), isotropic_gaussian_log_ovl(distances, 0.7).tolist(), strict=True):
        assert value == pytest.approx(float(mpmath.log(mpmath.erfc(d / (2 * 0.7 * mpmath.sqrt(2))))), rel=1e-12, abs=1e-15)


def test_uniform_noise_overlap_is_the_exact_log_product_and_minus_inf_only_when_disjoint():
    """2000 coordinates each overlapping by half: OVL = 2^-2000 (log10 -602), not 0; one coordinate
    apart by 2a: exactly 0 (-inf)."""
    latents = torch.zeros(3, 2000, dtype=torch.float64)
    latents[1] = 0.3  # |gap| / (2a) = 0.5 with a = 0.3 in every coordinate: 1-D overlap 1/2
    latents[2, 0] = 0.6  # disjoint from 0 in coordinate 0, identical elsewhere
    metric = PairwiseOverlap("bounded", scale=0.3, kappa=1.0)
    metric.update(latents)
    values = metric.compute()
    # pairs (0,1): 2^-2000; (0,2): 0; (1,2): coordinate 0 gap 0.3 -> 1/2, elsewhere 0.3 -> 1/2: 2^-2000
    expected = mpmath.log10(2 * mpmath.mpf(2) ** -2000 * 2 / 6)
    assert values["log10_mean"].item() == pytest.approx(float(expected), rel=1e-12)
    assert values["log10_max"].item() == pytest.approx(-2000 * math.log10(2), rel=1e-12)
    disjoint = PairwiseOverlap("bounded", scale=0.3, kappa=1.0)
    disjoint.update(latents[[0, 2]])
    assert disjoint.compute()["log10_mean"].item() == -math.inf


def test_triangular_noise_monte_carlo_is_finite_in_the_log_domain():
    """Tri(2) in 400 coordinates, every one overlapping: the log estimate is finite (not 0) and
    matches a brute-force log of the same draws; its size sits between the 1-D product bounds."""
    gap = torch.full((1, 400), 0.02, dtype=torch.float64)
    noise = bounded_mc_noise(2000, 400, 2.0, torch.Generator().manual_seed(0))
    log_ovl = bounded_noise_log_ovl_mc(gap, 0.5, 2.0, noise).item()
    assert math.isfinite(log_ovl) and log_ovl < 0
    density = lambda e: (1 - e.abs()).clamp_min(0)  # noqa: E731  Tri(2) up to its constant
    shift = gap / 0.5
    from_p = (density(noise[0] - shift).log() - density(noise[0]).log()).sum(-1).clamp(max=0)
    from_q = (density(noise[1] + shift).log() - density(noise[1]).log()).sum(-1).clamp(max=0)
    brute = math.log(0.5 * (from_p.exp().mean() + from_q.exp().mean()).item())
    assert log_ovl == pytest.approx(brute, rel=1e-10)


def test_points_are_zero_or_minus_inf_in_logs():
    metric = PairwiseOverlap("point")
    metric.update(torch.tensor([[0.5, -0.2], [0.5, -0.2], [0.5, -0.1]]))
    values = metric.compute()
    assert values["log10_mean"].item() == pytest.approx(math.log10(2 / 6)) and values["log10_max"].item() == 0.0
    assert values["log10_mean_nn"].item() == pytest.approx(math.log10(2 / 3))
    apart = PairwiseOverlap("point")
    apart.update(torch.tensor([[0.5], [0.6]]))
    assert apart.compute()["log10_mean"].item() == -math.inf


def test_far_vae_posteriors_give_a_finite_log_overlap_inside_the_bracket():
    """Posteriors whose overlap is ~1e-1000: the old estimator read exactly 0."""
    generator = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 64, generator=generator) * 3
    logvar = torch.randn(6, 64, generator=generator) * 0.3 - 4
    metric = PairwiseOverlap("diag_gaussian", mc_samples=256)
    metric.update(mu, logvar=logvar)
    values = metric.compute()
    assert values["mean"].item() == 0.0  # underflows in the linear domain
    assert -3000 < values["log10_mean"].item() < -100
    assert values["log10_bc_lower_mean"].item() <= values["log10_mean"].item() <= values["log10_bc_mean"].item()
    assert values["outside_bounds"].item() == 0.0
    assert values["log10_max"].item() >= values["log10_mean_nn"].item() >= values["log10_mean"].item()

"""The VAE overlap estimator (importance sampling from p^t q^(1-t) / Z_t at the Chernoff point) against ground truth.

Cases and references live in bench/overlap_validation.py (which prints the table): 1-D and 2-D
unequal-variance pairs against a log-domain grid integral, 384-D pairs with ~1e-2, ~1e-6, ~1e-20
overlaps against exact references (equal covariances: log 2 + log Phi(-Delta_M / 2); isotropic
unequal variances, ratios 1.5 to 50: noncentral chi-square probabilities in mpmath) and against the
same estimator with 100x the draws (general diagonal covariances) or 64x the draws cross-checked by
an independent implementation (per-coordinate log variance ratios uniform on [-3, 3] and [-1, 3]).
The bar, at the callback's 256 draws: |log10 est - log10 true| / |log10 true| <= 5 % for a fixed
seed and for >= 95 % of 50 seeds (overlaps above 0.1, where log10 OVL is near 0 and that ratio is
ill-conditioned: |est / true - 1| <= 5 % instead, over 200 seeds: the one such case, OVL 0.53 in
1-D, has a relative sd of 2.1 % and meets the bar on 97.5 % of seeds 0..199 and 98 % of 1000, but on 47 of seeds 0..49).
The replaced plain Monte Carlo must miss the bar at 1e-6, and the earlier t = 1/2 sampler at
variance ratios 8 and more: the tests can fail.
"""

import pytest
import torch

from bench.overlap_validation import (
    MC_SAMPLES,
    RELATIVE_BAR,
    SEED_SHARE,
    Case,
    bar_errors,
    equal_covariance_log_ovl,
    grid_log_ovl,
    high_dimensional_cases,
    importance_log_ovl,
    independent_chernoff_log_ovl,
    isotropic_unequal_log_ovl,
    log10_estimates,
    low_dimensional_cases,
    median_ess,
    plain_mc_log_ovl,
    relative_errors,
    symmetric_log_ovl,
    within_bracket,
)

SEEDS = range(50)
LINEAR_REGIME_SEEDS = range(200)  # cases with OVL > 0.1 (|est / true - 1| bar): see the module docstring


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return low_dimensional_cases() + high_dimensional_cases()


def test_the_references_agree_with_each_other():
    """The grid converges, and the exact high-dimensional references equal the grid in 1-D / 2-D,
    so each is right where the other can be checked."""
    fine = grid_log_ovl([0.0], [1.0], [10.5], [0.36], 4001)
    assert grid_log_ovl([0.0], [1.0], [10.5], [0.36], 2001) == pytest.approx(fine, abs=2e-3)  # log10 -10.29, nats -23.7
    for dims in (1, 2):
        shift, var_q = 3.0, 2.5
        mu_q = [shift] + [0.0] * (dims - 1)
        grid = grid_log_ovl([0.0] * dims, [1.0] * dims, mu_q, [var_q] * dims, 4001 if dims == 1 else 1501)
        assert isotropic_unequal_log_ovl(shift, 1.0, var_q, dims) == pytest.approx(grid, rel=1e-3)
    logvar = torch.tensor([[0.3, -0.8]], dtype=torch.float64)
    mu_p, mu_q = torch.zeros(1, 2, dtype=torch.float64), torch.tensor([[4.0, -2.5]], dtype=torch.float64)
    grid = grid_log_ovl([0.0, 0.0], logvar.exp()[0].tolist(), mu_q[0].tolist(), logvar.exp()[0].tolist(), 1501)
    assert equal_covariance_log_ovl(mu_p, mu_q, logvar) == pytest.approx(grid, rel=1e-3)


def test_the_cases_span_the_range_the_bar_is_claimed_for(cases):
    by_dims = {case.dims for case in cases}
    assert by_dims == {1, 2, 384}
    high = [case.true_log10 for case in cases if case.dims == 384]
    assert min(high) < -19 and any(-7 < v < -5 for v in high) and max(high) > -2.6  # ~1e-20, ~1e-6, ~1e-2
    assert min(case.true_log10 for case in cases if case.dims <= 2) < -10  # tails ~1e-10 in 1-D and 2-D


def test_importance_sampling_meets_the_bar_at_a_fixed_seed_and_over_seeds(cases):
    for case in cases:
        fixed = log10_estimates(case, importance_log_ovl, MC_SAMPLES, range(1))
        assert bar_errors(case, fixed).item() <= RELATIVE_BAR, (case.name, fixed.item(), case.true_log10)
        over_seeds = log10_estimates(case, importance_log_ovl, MC_SAMPLES, LINEAR_REGIME_SEEDS if case.true_log10 > -1 else SEEDS)
        share = (bar_errors(case, over_seeds) <= RELATIVE_BAR).double().mean().item()
        assert share >= SEED_SHARE, (case.name, share)


def test_every_importance_estimate_lies_in_the_bhattacharyya_bracket(cases):
    for case in cases:
        assert within_bracket(case, MC_SAMPLES, range(10)), case.name


def test_the_plain_monte_carlo_misses_the_bar_at_one_in_a_million(cases):
    """The replaced estimator, same draws count: orders of magnitude low once OVL << 1/M."""
    for case in cases:
        if case.dims == 384 and -7 < case.true_log10 < -5:
            plain = log10_estimates(case, plain_mc_log_ovl, MC_SAMPLES, SEEDS)
            assert relative_errors(case, plain).median().item() > 5 * RELATIVE_BAR, case.name
            assert (relative_errors(case, plain) <= RELATIVE_BAR).double().mean().item() < 0.5, case.name
            assert plain.median().item() < case.true_log10 - 2  # biased low, not just noisy


def isotropic_ratio(case: Case) -> float:
    return (case.logvar_q - case.logvar_p).exp().mean().item()


def test_the_symmetric_sampler_misses_the_bar_at_variance_ratio_8_and_more(cases):
    """The earlier t = 1/2 proposal, same draws count: once one law is 8x (or more) narrower in all 384
    dims its effective sample size is ~1 and it reads decades low, inside the Bhattacharyya bracket."""
    steep = [c for c in cases if "isotropic" in c.name and c.mu_p.shape[-1] == 384 and isotropic_ratio(c) >= 8 - 1e-9]
    assert len(steep) == 3  # ratios 8, 16, 50
    for case in steep:
        symmetric = log10_estimates(case, symmetric_log_ovl, MC_SAMPLES, SEEDS)
        assert (bar_errors(case, symmetric) <= RELATIVE_BAR).double().mean().item() < 0.5, case.name
        assert symmetric.median().item() < case.true_log10 - 4, case.name  # biased low by decades, not just noisy
        assert median_ess(case, MC_SAMPLES, range(10), tilt=0.5) < 2 < 20 < median_ess(case, MC_SAMPLES, range(10)), case.name
        assert within_bracket(case, MC_SAMPLES, range(3)), case.name  # the bracket cannot flag it
    mixed = next(c for c in cases if "U[-1, 3]" in c.name)  # mixed per-coordinate ratios, mostly q wider
    symmetric = log10_estimates(mixed, symmetric_log_ovl, MC_SAMPLES, SEEDS)
    assert (bar_errors(mixed, symmetric) <= RELATIVE_BAR).double().mean().item() < SEED_SHARE


def test_the_mixed_ratio_references_agree_with_an_independent_implementation(cases):
    """No 1-D reduction exists with mixed per-coordinate ratios: the reference (the metric's sampler, 64x
    the draws) must agree with an independently written Chernoff-point sampler, own seed, to 1 %."""
    mixed = [c for c in cases if "mixed" in c.name]
    assert len(mixed) == 2
    for case in mixed:
        independent = independent_chernoff_log_ovl(case.mu_p, case.logvar_p, case.mu_q, case.logvar_q, 64 * MC_SAMPLES, seed=2_000_003)
        assert abs(independent - case.true_log_ovl) / abs(case.true_log_ovl) <= RELATIVE_BAR / 5, case.name


def test_the_bar_can_fail_for_a_wrong_reference(cases):
    """The same comparison flags an estimate against a reference off by a factor 10^(0.1 |log10|)."""
    case = next(c for c in cases if c.dims == 384 and -7 < c.true_log10 < -5)
    wrong = Case(case.name, case.mu_p, case.logvar_p, case.mu_q, case.logvar_q, case.true_log_ovl * 1.1, "wrong")
    estimates = log10_estimates(wrong, importance_log_ovl, MC_SAMPLES, range(10))
    assert (relative_errors(wrong, estimates) > RELATIVE_BAR).all()

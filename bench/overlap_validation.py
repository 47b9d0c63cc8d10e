"""Validation table of the VAE (diagonal Gaussian) overlap estimator against ground truth.

    python -m bench.overlap_validation            # the table (< 2 min on one core)
    python -m bench.overlap_validation --seeds 20 # fewer seeds, faster

For each case, a pair of diagonal Gaussians p, q with a reference log10 OVL obtained without Monte
Carlo where possible:
- 1-D and 2-D, unequal variances: numerical integration of min(p, q) in the log domain on a fine
  grid (`grid_log_ovl`: logsumexp of min(log p, log q) + log trapezoid weights; the grid is checked
  against one of half the resolution);
- K = 384, equal diagonal covariances: exact, log 2 + log Phi(-Delta_M / 2), Delta_M the
  Mahalanobis distance (`equal_covariance_log_ovl`);
- K = 384, isotropic unequal variances v_p < v_q with a shift d: exact up to arbitrary-precision
  arithmetic. {p > q} is a ball, so OVL = P_q(ball) + P_p(outside the ball), two noncentral
  chi-square probabilities with K degrees of freedom, summed as Poisson mixtures of regularized
  incomplete gamma functions in mpmath (`isotropic_unequal_log_ovl`);
- K = 384, general diagonal covariances: the same importance sampler with 100x the draws (64x for
  the mixed-ratio case) and an independent seed (`importance_reference`), the only Monte-Carlo
  reference. For the mixed-ratio case (per-coordinate log variance ratios uniform on [-3, 3], where
  no 1-D reduction exists) it is also checked against an independent implementation of the
  Chernoff-point sampler (`independent_chernoff_log_ovl`: bisection on E_{r_t}[Delta] from the
  moments of r_t, densities evaluated directly, log Z_t = E_{r_t}[t log p + (1-t) log q - log r_t]).
Estimates: the metric's importance sampler at each pair's Chernoff point (`diag_gaussian_log_ovl`),
the earlier sampler at t = 1/2 (`diag_gaussian_log_ovl(..., tilt=0.5)`) and the replaced plain MC
(`diag_gaussian_log_ovl_plain_mc`), all with `mc_samples` draws (the callback's 256) over
`seeds` generator seeds: median and 5-95 % of log10 OVL, the median error (`bar_errors`:
|log10 est - log10 true| / |log10 true|, or |est / true - 1| for an overlap above 0.1), the fraction of
seeds within the 5 % bar, the median effective sample size of the weights, and whether every
importance estimate lies in the Bhattacharyya bracket. tests/metrics/test_overlap_validation.py
asserts the bar on these cases.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import torch
from torch import Tensor

from metrics.overlap import diag_gaussian_log_ovl, diag_gaussian_log_ovl_plain_mc

LN10 = math.log(10.0)
DIMS = 384
MC_SAMPLES = 256  # the callback's mc_samples
REFERENCE_FACTOR = 100  # draws of the importance reference, relative to MC_SAMPLES
MIXED_REFERENCE_FACTOR = 64  # the same for the mixed-ratio case, cross-checked by `independent_chernoff_log_ovl`
RELATIVE_BAR = 0.05  # |log10 est - log10 true| / |log10 true|
SEED_SHARE = 0.95  # of the seeds within the bar


@dataclass(frozen=True)
class Case:
    """A pair of diagonal Gaussians (1, K) float64 and its reference natural-log OVL."""

    name: str
    mu_p: Tensor
    logvar_p: Tensor
    mu_q: Tensor
    logvar_q: Tensor
    true_log_ovl: float
    reference: str

    @property
    def dims(self) -> int:
        return self.mu_p.shape[-1]

    @property
    def true_log10(self) -> float:
        return self.true_log_ovl / LN10


# --------------------------------------------------------------------------------------------
# references


def _log_density(x: Tensor, mu: float, var: float) -> Tensor:
    return -0.5 * (math.log(2 * math.pi * var) + (x - mu) ** 2 / var)


def grid_log_ovl(mu_p: list[float], var_p: list[float], mu_q: list[float], var_q: list[float], points: int) -> float:
    """log integral min(p, q) for 1-D or 2-D diagonal Gaussians: the trapezoid rule on a grid of
    `points` per axis over the means +- 14 of the largest std, in logs (no underflow at 1e-300)."""
    axes, log_weights = [], []
    for k in range(len(mu_p)):
        spread = 14 * math.sqrt(max(var_p[k], var_q[k]))
        axis = torch.linspace(min(mu_p[k], mu_q[k]) - spread, max(mu_p[k], mu_q[k]) + spread, points, dtype=torch.float64)
        weight = torch.full_like(axis, (axis[1] - axis[0]).item())
        weight[[0, -1]] *= 0.5
        axes.append(axis)
        log_weights.append(weight.log())
    grids = torch.meshgrid(*axes, indexing="ij")
    log_p = sum(_log_density(g, m, v) for g, m, v in zip(grids, mu_p, var_p, strict=True))
    log_q = sum(_log_density(g, m, v) for g, m, v in zip(grids, mu_q, var_q, strict=True))
    log_w = sum(torch.meshgrid(*log_weights, indexing="ij"))
    assert isinstance(log_p, Tensor) and isinstance(log_q, Tensor) and isinstance(log_w, Tensor)  # sums of >= 1 tensors
    return torch.logsumexp((torch.minimum(log_p, log_q) + log_w).reshape(-1), 0).item()


def equal_covariance_log_ovl(mu_p: Tensor, mu_q: Tensor, logvar: Tensor) -> float:
    """Exact log OVL of N(mu_p, S) and N(mu_q, S), S diagonal: log 2 + log Phi(-Delta_M / 2)."""
    mahalanobis = ((mu_q - mu_p).double().square() / logvar.double().exp()).sum().sqrt()
    return (math.log(2) + torch.special.log_ndtr(-mahalanobis / 2)).item()


def _noncentral_chi2_probability(x: mpmath.mpf, dims: int, noncentrality: mpmath.mpf, upper: bool) -> mpmath.mpf:
    """P(X < x) (or P(X > x) if upper), X noncentral chi-square: the Poisson(lambda/2) mixture of
    central chi-squares with dims + 2j degrees of freedom, summed from j = 0 (every term >= 0)."""
    half = noncentrality / 2
    terms = int(float(half) + 30 * math.sqrt(float(half) + 1) + 60)
    total, log_weight = mpmath.mpf(0), -half
    for j in range(terms):
        shape = mpmath.mpf(dims) / 2 + j
        tail = mpmath.gammainc(shape, x / 2, mpmath.inf, regularized=True) if upper else mpmath.gammainc(shape, 0, x / 2, regularized=True)
        total += mpmath.exp(log_weight) * tail
        if half == 0:
            break
        log_weight += mpmath.log(half) - mpmath.log(j + 1)
    return total


def isotropic_unequal_log_ovl(shift: float, var_p: float, var_q: float, dims: int) -> float:
    """Exact log OVL of N(0, v_p I) and N(delta, v_q I), ||delta|| = shift, v_p < v_q, in `dims` dims.

    With a = 1/v_p - 1/v_q and L = log(v_q / v_p), p > q exactly on the ball ||x - c||^2 < R^2,
    c = -delta / (a v_q), R^2 = (dims L + d^2 / v_q + d^2 / (a v_q^2)) / a. So
    OVL = P_q(ball) + P_p(not ball) = F(R^2 / v_q; dims, ||delta - c||^2 / v_q) + S(R^2 / v_p; dims, ||c||^2 / v_p),
    F / S the noncentral chi-square CDF / survival function (40 digits, mpmath).
    """
    if not var_p < var_q:
        raise ValueError("needs var_p < var_q")
    with mpmath.workdps(40):
        vp, vq, d = mpmath.mpf(var_p), mpmath.mpf(var_q), mpmath.mpf(shift)
        a = 1 / vp - 1 / vq
        radius_sq = (dims * mpmath.log(vq / vp) + d**2 / vq + d**2 / (a * vq**2)) / a
        centre = d / (a * vq)  # ||c||, on the far side of 0 from delta
        inside_under_q = _noncentral_chi2_probability(radius_sq / vq, dims, (d + centre) ** 2 / vq, upper=False)
        outside_under_p = _noncentral_chi2_probability(radius_sq / vp, dims, centre**2 / vp, upper=True)
        return float(mpmath.log(inside_under_q + outside_under_p))


def importance_reference(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor, num_samples: int, seed: int) -> float:
    """The importance sampler with many draws (`num_samples`) and its own seed."""
    return diag_gaussian_log_ovl(mu_p, logvar_p, mu_q, logvar_q, num_samples, torch.Generator().manual_seed(seed)).log_ovl.item()


def independent_chernoff_log_ovl(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor, num_samples: int, seed: int) -> float:
    """log OVL of one pair (1, K) by importance sampling from r_t = p^t q^(1-t) / Z_t at the Chernoff
    point, written without the metric's code: t* by 60 bisection steps on E_{r_t}[log p - log q]
    (Gaussian moments of r_t), draws x from r_t, log p(x) - log q(x) from the densities directly,
    log Z_t = E_{r_t}[t log p + (1-t) log q - log r_t] (exact: constant in x for the tilted law)."""
    var_p, var_q = logvar_p.double().exp()[0], logvar_q.double().exp()[0]
    mp, mq = mu_p.double()[0], mu_q.double()[0]

    def proposal(t: float) -> tuple[Tensor, Tensor]:
        precision = t / var_p + (1 - t) / var_q
        return (t * mp / var_p + (1 - t) * mq / var_q) / precision, 1 / precision

    def expected_log(mean: Tensor, var: Tensor, mu: Tensor, v: Tensor) -> Tensor:
        return (-0.5 * (torch.log(2 * math.pi * v) + ((mean - mu) ** 2 + var) / v)).sum()

    low, high = 0.0, 1.0
    for _ in range(60):
        t = (low + high) / 2
        mean, var = proposal(t)
        if (expected_log(mean, var, mp, var_p) - expected_log(mean, var, mq, var_q)).item() > 0:
            high = t
        else:
            low = t
    t = (low + high) / 2
    mean, var = proposal(t)
    entropy = (0.5 * torch.log(2 * math.pi * math.e * var)).sum()
    log_z = t * expected_log(mean, var, mp, var_p) + (1 - t) * expected_log(mean, var, mq, var_q) + entropy
    generator = torch.Generator().manual_seed(seed)
    x = mean + var.sqrt() * torch.randn(num_samples, mp.shape[0], generator=generator, dtype=torch.float64)
    delta = (-0.5 * (torch.log(var_p) + (x - mp) ** 2 / var_p)).sum(-1) - (-0.5 * (torch.log(var_q) + (x - mq) ** 2 / var_q)).sum(-1)
    log_w = torch.minimum((1 - t) * delta, -t * delta)
    return (log_z + torch.logsumexp(log_w, 0) - math.log(num_samples)).item()


# --------------------------------------------------------------------------------------------
# cases


def _row(values: list[float]) -> Tensor:
    return torch.tensor([values], dtype=torch.float64)


def low_dimensional_cases(points: int = 4001) -> list[Case]:
    """1-D and 2-D unequal-variance pairs from strong overlap to ~1e-10, referenced by the log-domain grid."""
    specs = [  # name, mu_p, var_p, mu_q, var_q
        ("1-D unequal var, overlapping", [0.0], [1.0], [1.5], [2.25]),
        ("1-D unequal var, ~1e-2", [0.0], [1.0], [5.0], [0.64]),
        ("1-D unequal var, ~1e-5", [0.0], [1.0], [8.0], [0.49]),
        ("1-D unequal var, tail ~1e-10", [0.0], [1.0], [10.5], [0.36]),
        ("2-D unequal var, ~1e-2", [0.0, 0.0], [1.0, 0.25], [3.0, 1.5], [2.25, 0.64]),
        ("2-D unequal var, tail ~1e-10", [0.0, 0.0], [1.0, 0.25], [10.0, 4.0], [0.49, 0.64]),
    ]
    cases = []
    for name, mu_p, var_p, mu_q, var_q in specs:
        fine = grid_log_ovl(mu_p, var_p, mu_q, var_q, points if len(mu_p) == 1 else 2001)
        cases.append(
            Case(
                name,
                _row(mu_p),
                _row([math.log(v) for v in var_p]),
                _row(mu_q),
                _row([math.log(v) for v in var_q]),
                fine,
                "log-domain grid integral",
            )
        )
    return cases


def equal_covariance_case(name: str, target_log10: float, seed: int, dims: int = DIMS) -> Case:
    """K-dim pair with one random diagonal covariance and a random shift scaled so that the exact
    overlap is 10^target_log10."""
    generator = torch.Generator().manual_seed(seed)
    logvar = -1 + 0.5 * torch.randn(1, dims, generator=generator, dtype=torch.float64)
    mu_p = torch.randn(1, dims, generator=generator, dtype=torch.float64)
    direction = torch.randn(1, dims, generator=generator, dtype=torch.float64) * (0.5 * logvar).exp()
    direction /= (direction.square() / logvar.exp()).sum().sqrt()  # unit Mahalanobis length
    # 2 Phi(-Delta / 2) = 10^target: Delta = -2 Phi^-1(10^target / 2)
    mahalanobis = -2 * torch.special.ndtri(torch.tensor(10.0**target_log10 / 2, dtype=torch.float64)).item()
    mu_q = mu_p + mahalanobis * direction
    return Case(name, mu_p, logvar, mu_q, logvar, equal_covariance_log_ovl(mu_p, mu_q, logvar), "exact: log 2 + log Phi(-Delta_M/2)")


def isotropic_unequal_case(name: str, shift: float, var_q: float, seed: int, dims: int = DIMS) -> Case:
    """N(m, I) and N(m + shift u, var_q I), u a random unit vector: the noncentral chi-square reference."""
    generator = torch.Generator().manual_seed(seed)
    mu_p = torch.randn(1, dims, generator=generator, dtype=torch.float64)
    direction = torch.randn(1, dims, generator=generator, dtype=torch.float64)
    mu_q = mu_p + shift * direction / direction.norm()
    logvar_p, logvar_q = torch.zeros(1, dims, dtype=torch.float64), torch.full((1, dims), math.log(var_q), dtype=torch.float64)
    true = isotropic_unequal_log_ovl(shift, 1.0, var_q, dims)
    return Case(name, mu_p, logvar_p, mu_q, logvar_q, true, "exact: noncentral chi-square (mpmath)")


def diagonal_unequal_case(name: str, scale: float, seed: int, reference_samples: int, dims: int = DIMS) -> Case:
    """Independent random diagonal covariances (log-variances -1 +- 0.3) and a random shift times `scale`:
    no closed form, the reference is the importance sampler with `reference_samples` draws."""
    generator = torch.Generator().manual_seed(seed)
    logvar_p = -1 + 0.3 * torch.randn(1, dims, generator=generator, dtype=torch.float64)
    logvar_q = -1 + 0.3 * torch.randn(1, dims, generator=generator, dtype=torch.float64)
    mu_p = torch.randn(1, dims, generator=generator, dtype=torch.float64)
    mu_q = mu_p + scale * torch.randn(1, dims, generator=generator, dtype=torch.float64)
    true = importance_reference(mu_p, logvar_p, mu_q, logvar_q, reference_samples, seed=1_000_003)
    return Case(name, mu_p, logvar_p, mu_q, logvar_q, true, f"importance sampling, {reference_samples} draws")


def mixed_ratio_case(
    name: str, ratio_range: tuple[float, float], scale: float, seed: int, reference_samples: int, dims: int = DIMS
) -> Case:
    """Per-coordinate log variance ratios log(v_q / v_p) uniform on `ratio_range` ([-3, 3]: each law
    narrower than the other in about half the coordinates, by up to e^3 = 20x; [-1, 3]: q mostly the
    wider, where t* is far from 1/2), log v_p = -1 +- 0.5, and a shift of `scale` std_p per
    coordinate: the reference is the importance sampler with `reference_samples` draws."""
    generator = torch.Generator().manual_seed(seed)
    logvar_p = -1 + 0.5 * torch.randn(1, dims, generator=generator, dtype=torch.float64)
    logvar_q = logvar_p + torch.empty(1, dims, dtype=torch.float64).uniform_(*ratio_range, generator=generator)
    mu_p = torch.randn(1, dims, generator=generator, dtype=torch.float64)
    mu_q = mu_p + scale * (0.5 * logvar_p).exp() * torch.randn(1, dims, generator=generator, dtype=torch.float64)
    true = importance_reference(mu_p, logvar_p, mu_q, logvar_q, reference_samples, seed=1_000_033)
    return Case(name, mu_p, logvar_p, mu_q, logvar_q, true, f"importance sampling, {reference_samples} draws")


def high_dimensional_cases(reference_samples: int = REFERENCE_FACTOR * MC_SAMPLES) -> list[Case]:
    """K = 384 pairs whose true overlap is ~1e-2, ~1e-6 and ~1e-20 for each kind of reference."""
    return [
        equal_covariance_case(f"{DIMS}-D equal diag cov, 1e-2", -2.0, seed=1),
        equal_covariance_case(f"{DIMS}-D equal diag cov, 1e-6", -6.0, seed=2),
        equal_covariance_case(f"{DIMS}-D equal diag cov, 1e-20", -20.0, seed=3),
        isotropic_unequal_case(f"{DIMS}-D isotropic var 1 vs 1.5", 0.0, 1.5, seed=4),
        isotropic_unequal_case(f"{DIMS}-D isotropic var 1 vs 1.5, shift 6", 6.0, 1.5, seed=5),
        isotropic_unequal_case(f"{DIMS}-D isotropic var 1 vs 2", 0.0, 2.0, seed=6),
        isotropic_unequal_case(f"{DIMS}-D isotropic var 1 vs 4", 0.0, 4.0, seed=7),
        isotropic_unequal_case(f"{DIMS}-D isotropic var 1 vs 8", 0.0, 8.0, seed=11),
        isotropic_unequal_case(f"{DIMS}-D isotropic var 1 vs 16", 0.0, 16.0, seed=12),
        isotropic_unequal_case(f"{DIMS}-D isotropic var 1 vs 50", 0.0, 50.0, seed=13),
        diagonal_unequal_case(f"{DIMS}-D unequal diag cov, ~1e-2", 0.0, seed=8, reference_samples=reference_samples),
        diagonal_unequal_case(f"{DIMS}-D unequal diag cov, ~1e-6", 0.26, seed=9, reference_samples=reference_samples),
        diagonal_unequal_case(f"{DIMS}-D unequal diag cov, ~1e-20", 0.57, seed=10, reference_samples=reference_samples),
        *(
            mixed_ratio_case(
                f"{DIMS}-D mixed log var ratios U[{low:g}, {high:g}]",
                (low, high),
                0.0,
                seed=seed,
                reference_samples=reference_samples * MIXED_REFERENCE_FACTOR // REFERENCE_FACTOR,
            )
            for low, high, seed in ((-3.0, 3.0, 14), (-1.0, 3.0, 15))
        ),
    ]


# --------------------------------------------------------------------------------------------
# estimates over seeds

Estimator = Callable[..., Tensor]


def importance_log_ovl(case: Case, num_samples: int, generator: torch.Generator) -> Tensor:
    return diag_gaussian_log_ovl(case.mu_p, case.logvar_p, case.mu_q, case.logvar_q, num_samples, generator).log_ovl


def symmetric_log_ovl(case: Case, num_samples: int, generator: torch.Generator) -> Tensor:
    """The earlier importance sampler: r = sqrt(pq) / BC (t = 1/2) for every pair."""
    return diag_gaussian_log_ovl(case.mu_p, case.logvar_p, case.mu_q, case.logvar_q, num_samples, generator, tilt=0.5).log_ovl


def median_ess(case: Case, num_samples: int, seeds: range, tilt: float | None = None) -> float:
    """Median over `seeds` of the effective sample size (sum w)^2 / sum w^2 of the importance weights."""
    return (
        torch.tensor(
            [
                diag_gaussian_log_ovl(
                    case.mu_p, case.logvar_p, case.mu_q, case.logvar_q, num_samples, torch.Generator().manual_seed(s), tilt
                ).ess.item()
                for s in seeds
            ]
        )
        .median()
        .item()
    )


def plain_mc_log_ovl(case: Case, num_samples: int, generator: torch.Generator) -> Tensor:
    return diag_gaussian_log_ovl_plain_mc(case.mu_p, case.logvar_p, case.mu_q, case.logvar_q, num_samples, generator)


def log10_estimates(case: Case, estimator: Estimator, num_samples: int, seeds: range) -> Tensor:
    """(len(seeds),) log10 OVL estimates, one per generator seed."""
    return torch.tensor([estimator(case, num_samples, torch.Generator().manual_seed(seed)).item() / LN10 for seed in seeds])


def relative_errors(case: Case, log10_values: Tensor) -> Tensor:
    """|log10 est - log10 true| / |log10 true| (inf for a -inf estimate)."""
    return (log10_values - case.true_log10).abs() / abs(case.true_log10)


def bar_errors(case: Case, log10_values: Tensor) -> Tensor:
    """The error the 5 % bar applies to: `relative_errors`, except for overlaps above 0.1, whose log10 is
    near 0 (that ratio is ill-conditioned there): |est / true - 1| instead."""
    if case.true_log10 > -1:
        return (log10_values * LN10 - case.true_log_ovl).exp().sub(1).abs()
    return relative_errors(case, log10_values)


def within_bracket(case: Case, num_samples: int, seeds: range) -> bool:
    """Every importance estimate over `seeds` inside its Bhattacharyya bracket (within the tolerance)."""
    return not any(
        diag_gaussian_log_ovl(case.mu_p, case.logvar_p, case.mu_q, case.logvar_q, num_samples, torch.Generator().manual_seed(seed))
        .outside_bounds()
        .any()
        for seed in seeds
    )


def table(cases: list[Case], num_samples: int, seeds: range) -> list[str]:
    header = (
        "| case | K | true log10 OVL | reference | IS median [5 %, 95 %] | IS error (median) | IS seeds within 5 % | IS ESS | "
        "t = 1/2 median [5 %, 95 %] | t = 1/2 error | t = 1/2 within 5 % | t = 1/2 ESS | "
        "plain MC median [5 %, 95 %] | plain error (median) | plain seeds within 5 % | IS in BC bracket |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for case in cases:
        row = [case.name, str(case.dims), f"{case.true_log10:.3f}", case.reference]
        for estimator, tilt in ((importance_log_ovl, None), (symmetric_log_ovl, 0.5), (plain_mc_log_ovl, None)):
            values = log10_estimates(case, estimator, num_samples, seeds)
            errors = bar_errors(case, values)
            quantiles = values.quantile(torch.tensor([0.05, 0.5, 0.95], dtype=values.dtype))
            row += [
                f"{quantiles[1]:.3f} [{quantiles[0]:.3f}, {quantiles[2]:.3f}]",
                f"{errors.median():.1%}",
                f"{(errors <= RELATIVE_BAR).double().mean():.0%}",
            ]
            if estimator is not plain_mc_log_ovl:
                row.append(f"{median_ess(case, num_samples, seeds, tilt):.1f}")
        row.append("yes" if within_bracket(case, num_samples, seeds) else "NO")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50, help="generator seeds per case (default 50)")
    parser.add_argument("--samples", type=int, default=MC_SAMPLES, help=f"draws per estimate (default {MC_SAMPLES}, the callback's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    cases = low_dimensional_cases() + high_dimensional_cases()
    draws = MIXED_REFERENCE_FACTOR * MC_SAMPLES
    mixed = [case for case in cases if "mixed" in case.name]
    independent = [independent_chernoff_log_ovl(c.mu_p, c.logvar_p, c.mu_q, c.logvar_q, draws, seed=2_000_003) for c in mixed]
    lines = table(cases, args.samples, range(args.seeds))
    print(
        f"Overlap estimator validation: M = {args.samples} draws, {args.seeds} seeds; error |dlog10| / |log10 true| "
        f"(|est / true - 1| where true OVL > 0.1), bar {RELATIVE_BAR:.0%}"
    )
    print("\n".join(lines))
    for case, value in zip(mixed, independent, strict=True):
        print(
            f"{case.name}: reference (the metric's sampler, {draws} draws) log10 {case.true_log10:.3f}; "
            f"independent Chernoff sampler ({draws} draws, own seed) {value / LN10:.3f}"
        )
    print(f"({time.perf_counter() - start:.0f} s on {torch.get_num_threads()} thread)")


if __name__ == "__main__":
    main()

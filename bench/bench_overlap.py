"""PairwiseOverlap("diag_gaussian") compute(): GEMM importance sampling vs the elementwise (pairs, M, K) estimator.

The validation callback (callbacks/measurements/overlap.py) runs this on every validation: N = 200 VAE
posteriors of K = 6 x 8 x 8 = 384 dims, M = 256 draws, i.e. 19,900 pairs. Ours is the whole
``compute()`` (log OVL by importance sampling from sqrt(pq) / BC as one (pairs, 2K) @ (2K, M) GEMM,
log Bhattacharyya bracket, per-dimension closed-form OVL); the baseline is the same estimator
written straight: x = m_r + s_r eps materialized over (pairs, M, K) in float64 (chunks of 2^22
elements) with log p(x) - log q(x) from the densities, plus the same closed forms, timed on the
first `baseline_pairs` pairs (its cost is linear in pairs) and reported per pair. Unit pairs/s; the
note gives ours in seconds for all pairs (target: about a second on one thread). Both sides must
agree to 1e-10 in log OVL on those pairs of a strongly overlapping copy of the data (same noise:
rounding only). The estimator's accuracy is bench/overlap_validation.py's business.

    python -m bench.bench_overlap            # full sizes (~1 min on one thread)
    python -m bench.bench_overlap --smoke    # tiny sizes: seconds
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bench import harness
from bench.common import Row
from metrics.overlap import PairwiseOverlap, bhattacharyya_diag_gaussian, mc_noise, normal_ovl_1d

NAME = "pairwise overlap diag_gaussian: GEMM MC vs elementwise (pairs, M, K)"  # row name kept: results history
UNIT = "pairs/s"
ROW_NAMES = [NAME, NAME + harness.GPU_SUFFIX]
TARGET_SECONDS = 2.0


@dataclass(frozen=True)
class Sizes:
    images: int
    dims: int
    samples: int
    baseline_pairs: int
    repeats: int


FULL = Sizes(images=200, dims=384, samples=256, baseline_pairs=240, repeats=3)
SMOKE = Sizes(images=24, dims=48, samples=32, baseline_pairs=40, repeats=1)


def posteriors(sizes: Sizes, device: torch.device) -> tuple[Tensor, Tensor]:
    """VAE-like posteriors (float32, as the callback gathers them)."""
    generator = torch.Generator().manual_seed(0)
    mu = torch.randn(sizes.images, sizes.dims, generator=generator)
    logvar = torch.randn(sizes.images, sizes.dims, generator=generator) * 0.5 - 1
    return mu.to(device), logvar.to(device)


def elementwise_pairs(mu: Tensor, logvar: Tensor, first: Tensor, second: Tensor, noise: Tensor) -> Tensor:
    """The straight path: (pairs, M, K) float64 tensors, chunked at 2^22 elements; returns log OVL per pair
    (and computes the Bhattacharyya bracket and the per-dimension OVL as the metric does)."""
    mu, logvar = mu.double(), logvar.double()
    samples, dims = noise.shape
    step = max(1, 2**22 // (samples * dims))
    out = []
    for start in range(0, first.numel(), step):
        i, j = first[start : start + step], second[start : start + step]
        bounds = bhattacharyya_diag_gaussian(mu[i], logvar[i], mu[j], logvar[j])
        out.append(bounds.log_upper + log_mean_weight(mu[i], logvar[i], mu[j], logvar[j], noise))
        normal_ovl_1d(mu[i], logvar[i].exp(), mu[j], logvar[j].exp()).sum()
    return torch.cat(out)


def log_mean_weight(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor, noise: Tensor) -> Tensor:
    """log mean over the draws x ~ r = sqrt(pq) / BC of exp(-|log p(x) - log q(x)| / 2): (P,)."""
    precision = 0.5 * ((-logvar_p).exp() + (-logvar_q).exp())  # (P, K)
    mean_r = 0.5 * (mu_p * (-logvar_p).exp() + mu_q * (-logvar_q).exp()) / precision
    x = mean_r[:, None] + precision.rsqrt()[:, None] * noise  # (P, M, K)
    log_p = -0.5 * (logvar_p[:, None] + (x - mu_p[:, None]).square() * (-logvar_p).exp()[:, None]).sum(-1)
    log_q = -0.5 * (logvar_q[:, None] + (x - mu_q[:, None]).square() * (-logvar_q).exp()[:, None]).sum(-1)
    return torch.logsumexp(-0.5 * (log_p - log_q).abs(), -1) - math.log(noise.shape[0])


def rows_on(device: torch.device, sizes: Sizes, suffix: str = "") -> list[Row]:
    mu, logvar = posteriors(sizes, device)
    num_pairs = sizes.images * (sizes.images - 1) // 2
    first, second = (index[: sizes.baseline_pairs] for index in torch.triu_indices(sizes.images, sizes.images, offset=1, device=device))
    noise = mc_noise(sizes.samples, sizes.dims, torch.Generator().manual_seed(0)).to(device)

    def ours() -> PairwiseOverlap:
        metric = PairwiseOverlap("diag_gaussian", mc_samples=sizes.samples, seed=0).to(device)
        metric.update(mu, logvar)
        metric.compute()
        return metric

    ours()  # warm-up
    # the check, on posteriors that overlap (OVL ~ 0.5; the timed ones barely do): same noise (seed 0)
    close_mu, close_logvar = 0.05 * mu, 0.1 * logvar
    metric = PairwiseOverlap("diag_gaussian", mc_samples=sizes.samples, seed=0).to(device)
    metric.update(close_mu, close_logvar)
    log_ovl = metric.pairwise_log_ovl(close_mu)[0]  # (N, N)
    gap = (log_ovl[first, second] - elementwise_pairs(close_mu, close_logvar, first, second, noise)).abs().max().item()
    if gap > 1e-10:
        raise AssertionError(f"{NAME}: GEMM and elementwise log OVL differ by {gap:.2e} on the same noise")
    seconds = harness.interleaved_medians(
        {
            "ours": lambda: harness.timed(ours, device),
            "baseline": lambda: harness.timed(lambda: elementwise_pairs(mu, logvar, first, second, noise), device),
        },
        sizes.repeats,
    )
    return [
        Row(
            NAME + suffix,
            harness.per_second(num_pairs, seconds["ours"]),
            harness.per_second(first.numel(), seconds["baseline"]),
            UNIT,
            note=f"{device.type} float64, {torch.get_num_threads()} threads; N={sizes.images} K={sizes.dims} M={sizes.samples}: ours "
            f"{seconds['ours']:.2f} s for all {num_pairs} pairs (target <= {TARGET_SECONDS:g} s), baseline timed on {first.numel()} "
            f"pairs (~{seconds['baseline'] / first.numel() * num_pairs:.0f} s for all); max |dlog OVL| {gap:.1e} on overlapping pairs; "
            f"median of {sizes.repeats}",
        )
    ]


def run(smoke: bool = False) -> list[Row]:
    sizes = SMOKE if smoke else FULL
    return harness.guarded(lambda: rows_on(torch.device("cpu"), sizes), [(NAME, UNIT, None)]) + harness.gpu_or_placeholders(
        lambda cuda: harness.guarded(lambda: rows_on(cuda, sizes, harness.GPU_SUFFIX), [(NAME + harness.GPU_SUFFIX, UNIT, None)]),
        [(NAME, UNIT)],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    from bench.run_all import format_table

    print(format_table(run(smoke=parser.parse_args().smoke)))

"""Membership inference figures against ground truth: brute-force pair counts, the binormal model's closed forms.

Binormal scores: non-members N(0, 1), members N(δ, 1). Then AUC = Φ(δ / √2) and the TPR at FPR α is
Φ(δ - Φ⁻¹(1 - α)).
"""

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy.stats import norm

from metrics.membership import (
    MembershipInference,
    bootstrap_replicates,
    membership_inference,
    resample_counts,
    roc_auc,
    tpr_at_fpr,
    weighted_auc,
    weighted_tpr_at_fpr,
)
from tests.helpers import free_port

TRIALS = 40


def binormal(delta: float, members: int, nonmembers: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(members, generator=generator, dtype=torch.float64) + delta,
        torch.randn(nonmembers, generator=generator, dtype=torch.float64),
    )


def brute_force_auc(members: torch.Tensor, nonmembers: torch.Tensor) -> float:
    above = (members[:, None] > nonmembers[None]).double()  # (n1, n0)
    tied = (members[:, None] == nonmembers[None]).double()
    return float((above + 0.5 * tied).mean())


def brute_force_tpr(members: torch.Tensor, nonmembers: torch.Tensor, fpr: float) -> float:
    """The largest TPR over thresholds t (member iff score > t) among those letting through at most fpr of the non-members."""
    candidates = torch.cat([nonmembers, torch.tensor([math.inf], dtype=nonmembers.dtype)])
    best = 0.0
    for t in candidates:
        if float((nonmembers > t).double().mean()) <= fpr + 1e-12:
            best = max(best, float((members > t).double().mean()))
    return best


@pytest.mark.parametrize("members,nonmembers,values", [(37, 23, 5), (1, 9, 3), (50, 120, 1000), (8, 8, 1)])
def test_auc_equals_brute_force_pair_counting_with_ties(members, nonmembers, values):
    generator = torch.Generator().manual_seed(members)
    m = torch.randint(0, values, (members,), generator=generator).double()
    u = torch.randint(0, values, (nonmembers,), generator=generator).double()
    m[0], u[0] = -math.inf, -math.inf  # a log-likelihood of an impossible grid still has a rank
    assert roc_auc(m, u) == pytest.approx(brute_force_auc(m, u), abs=1e-12)


def test_auc_is_one_for_separated_scores_and_zero_reversed_and_half_for_all_ties():
    low, high = torch.arange(10.0), torch.arange(10.0) + 100
    assert roc_auc(high, low) == 1.0
    assert roc_auc(low, high) == 0.0
    assert roc_auc(torch.ones(5), torch.ones(7)) == 0.5


@pytest.mark.parametrize("nonmembers", [100, 250, 37])
def test_tpr_at_fpr_is_the_best_tpr_among_thresholds_within_the_fpr(nonmembers):
    generator = torch.Generator().manual_seed(nonmembers)
    m = torch.randint(0, 60, (80,), generator=generator).double()
    u = torch.randint(0, 50, (nonmembers,), generator=generator).double()
    result = tpr_at_fpr(m, u, 0.01)
    assert result.tpr == pytest.approx(brute_force_tpr(m, u, 0.01))
    assert result.fpr <= 0.01


def test_tpr_threshold_resolution_follows_the_non_member_count():
    """Non-members 0..n0-1: at n0 = 100 one false positive is allowed (τ = 98); at n0 = 50 none (τ = 49, FPR 0)."""
    members = torch.tensor([98.0, 98.5, 99.5, 10.0])
    hundred = tpr_at_fpr(members, torch.arange(100.0), 0.01)
    assert (hundred.threshold, hundred.fpr, hundred.tpr) == (98.0, 0.01, 0.5)
    fifty = tpr_at_fpr(members, torch.arange(50.0), 0.01)
    assert (fifty.threshold, fifty.fpr, fifty.tpr) == (49.0, 0.0, 0.75)


def test_weighted_statistics_equal_those_of_the_expanded_resample():
    """The vectorised replicates equal the plain statistics of the resampled scores written out."""
    m, u = binormal(0.7, 41, 230, seed=0)
    m[:5], u[:7] = m[5], u[7]  # ties inside and across the samples
    u[8] = m[9]
    m, u = m.sort().values, u.sort().values
    generator = torch.Generator().manual_seed(1)
    member_counts, nonmember_counts = resample_counts(len(m), 20, generator), resample_counts(len(u), 20, generator)
    aucs = weighted_auc(m, u, member_counts, nonmember_counts)
    tprs = weighted_tpr_at_fpr(m, u, member_counts, nonmember_counts, 0.01)
    for b in range(20):
        resampled_m = m.repeat_interleave(member_counts[b].long())
        resampled_u = u.repeat_interleave(nonmember_counts[b].long())
        assert aucs[b].item() == pytest.approx(brute_force_auc(resampled_m, resampled_u), abs=1e-12)
        assert tprs[b].item() == pytest.approx(tpr_at_fpr(resampled_m, resampled_u, 0.01).tpr, abs=1e-12)
    ones_m, ones_u = torch.ones(1, len(m), dtype=torch.float64), torch.ones(1, len(u), dtype=torch.float64)
    assert weighted_auc(m, u, ones_m, ones_u).item() == pytest.approx(roc_auc(m, u))


def test_bootstrap_is_seeded_stratified_and_independent_of_score_order():
    m, u = binormal(1.0, 60, 140, seed=3)
    first = bootstrap_replicates(m, u, 300, seed=5)
    again = bootstrap_replicates(m[torch.randperm(60)], u[torch.randperm(140)], 300, seed=5)
    torch.testing.assert_close(first.auc, again.auc, rtol=0, atol=0)
    torch.testing.assert_close(first.tpr, again.tpr, rtol=0, atol=0)
    assert not torch.equal(first.auc, bootstrap_replicates(m, u, 300, seed=6).auc)
    # stratified: replicates of a perfectly separated pair of samples stay perfectly separated
    assert torch.all(bootstrap_replicates(m + 100, u, 300).auc == 1.0)


def coverage(delta: float, size: int, level: float = 0.95) -> tuple[int, int]:
    """(trials whose AUC interval covers Φ(δ/√2), trials whose TPR interval covers the TPR at 1 % FPR) of TRIALS."""
    auc, tpr = norm.cdf(delta / math.sqrt(2)), norm.cdf(delta - norm.ppf(0.99))
    covered_auc = covered_tpr = 0
    for trial in range(TRIALS):
        result = membership_inference(*binormal(delta, size, size, seed=trial), seed=trial, level=level)
        covered_auc += result.auc_low <= auc <= result.auc_high
        covered_tpr += result.tpr_low <= tpr <= result.tpr_high
    return covered_auc, covered_tpr


@pytest.mark.parametrize("delta", [0.0, 1.0, 2.5, 3.5])  # AUC 0.5, 0.76, 0.96, 0.993
def test_bootstrap_intervals_cover_the_binormal_truth(delta):
    covered_auc, covered_tpr = coverage(delta, 200)
    assert covered_auc >= 0.85 * TRIALS
    assert covered_tpr >= 0.85 * TRIALS


def test_coverage_check_fails_for_intervals_too_narrow():
    """The coverage test can fail: 50 % intervals cover the truth in about half the trials."""
    covered_auc, covered_tpr = coverage(1.0, 200, level=0.5)
    assert covered_auc < 0.85 * TRIALS
    assert covered_tpr < 0.85 * TRIALS


@pytest.mark.parametrize("delta", [0.0, 1.0, 2.0, 3.0])
def test_tpr_at_1pct_fpr_matches_the_binormal_value_at_large_n(delta):
    result = tpr_at_fpr(*binormal(delta, 100_000, 100_000, seed=int(10 * delta)), 0.01)
    assert result.tpr == pytest.approx(norm.cdf(delta - norm.ppf(0.99)), abs=0.01)
    assert result.fpr == pytest.approx(0.01, abs=1e-4)


def test_auc_matches_the_binormal_value_and_the_interval_excludes_chance():
    result = membership_inference(*binormal(1.0, 2000, 2000, seed=0), num_bootstrap=500)
    assert result.auc == pytest.approx(norm.cdf(1 / math.sqrt(2)), abs=0.015)
    assert result.auc_low > 0.5 + 0.2  # a distinguishable model is told apart from chance


def test_metric_over_updates_equals_the_function_and_reports_empty_sides_as_nan():
    m, u = binormal(1.0, 30, 110, seed=2)
    metric = MembershipInference(num_bootstrap=200, seed=4)
    metric.update(members=m[:10])
    metric.update(nonmembers=u[:50])
    metric.update(members=m[10:], nonmembers=u[50:])
    values = metric.compute()
    expected = membership_inference(m, u, num_bootstrap=200, seed=4)
    assert values["auc"].item() == expected.auc
    assert (values["auc_low"].item(), values["auc_high"].item()) == (expected.auc_low, expected.auc_high)
    assert values["tpr_at_1pct_fpr"].item() == expected.tpr
    assert (values["members"].item(), values["nonmembers"].item()) == (30, 110)
    only_members = MembershipInference()
    only_members.update(members=m, nonmembers=torch.empty(0))
    values = only_members.compute()
    assert math.isnan(values["auc"].item()) and values["members"].item() == 30
    with pytest.raises(ValueError, match="NaN"):
        metric.update(members=torch.tensor([math.nan]))


SHARES = {"members": [range(0, 17), range(17, 20)], "nonmembers": [range(0, 45), range(45, 45)]}  # rank 1: no non-members


def ddp_worker(rank, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        m, u = binormal(0.8, 20, 45, seed=9)
        metric = MembershipInference(num_bootstrap=100).to(torch.bfloat16)  # a dtype cast must not touch the scores
        metric.update(members=m[SHARES["members"][rank]], nonmembers=u[SHARES["nonmembers"][rank]])
        torch.save(metric.compute(), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_with_uneven_and_empty_shares_equal_one_process(tmp_path):
    mp.spawn(ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    single = MembershipInference(num_bootstrap=100)
    single.update(*binormal(0.8, 20, 45, seed=9))
    expected = single.compute()
    for rank in (0, 1):
        torch.testing.assert_close(torch.load(tmp_path / f"rank{rank}.pt"), expected, rtol=0, atol=0)

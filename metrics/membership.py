"""Membership inference from a likelihood: can a model's score tell its training images from held-out ones?

Every γ-ARVM gives an exact log-likelihood of a token grid (the sum of its per-token log-probabilities).
The attack scores each image by it ("higher = more likely a member") and is judged on two figures:

- **ROC AUC**, the Mann-Whitney statistic: the probability that a random member scores above a random
  non-member, ties counted half. 0.5: the score cannot tell them apart (the model generalises, or at
  least does not favour its own training images); 1: every member scores above every non-member (the
  likelihood singles out the training set, as a copier's does).
- **TPR at 1 % FPR**: the fraction of members flagged when the threshold lets through at most 1 % of
  the non-members (the regime in which an attacker is confident, Carlini et al. 2022). See
  `tpr_at_fpr` for the threshold and the resolution a finite number of non-members gives.

Both get a 95 % percentile bootstrap interval, stratified (members and non-members resampled separately,
each at its own size, as they were drawn separately). The bootstrap is vectorised: replicate b is a
vector of multinomial counts over each sorted sample (``(B, n)``), and both statistics of a replicate
follow from cumulative counts at positions fixed by one sort (``weighted_auc``,
``weighted_tpr_at_fpr``), so B = 1000 replicates cost O(B (n_members + n_nonmembers)), no pairs.

`MembershipInference` is the torchmetrics Metric: per-sample "cat" states (metrics/_per_sample.py), so
under DDP every rank scores its share and `compute` sees all scores. The scores are sorted before
anything else, so the figures (the seeded bootstrap included) do not depend on how they were split.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from metrics._per_sample import STATE_DTYPE, PerSampleMetric

DEFAULT_FPR = 0.01
DEFAULT_NUM_BOOTSTRAP = 1000
BOOTSTRAP_CELLS = 2**24  # replicate-by-sample entries held at once (float64: 128 MiB); replicates run in chunks


class TprAtFpr(NamedTuple):
    tpr: float  # fraction of members scoring strictly above the threshold
    threshold: float  # the non-member order statistic used as threshold
    fpr: float  # the FPR actually reached: fraction of non-members strictly above the threshold (<= the target)


class Interval(NamedTuple):
    low: float
    high: float


class BootstrapReplicates(NamedTuple):
    auc: Tensor  # (B,) float64
    tpr: Tensor  # (B,) float64


class MembershipResult(NamedTuple):
    auc: float
    auc_low: float
    auc_high: float
    tpr: float
    tpr_low: float
    tpr_high: float
    fpr: float  # the FPR the TPR threshold reaches on the non-members (see TprAtFpr)
    members: int
    nonmembers: int


def as_scores(values: Tensor) -> Tensor:
    """Any tensor of scores -> flat float64 (the states' dtype); NaN scores are refused (they have no rank)."""
    scores = values.detach().reshape(-1).to(STATE_DTYPE)
    if torch.isnan(scores).any():
        raise ValueError("membership scores contain NaN: a log-likelihood must be a number (-inf is allowed)")
    return scores


def roc_auc(members: Tensor, nonmembers: Tensor) -> float:
    """Mann-Whitney AUC: P(member score > non-member score) + ½ P(equal), over all member-non-member pairs.

    Counted with one sort: for member i, #{non-members below} = searchsorted left, #{below or equal} =
    searchsorted right, and their mean counts ties half. NaN when either side is empty.
    """
    m, u = as_scores(members), as_scores(nonmembers).sort().values
    if not len(m) or not len(u):
        return math.nan
    below = torch.searchsorted(u, m, side="left").double()  # (n1,) non-members strictly below each member
    below_or_equal = torch.searchsorted(u, m, side="right").double()  # (n1,)
    return float((below + below_or_equal).sum() / (2 * len(m) * len(u)))


def false_positives_allowed(num_nonmembers: int, fpr: float) -> int:
    """k = floor(fpr · n0): how many non-members may score above the threshold (a rounding guard for fpr · n0 integral)."""
    return int(math.floor(fpr * num_nonmembers + 1e-9))


def tpr_at_fpr(members: Tensor, nonmembers: Tensor, fpr: float = DEFAULT_FPR) -> TprAtFpr:
    """TPR at a false-positive rate of at most `fpr`, the threshold taken from the non-member scores.

    Definition: an image is called a member when its score is strictly above the threshold τ. With n0
    non-members sorted ascending u_(1) <= ... <= u_(n0) and k = floor(fpr · n0), τ = u_(n0 - k): at most
    k non-members (exactly k without ties) lie above it, so the FPR reached is <= fpr, and τ is the
    lowest non-member score that keeps it so. TPR = #{members > τ} / n1.

    Resolution: the FPR moves in steps of 1/n0. With n0 < 1/fpr (fewer than 100 non-members at 1 %),
    k = 0 and τ is the highest non-member score: the figure is then the TPR at FPR 0, a stricter (lower)
    one than the TPR at 1 %. With n0 = 100 exactly one false positive is allowed; the figure is only
    resolved (several false positives, so the threshold is not one extreme score) from n0 of a few
    hundred on. The `fpr` field says what was reached. NaN when either side is empty.
    """
    m, u = as_scores(members), as_scores(nonmembers).sort().values
    if not len(m) or not len(u):
        return TprAtFpr(math.nan, math.nan, math.nan)
    k = false_positives_allowed(len(u), fpr)
    threshold = u[len(u) - k - 1]
    return TprAtFpr(float((m > threshold).double().mean()), float(threshold), float((u > threshold).double().mean()))


def weighted_auc(members_sorted: Tensor, nonmembers_sorted: Tensor, member_counts: Tensor, nonmember_counts: Tensor) -> Tensor:
    """(B,) AUC of B resamples, each given as counts over the sorted original scores.

    `member_counts` (B, n1) and `nonmember_counts` (B, n0) hold how often each original score occurs in a
    replicate (all ones: the original sample). The non-members below member i in replicate b are the
    cumulative count up to its searchsorted position, which one sort fixes for all replicates.
    """
    n1, n0 = member_counts.sum(1), nonmember_counts.sum(1)  # (B,)
    below = torch.searchsorted(nonmembers_sorted, members_sorted, side="left")  # (n1,)
    below_or_equal = torch.searchsorted(nonmembers_sorted, members_sorted, side="right")  # (n1,)
    cumulative = torch.nn.functional.pad(nonmember_counts.cumsum(1), (1, 0))  # (B, n0 + 1): count of the first j non-members
    pairs_won = cumulative[:, below] + cumulative[:, below_or_equal]  # (B, n1): twice the pairs member i wins (ties once)
    return (member_counts * pairs_won).sum(1) / (2 * n1 * n0)


def weighted_tpr_at_fpr(
    members_sorted: Tensor, nonmembers_sorted: Tensor, member_counts: Tensor, nonmember_counts: Tensor, fpr: float = DEFAULT_FPR
) -> Tensor:
    """(B,) `tpr_at_fpr` of B resamples given as counts over the sorted original scores (as in `weighted_auc`).

    The threshold of replicate b is its (n0 - k)-th smallest non-member, i.e. the first sorted original
    score whose cumulative count reaches n0 - k; the members above it are n1 minus the cumulative member
    count up to its searchsorted position.
    """
    n1, n0 = member_counts.sum(1), nonmember_counts.sum(1)  # (B,) the replicates' sizes (those of the sample)
    k = false_positives_allowed(int(n0[0]), fpr)
    rank = (n0 - k).unsqueeze(1)  # (B, 1)
    at = torch.searchsorted(nonmember_counts.cumsum(1), rank, side="left").squeeze(1)  # (B,) index of the threshold
    threshold = nonmembers_sorted[at]  # (B,)
    not_above = torch.searchsorted(members_sorted, threshold, side="right")  # (B,) originals <= threshold
    member_cumulative = torch.nn.functional.pad(member_counts.cumsum(1), (1, 0))  # (B, n1 + 1)
    below = member_cumulative.gather(1, not_above.unsqueeze(1)).squeeze(1)  # (B,) resampled members <= threshold
    return (n1 - below) / n1


def resample_counts(size: int, replicates: int, generator: torch.Generator) -> Tensor:
    """(replicates, size) float64 counts of a bootstrap resample of `size` items with replacement."""
    draws = torch.randint(size, (replicates, size), generator=generator)  # (B, n) resampled positions
    return torch.zeros(replicates, size, dtype=STATE_DTYPE).scatter_add_(1, draws, torch.ones(replicates, size, dtype=STATE_DTYPE))


def bootstrap_replicates(
    members: Tensor, nonmembers: Tensor, num_bootstrap: int = DEFAULT_NUM_BOOTSTRAP, seed: int = 0, fpr: float = DEFAULT_FPR
) -> BootstrapReplicates:
    """AUC and TPR at `fpr` of `num_bootstrap` stratified resamples (members and non-members resampled apart).

    Deterministic for a seed and independent of the order of the scores (they are sorted first). On CPU.
    """
    m, u = as_scores(members).cpu().sort().values, as_scores(nonmembers).cpu().sort().values
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, BOOTSTRAP_CELLS // (len(m) + len(u)))
    aucs, tprs = [], []
    for start in range(0, num_bootstrap, chunk):
        replicates = min(chunk, num_bootstrap - start)
        member_counts, nonmember_counts = resample_counts(len(m), replicates, generator), resample_counts(len(u), replicates, generator)
        aucs.append(weighted_auc(m, u, member_counts, nonmember_counts))
        tprs.append(weighted_tpr_at_fpr(m, u, member_counts, nonmember_counts, fpr))
    return BootstrapReplicates(torch.cat(aucs), torch.cat(tprs))


def percentile_interval(values: Tensor, level: float = 0.95) -> Interval:
    """The central `level` percentile interval of bootstrap replicates (linear interpolation between order statistics)."""
    tail = (1 - level) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=values.dtype)).tolist()
    return Interval(low, high)


def membership_inference(
    members: Tensor,
    nonmembers: Tensor,
    num_bootstrap: int = DEFAULT_NUM_BOOTSTRAP,
    seed: int = 0,
    fpr: float = DEFAULT_FPR,
    level: float = 0.95,
) -> MembershipResult:
    """AUC and TPR at `fpr` of member vs non-member scores (higher = member), each with a bootstrap interval.

    NaN figures (and the counts) when either side is empty.
    """
    m, u = as_scores(members).cpu(), as_scores(nonmembers).cpu()
    if not len(m) or not len(u):
        return MembershipResult(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, len(m), len(u))
    auc, at_fpr = roc_auc(m, u), tpr_at_fpr(m, u, fpr)
    replicates = bootstrap_replicates(m, u, num_bootstrap, seed, fpr)
    auc_interval, tpr_interval = percentile_interval(replicates.auc, level), percentile_interval(replicates.tpr, level)
    return MembershipResult(auc, *auc_interval, at_fpr.tpr, *tpr_interval, at_fpr.fpr, len(m), len(u))


def tpr_key(fpr: float) -> str:
    """0.01 -> "tpr_at_1pct_fpr": the name of the TPR figure at that FPR."""
    return f"tpr_at_{100 * fpr:g}pct_fpr"


class MembershipInference(PerSampleMetric):
    """Member and non-member scores (log-likelihoods, higher = member) -> AUC, TPR at `fpr`, their intervals.

    `update(members=..., nonmembers=...)` appends scores of either kind (either may be absent or empty:
    a rank with no share still calls it, so every rank takes part in the sync). `compute()` returns
    float64 scalars: ``auc``, ``auc_low``, ``auc_high``, ``tpr_at_1pct_fpr`` (for fpr = 0.01) with its
    ``_low``/``_high``, ``fpr_reached``, ``members``, ``nonmembers``.
    """

    def __init__(
        self, num_bootstrap: int = DEFAULT_NUM_BOOTSTRAP, seed: int = 0, fpr: float = DEFAULT_FPR, level: float = 0.95, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0 < fpr < 1 or not 0 < level < 1 or num_bootstrap < 1:
            raise ValueError(f"need 0 < fpr < 1, 0 < level < 1 and num_bootstrap >= 1, got {fpr}, {level}, {num_bootstrap}")
        self.num_bootstrap, self.seed, self.fpr, self.level = num_bootstrap, seed, fpr, level
        self.add_per_sample_state("member_scores", "nonmember_scores")

    def update(self, members: Tensor | None = None, nonmembers: Tensor | None = None) -> None:
        empty = torch.zeros(0, dtype=STATE_DTYPE, device=self.device)
        self.append_per_sample(
            member_scores=empty if members is None else as_scores(members),
            nonmember_scores=empty if nonmembers is None else as_scores(nonmembers),
        )

    def compute(self) -> dict[str, Tensor]:
        result = membership_inference(
            self.gathered("member_scores"), self.gathered("nonmember_scores"), self.num_bootstrap, self.seed, self.fpr, self.level
        )
        tpr = tpr_key(self.fpr)
        values = {
            "auc": result.auc,
            "auc_low": result.auc_low,
            "auc_high": result.auc_high,
            tpr: result.tpr,
            f"{tpr}_low": result.tpr_low,
            f"{tpr}_high": result.tpr_high,
            "fpr_reached": result.fpr,
            "members": float(result.members),
            "nonmembers": float(result.nonmembers),
        }
        return {name: torch.tensor(value, dtype=STATE_DTYPE, device=self.device) for name, value in values.items()}

"""2-process gloo run: every metric synced over uneven (and empty) rank shares equals one process.

Rank 0 gets 5 samples, rank 1 gets 2; the "*_empty_rank" metrics get nothing on rank 1 and
one of them was cast with `.to(torch.bfloat16)` (an empty rank's placeholder must keep the dtype
of the others for the gather). The token MI gets its grids dealt round-robin with their global
indices (rank 0: 0, 2, 4, 6; rank 1: 1, 3, 5), which the one process feeds in order: its
permutation null must not depend on the split.
"""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metrics.fid import NovelSampleQuality, build_fid
from metrics.memorization import NNMemorization
from metrics.mutual_information import TokenMutualInformation
from metrics.overlap import PairwiseOverlap
from tests.helpers import free_port
from tests.metrics.test_fid import TinyFeatures

NUM_BITS = 3
NUM_SAMPLES = 7
RANK_SHARES = [range(0, 5), range(5, 7)]
GRID_SHARES = [[0, 2, 4, 6], [1, 3, 5]]
SCRAMBLED_GRIDS = [3, 0, 6, 1, 5, 2, 4]
BATCH = 2  # several updates per rank


def make_data():
    generator = torch.Generator().manual_seed(0)
    reference_images = torch.randint(0, 256, (30, 1, 6, 6), dtype=torch.uint8, generator=generator)
    reference_tokens = torch.randint(0, 2**NUM_BITS, (30, 3, 3), generator=generator)
    samples = torch.rand(NUM_SAMPLES, 1, 6, 6, generator=generator) * 2 - 1
    tokens = torch.randint(0, 2**NUM_BITS, (NUM_SAMPLES, 3, 3), generator=generator)
    samples[[1, 5]] = reference_images[[4, 9]].float() / 127.5 - 1  # copies on both ranks
    tokens[[1, 5]] = reference_tokens[[4, 9]]
    return {
        "reference_images": reference_images,
        "reference_tokens": reference_tokens,
        "samples": samples,
        "tokens": tokens,
        "mu": torch.randn(NUM_SAMPLES, 2, 2, 2, generator=generator),
        "logvar": torch.randn(NUM_SAMPLES, 2, 2, 2, generator=generator) * 0.3,
        "codes": torch.randn(NUM_SAMPLES, 2, 3, 3, generator=generator).tanh(),
        "soft": 0.2 * torch.randn(NUM_SAMPLES, 2, 3, 3, generator=generator),
        "grids": torch.randint(0, 2**NUM_BITS, (NUM_SAMPLES, 4, 4), generator=generator),
    }


def build_metrics(data):
    return {
        "memorization": NNMemorization(
            data["reference_images"], data["reference_tokens"], num_bits=NUM_BITS, decoded_reference=data["reference_images"] // 4 * 4
        ),
        "memorization_empty_rank": NNMemorization(data["reference_images"]).to(torch.bfloat16),
        "overlap_diag": PairwiseOverlap("diag_gaussian", mc_samples=64, seed=3),
        "overlap_gaussian_empty_rank": PairwiseOverlap("gaussian", scale=0.5),
        "overlap_triangular": PairwiseOverlap("bounded", scale=0.6, kappa=2.0, mc_samples=64, seed=4),
        "overlap_uniform": PairwiseOverlap("bounded", scale=0.6, kappa=1.0),
        "mutual_information": TokenMutualInformation(NUM_BITS, max_distance=2, num_permutations=20),
        "mutual_information_empty_rank": TokenMutualInformation(NUM_BITS, max_distance=2, num_permutations=20),
        "fid": build_fid(TinyFeatures()),
        "novel_quality_empty_rank": NovelSampleQuality(data["samples"].flatten(1)[:, :8] + 1),  # features of a reference set
    }


def feed(metrics, data, indices, grid_indices, with_empty_rank_metrics):
    for start in range(0, len(indices), BATCH):
        batch = list(indices[start : start + BATCH])
        samples, tokens = data["samples"][batch], data["tokens"][batch]
        metrics["memorization"].update(samples, tokens)
        metrics["overlap_diag"].update(data["mu"][batch], logvar=data["logvar"][batch], images=samples)
        metrics["overlap_triangular"].update(data["soft"][batch], images=samples)
        metrics["overlap_uniform"].update(data["soft"][batch])
        metrics["fid"].update(samples, real=False)
        metrics["fid"].update(-samples, real=True)
        if with_empty_rank_metrics:
            metrics["memorization_empty_rank"].update(samples)
            metrics["overlap_gaussian_empty_rank"].update(data["codes"][batch])
            metrics["novel_quality_empty_rank"].update(samples.flatten(1)[:, :8])
    for start in range(0, len(grid_indices), BATCH):
        batch = torch.tensor(grid_indices[start : start + BATCH])
        metrics["mutual_information"].update(data["grids"][batch], batch)
    if with_empty_rank_metrics:  # every grid, in a scrambled order, on one rank
        scrambled = torch.tensor(SCRAMBLED_GRIDS)
        metrics["mutual_information_empty_rank"].update(data["grids"][scrambled], scrambled)


def results(metrics):
    """Every value (a collective per metric: all ranks run this in the same order)."""
    values = {name: metric.compute() for name, metric in metrics.items()}
    values["memorization_per_sample"] = metrics["memorization"].per_sample()
    values["memorization_empty_rank_per_sample"] = metrics["memorization_empty_rank"].per_sample()
    return values


def worker(rank, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        data = make_data()
        metrics = build_metrics(data)
        feed(metrics, data, RANK_SHARES[rank], GRID_SHARES[rank], with_empty_rank_metrics=rank == 0)
        torch.save(results(metrics), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_with_uneven_and_empty_shares_equal_one_process(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)

    data = make_data()
    metrics = build_metrics(data)
    all_indices = [i for share in RANK_SHARES for i in share]  # rank order = gather order
    feed(metrics, data, all_indices[: len(RANK_SHARES[0])], list(range(NUM_SAMPLES)), with_empty_rank_metrics=True)
    feed(metrics, data, all_indices[len(RANK_SHARES[0]) :], [], with_empty_rank_metrics=False)
    single = results(metrics)

    assert single["memorization"]["ratio13_rate"].item() == pytest.approx(2 / 7)
    assert single["overlap_triangular"]["mean"].item() > 0.01  # overlapping soft latents: the MC path ran
    assert not torch.isnan(single["mutual_information"]["token_mi_excess_lo"]).any()
    assert single["memorization_per_sample"]["nearest_index"].numel() == NUM_SAMPLES
    assert single["memorization_per_sample"]["decoded_nearest_index"].numel() == NUM_SAMPLES
    assert single["memorization"]["decoded_psnr25_rate"].item() == pytest.approx(2 / 7)  # the copies, through a 2-bit "decoder"
    for rank in (0, 1):
        synced = torch.load(tmp_path / f"rank{rank}.pt")
        fid_synced, fid_single = synced.pop("fid"), single["fid"]
        torch.testing.assert_close(synced, {k: v for k, v in single.items() if k != "fid"}, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(fid_synced, fid_single, rtol=1e-6, atol=1e-9)  # sums in another order

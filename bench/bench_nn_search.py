"""Exact top-2 NN search (metrics/nn_search.py) vs faiss-cpu brute force, on this machine.

Rows: (a) L2 on float32 rows vs `IndexFlatL2`, (b) Hamming on signed bits vs `IndexBinaryFlat`
(packed codes, popcount). Unit queries/s, goal 1.0 = as fast as faiss with identical neighbours.
Timings alternate ours / faiss / the plain GEMM so a noisy shared machine hits all of them alike;
medians over `repeats`, warm-up excluded. faiss is a benchmark-only dependency (extra [bench]).

    python -m bench.bench_nn_search            # full sizes (~1 min on 2 cores)
    python -m bench.bench_nn_search --smoke    # tiny sizes, seconds
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from bench.common import Row, median_seconds, peak_rss_mib
from metrics.nn_search import exact_l2_top2, hamming_top2

FAISS_MISSING = "not run: faiss-cpu missing"


@dataclass(frozen=True)
class Sizes:
    queries: int
    reference: int
    dims: int  # L2 row length
    bits: int  # Hamming code length (a multiple of 8 for faiss)
    repeats: int


FULL = Sizes(queries=1000, reference=20000, dims=784, bits=1024, repeats=7)
SMOKE = Sizes(queries=64, reference=512, dims=64, bits=128, repeats=2)


def try_import_faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def alternating_medians(candidates: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each callable, runs interleaved round-robin after one untimed warm-up each."""
    for fn in candidates.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            times[name].append(median_seconds(fn, repeats=1, warmup=0))
    return {name: statistics.median(values) for name, values in times.items()}


def l2_row(sizes: Sizes, faiss) -> Row:
    generator = torch.Generator().manual_seed(0)
    queries = torch.rand(sizes.queries, sizes.dims, generator=generator)  # (Q, D)
    reference = torch.rand(sizes.reference, sizes.dims, generator=generator)  # (N, D)
    flops = 2 * sizes.queries * sizes.reference * sizes.dims
    name = f"exact L2 top-2, {sizes.queries}x{sizes.reference}x{sizes.dims} fp32"

    ours = exact_l2_top2(queries, reference)
    peak_mib = peak_rss_mib()  # before faiss exists in this process
    candidates = {"ours": lambda: exact_l2_top2(queries, reference), "gemm": lambda: torch.mm(queries, reference.T)}
    if faiss is not None:
        index = faiss.IndexFlatL2(sizes.dims)
        index.add(reference.numpy())
        candidates["faiss"] = lambda: index.search(queries.numpy(), 2)
    seconds = alternating_medians(candidates, sizes.repeats)

    note = [f"ours {flops / seconds['ours'] / 1e9:.0f} GFLOP/s", f"fp32 matmul {flops / seconds['gemm'] / 1e9:.0f} GFLOP/s"]
    if faiss is None:
        return Row(name, sizes.queries / seconds["ours"], None, "queries/s", goal=1.0, note="; ".join([FAISS_MISSING, *note]))
    _, faiss_indices = index.search(queries.numpy(), 2)
    ours_indices = torch.stack([ours.idx1, ours.idx2], dim=1).numpy()
    identical = int((faiss_indices == ours_indices).all(axis=1).sum())
    note = [
        f"identical neighbours {identical}/{sizes.queries}",
        *note,
        f"faiss {flops / seconds['faiss'] / 1e9:.0f} GFLOP/s",
        f"peak RSS {peak_mib:.0f} MiB (inputs {(queries.numel() + reference.numel()) * 4 / 2**20:.0f} MiB)",
    ]
    return Row(name, sizes.queries / seconds["ours"], sizes.queries / seconds["faiss"], "queries/s", goal=1.0, note="; ".join(note))


def hamming_row(sizes: Sizes, faiss) -> Row:
    generator = torch.Generator().manual_seed(1)
    query_bits = torch.randint(0, 2, (sizes.queries, sizes.bits), generator=generator, dtype=torch.uint8)  # (Q, K)
    reference_bits = torch.randint(0, 2, (sizes.reference, sizes.bits), generator=generator, dtype=torch.uint8)  # (N, K)
    query_codes, reference_codes = (bits.to(torch.int8) * 2 - 1 for bits in (query_bits, reference_bits))  # +-1
    ops = 2 * sizes.queries * sizes.reference * sizes.bits
    name = f"Hamming top-2, {sizes.queries}x{sizes.reference}x{sizes.bits} bits"

    ours = hamming_top2(query_codes, reference_codes)
    candidates = {"ours": lambda: hamming_top2(query_codes, reference_codes)}
    if faiss is not None:
        packed_queries, packed_reference = (np.packbits(bits.numpy(), axis=1) for bits in (query_bits, reference_bits))
        index = faiss.IndexBinaryFlat(sizes.bits)
        index.add(packed_reference)
        candidates["faiss"] = lambda: index.search(packed_queries, 2)
    seconds = alternating_medians(candidates, sizes.repeats)

    note = [f"ours {ops / seconds['ours'] / 1e9:.0f} int8 GOP/s (+-1 GEMM)"]
    if faiss is None:
        return Row(name, sizes.queries / seconds["ours"], None, "queries/s", goal=1.0, note="; ".join([FAISS_MISSING, *note]))
    faiss_distances, _ = index.search(packed_queries, 2)
    ours_distances = torch.stack([ours.d1, ours.d2], dim=1).numpy()
    identical = int((faiss_distances == ours_distances).all(axis=1).sum())
    note = [f"identical top-2 distances {identical}/{sizes.queries} (tied indices may differ)", *note, f"peak RSS {peak_rss_mib():.0f} MiB"]
    return Row(name, sizes.queries / seconds["ours"], sizes.queries / seconds["faiss"], "queries/s", goal=1.0, note="; ".join(note))


def run(smoke: bool = False) -> list[Row]:
    sizes = SMOKE if smoke else FULL
    faiss = try_import_faiss()
    return [l2_row(sizes, faiss), hamming_row(sizes, faiss)]


def print_table(rows: list[Row]) -> None:
    print(f"{'name':<44} {'ours':>10} {'baseline':>10} {'unit':<10} {'ratio':>6} {'goal':>5}  note")
    for row in rows:
        baseline = f"{row.baseline:10.0f}" if row.baseline is not None else f"{'-':>10}"
        ratio = f"{row.ratio:6.2f}" if row.ratio is not None else f"{'-':>6}"
        print(f"{row.name:<44} {row.ours:10.0f} {baseline} {row.unit:<10} {ratio} {row.goal:5.1f}  {row.note}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, finishes in seconds")
    print_table(run(smoke=parser.parse_args().smoke))

"""Exact top-2 NN search (nn_search/) vs faiss-cpu brute force, on this machine.

Rows: (a) L2 on float32 rows vs `IndexFlatL2`, (b) Hamming on signed bits vs `IndexBinaryFlat`
(packed codes, popcount) at 1024 bits and at 7168 bits (32x32x7, the CIFAR latent). Unit
queries/s, goal 1.0 = as fast as faiss with identical neighbours. The Hamming notes say which path
`hamming_top2` took (oneDNN int8 GEMM / popcount / GEMM, `nn_search/hamming.py`) and the CPU's
popcount-related flags; both sides run `torch.get_num_threads()` threads.
Timings interleave ours / faiss / the plain GEMMs so a noisy shared machine hits all of them
alike (bench.harness); medians over `repeats`, warm-up excluded. faiss is a benchmark-only
dependency (extra [bench]); nn_search/ never imports it.

    python -m bench.bench_nn_search            # full sizes (~1 min on 2 cores)
    python -m bench.bench_nn_search --smoke    # same shapes, fewer rows: seconds
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bench.common import Row, rss_growth_mib
from bench.harness import cpu_model, interleaved_medians, timed
from bench.run_all import format_table
from nn_search import exact_l2_top2, hamming_top2
from nn_search.hamming import hamming_path, signed_codes

FAISS_MISSING = "not run: faiss-cpu missing"
L2_ROW = "exact L2 top-2 vs faiss IndexFlatL2 (fp32)"
HAMMING_ROW = "Hamming top-2 vs faiss IndexBinaryFlat"
HAMMING_CIFAR_ROW = "Hamming top-2 vs faiss IndexBinaryFlat, 7168 bits (32x32x7)"
ROW_NAMES = (L2_ROW, HAMMING_ROW, HAMMING_CIFAR_ROW)


@dataclass(frozen=True)
class Sizes:
    queries: int
    reference: int
    dims: int  # L2 row length
    bits: int  # Hamming code length (a multiple of 8 for faiss)
    repeats: int


FULL = Sizes(queries=1000, reference=20000, dims=784, bits=1024, repeats=7)
SMOKE = Sizes(queries=256, reference=4096, dims=784, bits=1024, repeats=3)  # the full shapes, fewer rows
CIFAR_BITS = 7 * 32 * 32
FULL_CIFAR = Sizes(queries=500, reference=10000, dims=0, bits=CIFAR_BITS, repeats=5)
SMOKE_CIFAR = Sizes(queries=64, reference=1024, dims=0, bits=CIFAR_BITS, repeats=1)


def try_import_faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def warm_interleaved_medians(candidates: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per callable, interleaved round-robin, after one untimed call each (oneDNN
    kernel JIT and first-touch allocations are one-off costs, not search speed)."""
    for search in candidates.values():
        search()
    return interleaved_medians({name: functools.partial(timed, search) for name, search in candidates.items()}, repeats)


POPCOUNT_FLAGS = ("popcnt", "avx2", "avx512_vpopcntdq", "avx512_bitalg", "avx512_vnni")


def cpu_flags_note() -> str:
    """The CPU and its popcount / int8-GEMM related flags (``/proc/cpuinfo``), for the Hamming rows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        flags = []
    present = [flag for flag in POPCOUNT_FLAGS if flag in flags]
    return f"{cpu_model()}, flags: {' '.join(present) or 'unknown'}; {torch.get_num_threads()} threads (faiss too)"


def onednn_linear():
    """oneDNN's fp32 linear, the GEMM our FP32 path runs on CPU (None where torch lacks it)."""
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


def versus_faiss_row(name: str, num_queries: int, seconds: dict[str, float], note: list[str]) -> Row:
    """ours vs faiss in queries/s; without faiss the baseline is None and the note says why."""
    if "faiss" not in seconds:
        return Row(name, num_queries / seconds["ours"], None, "queries/s", goal=1.0, note=FAISS_MISSING)
    return Row(name, num_queries / seconds["ours"], num_queries / seconds["faiss"], "queries/s", goal=1.0, note="; ".join(note))


def l2_row(sizes: Sizes, faiss) -> Row:
    generator = torch.Generator().manual_seed(0)
    queries = torch.rand(sizes.queries, sizes.dims, generator=generator)  # (Q, D)
    reference = torch.rand(sizes.reference, sizes.dims, generator=generator)  # (N, D)
    flops = 2 * sizes.queries * sizes.reference * sizes.dims

    extra_mib = rss_growth_mib(lambda: exact_l2_top2(queries, reference))  # first, before faiss exists
    ours = exact_l2_top2(queries, reference)
    candidates = {"ours": lambda: exact_l2_top2(queries, reference), "torch.mm": lambda: torch.mm(queries, reference.T)}
    linear = onednn_linear()
    if linear is not None:
        candidates["oneDNN"] = lambda: linear(queries, reference, None, "none", [], "")
    if faiss is not None:
        index = faiss.IndexFlatL2(sizes.dims)
        index.add(reference.numpy())
        candidates["faiss"] = lambda: index.search(queries.numpy(), 2)
    seconds = warm_interleaved_medians(candidates, sizes.repeats)

    gemm_rates = ", ".join(f"{key} {flops / seconds[key] / 1e9:.3g}" for key in ("torch.mm", "oneDNN") if key in seconds)
    note = [
        f"{sizes.queries} x {sizes.reference} x {sizes.dims}",
        f"ours {flops / seconds['ours'] / 1e9:.3g} GFLOP/s",
        f"fp32 matmul alone (GFLOP/s): {gemm_rates}",
        f"search memory +{extra_mib:.0f} MiB (inputs {(queries.numel() + reference.numel()) * 4 / 2**20:.0f} MiB)",
    ]
    if faiss is not None:
        _, faiss_indices = index.search(queries.numpy(), 2)
        ours_indices = torch.stack([ours.idx1, ours.idx2], dim=1).numpy()
        identical = int((faiss_indices == ours_indices).all(axis=1).sum())
        note = [f"identical neighbours {identical}/{sizes.queries}", *note, f"faiss {flops / seconds['faiss'] / 1e9:.3g} GFLOP/s"]
    return versus_faiss_row(L2_ROW, sizes.queries, seconds, note)


def hamming_row(sizes: Sizes, faiss, name: str = HAMMING_ROW) -> Row:
    generator = torch.Generator().manual_seed(1)
    query_bits = torch.randint(0, 2, (sizes.queries, sizes.bits), generator=generator, dtype=torch.uint8)  # (Q, K)
    reference_bits = torch.randint(0, 2, (sizes.reference, sizes.bits), generator=generator, dtype=torch.uint8)  # (N, K)
    query_codes, reference_codes = (bits.to(torch.int8) * 2 - 1 for bits in (query_bits, reference_bits))  # +-1
    ops = 2 * sizes.queries * sizes.reference * sizes.bits

    extra_mib = rss_growth_mib(lambda: hamming_top2(query_codes, reference_codes))
    path = hamming_path(signed_codes(query_codes), signed_codes(reference_codes))
    first_call = timed(lambda: hamming_top2(query_codes, reference_codes.clone()))  # packs a new reference
    ours = hamming_top2(query_codes, reference_codes)
    candidates = {"ours": lambda: hamming_top2(query_codes, reference_codes)}
    if faiss is not None:
        packed_queries, packed_reference = (np.packbits(bits.numpy(), axis=1) for bits in (query_bits, reference_bits))
        index = faiss.IndexBinaryFlat(sizes.bits)
        index.add(packed_reference)
        candidates["faiss"] = lambda: index.search(packed_queries, 2)
    seconds = warm_interleaved_medians(candidates, sizes.repeats)

    note = [
        f"{sizes.queries} x {sizes.reference} x {sizes.bits} bits",
        f"path: {path} (reference packed once, cached; faiss's add is untimed too)",
        f"first call incl. packing {sizes.queries / first_call:.3g} queries/s",
        f"ours {ops / 2 / seconds['ours'] / 1e9:.3g} G bit comparisons/s",
        f"search memory +{extra_mib:.0f} MiB",
        cpu_flags_note(),
    ]
    if faiss is not None:
        faiss_distances, _ = index.search(packed_queries, 2)
        ours_distances = torch.stack([ours.d1, ours.d2], dim=1).numpy()
        identical = int((faiss_distances == ours_distances).all(axis=1).sum())
        note = [f"identical top-2 distances {identical}/{sizes.queries} (tied indices may differ)", *note]
    return versus_faiss_row(name, sizes.queries, seconds, note)


def run(smoke: bool = False) -> list[Row]:
    sizes, cifar = (SMOKE, SMOKE_CIFAR) if smoke else (FULL, FULL_CIFAR)
    faiss = try_import_faiss()
    if faiss is not None:
        faiss.omp_set_num_threads(torch.get_num_threads())  # the same thread count on both sides
    return [l2_row(sizes, faiss), hamming_row(sizes, faiss), hamming_row(cifar, faiss, HAMMING_CIFAR_ROW)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, finishes in seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch (and so faiss) threads; 1 is steadier on a shared machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # run() gives faiss the same count
    print(format_table(run(smoke=args.smoke)))

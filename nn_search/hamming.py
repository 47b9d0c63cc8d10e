"""Hamming top-2 of signed bit codes (latent token grids): exact, on any device, path chosen at run time.

- CPU with oneDNN's int8 linear, reference small enough to keep prepacked (`PREPACKED_CACHE_BYTES`):
  query bits (0/1) times reference signs (+-1) with the bias -|r| fused in, so the GEMM writes
  -Hamming directly; the reference is prepacked once and cached while unchanged (`reference_cache.py`);
- other CPUs (or larger references) with NumPy >= 2: XOR + popcount of bit-packed words (`popcount.py`);
- elsewhere (CUDA): the L2 search on the +-1 codes (``streaming.py``), as ||s - t||^2 = 4 * Hamming(s, t).

Why the GEMM before the popcount on x86: measured on the 2-core AVX-512 EPYC (avx512_vpopcntdq,
avx512_bitalg, avx512_vnni), interleaved with faiss IndexBinaryFlat at 2 threads: oneDNN's int8
GEMM with the prepack cached ran 2-4x faiss at 1024 bits and 1.2-1.6x at 7168; the NumPy popcount
1.3-2x and 0.5x (three passes of NumPy loops per word against faiss's one fused loop). Per-call
prepacking, which the GEMM path did before, was ~45 % of its time at 7168 bits (0.2x faiss). With
oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, NumPy at X86_V3) the order was the same.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from networks.bits import unpack_bits
from nn_search.popcount import popcount_hamming_top2
from nn_search.reference_cache import ReferenceCache
from nn_search.scores import Candidates
from nn_search.streaming import Top2, check_pair, merge_top_k, top2_sq_distances, top_k_of_query_chunks, two_nearest


def _onednn_qlinear():
    """oneDNN's int8 linear with an FP32 output (the op Inductor's x86 int8 path uses), or None."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.onednn.qlinear_prepack, torch.ops.onednn.qlinear_pointwise
    except (AttributeError, RuntimeError):
        return None


_ONEDNN_QLINEAR = _onednn_qlinear()
# rows per prepacked reference block: at most reference_chunk_size and this many bytes. With the
# prepack cached, larger blocks mean fewer top-k merges: at 7168 bits, 4 / 8 / 16 / 32 MiB blocks ran
# 0.9 / 1.1-1.3 / 1.3-1.5 / 1.4x faiss on the 2-core AVX-512 EPYC (1024 bits: no difference)
_PACKED_BLOCK_BYTES = 2**25
# the prepacked reference (about N x K bytes) is kept between calls up to this size; a larger one
# takes the popcount path, whose packed reference is 8x smaller (per-call prepacks cost 0.2x faiss)
PREPACKED_CACHE_BYTES = 2**30
_PREPACKED = ReferenceCache()  # the prepacked blocks of the last reference searched on this path


def _prepack_blocks(reference_signs: Tensor, chunk_size: int, reference_chunk_size: int) -> list[tuple[int, object, Tensor]]:
    """(N, K) signs -> [(block_start, oneDNN prepacked block, (b,) FP32 bias -|r|)], the reference side of the GEMM."""
    prepack, _ = _ONEDNN_QLINEAR
    reference_chunk_size = min(reference_chunk_size, max(256, _PACKED_BLOCK_BYTES // reference_signs.shape[1]))
    blocks = []
    for block_start in range(0, reference_signs.shape[0], reference_chunk_size):
        block = reference_signs[block_start : block_start + reference_chunk_size].contiguous()  # (b, K)
        packed = prepack(block, [chunk_size, block.shape[1]])  # oneDNN's blocked weight layout
        blocks.append((block_start, packed, block.gt(0).sum(1, dtype=torch.int32).neg_().float()))  # bias (b,) -|r|
    return blocks


def _negative_hamming_blocks(query_signs: Tensor, reference_signs: Tensor, chunk_size: int, reference_chunk_size: int):
    """Yield (block_start, scorer) per reference block; scorer(rows) -> (c, b) FP32 -Hamming of those queries.

    Hamming(q, r) = |r| - sum_i q_i s_i for bits q_i in {0, 1} and signs s_i = 2 r_i - 1, so one int8
    GEMM with the bias -|r| writes the negated distances (higher = nearer) as exact integers.
    """
    _, linear = _ONEDNN_QLINEAR
    query_bits = query_signs.gt(0).to(torch.uint8)  # (Q, K) 0/1
    unit_scale, zero_point = torch.ones(1), torch.zeros(1, dtype=torch.long)
    build = lambda reference: _prepack_blocks(reference, chunk_size, reference_chunk_size)  # noqa: E731
    for block_start, packed, bias in _PREPACKED.get(reference_signs, build, params=(chunk_size, reference_chunk_size)):

        def scorer(rows: slice, packed=packed, bias=bias) -> Tensor:
            return linear(query_bits[rows], 1.0, 0, packed, unit_scale, zero_point, bias, 1.0, 0, torch.float32, "none", [], "")

        yield block_start, scorer


def _hamming_top2_onednn(query_signs: Tensor, reference_signs: Tensor, chunk_size: int, reference_chunk_size: int) -> Top2:
    best: Candidates | None = None
    num_queries = query_signs.shape[0]
    for block_start, scorer in _negative_hamming_blocks(query_signs, reference_signs, chunk_size, reference_chunk_size):
        found = top_k_of_query_chunks(scorer, num_queries, chunk_size, 2, block_start)
        best = found if best is None else merge_top_k(best, found, 2)
    assert best is not None  # the reference has rows (check_pair)
    return two_nearest(-best.scores.double(), best.indices)  # (Q, k) Hamming distances, exact


def hamming_path(query_signs: Tensor, reference_signs: Tensor) -> str:
    """Which search `hamming_top2` runs on these inputs: "oneDNN int8 GEMM", "popcount" or "GEMM" (see the module docstring)."""
    on_cpu = query_signs.device.type == "cpu" and reference_signs.device.type == "cpu"
    if not on_cpu:
        return "GEMM"
    prepacked_bytes = reference_signs.shape[0] * reference_signs.shape[1]
    if _ONEDNN_QLINEAR is not None and 0 < reference_signs.shape[1] < 2**24 and prepacked_bytes <= PREPACKED_CACHE_BYTES:
        return "oneDNN int8 GEMM"
    return "popcount" if hasattr(np, "bitwise_count") else "GEMM"


def hamming_top2(query_codes: Tensor, reference_codes: Tensor, chunk_size: int = 1024, reference_chunk_size: int = 4096) -> Top2:
    """Hamming distances (as float64 integers) from every query code to its two nearest reference codes.

    query_codes (Q, K) and reference_codes (N, K) hold signed bits: int8 in {-1, +1} is used as is;
    any other dtype is binarized with `> 0 -> +1`. Token grids must be unpacked first:
    `token_codes(tokens, num_bits)`. The path (`hamming_path`, module docstring): on CPU one int8
    GEMM of query bits and reference signs that writes -Hamming exactly (oneDNN), or XOR +
    popcount of packed words; elsewhere, as ||s - t||^2 = 4 * Hamming(s, t) for +-1 codes, the L2
    search on the int8 codes with exact integer (int8 GEMM, or FP32) dot products, divided by 4.
    All give the same distances. Among more than two equally near codes, which two are returned
    is unspecified (the popcount path returns the lowest indices). chunk_size /
    reference_chunk_size size the GEMMs; the popcount path sizes its own pieces. The CPU paths
    keep a packed copy of the last reference searched while it is unchanged (`reference_cache.py`; the GEMM fallback does not).
    """
    query_signs, reference_signs = signed_codes(query_codes), signed_codes(reference_codes)
    check_pair(query_signs, reference_signs)
    path = hamming_path(query_signs, reference_signs)
    if path == "popcount":
        return popcount_hamming_top2(query_signs, reference_signs)
    if query_signs.shape[0] and path == "oneDNN int8 GEMM":
        try:
            with torch.no_grad():
                return _hamming_top2_onednn(query_signs, reference_signs, chunk_size, reference_chunk_size)
        except RuntimeError as error:  # an unusual oneDNN build: the popcount / GEMM paths below are exact too
            warnings.warn(f"oneDNN int8 linear failed ({error}); Hamming search falls back to another path", stacklevel=2)
            if hasattr(np, "bitwise_count"):
                return popcount_hamming_top2(query_signs, reference_signs)
    top = top2_sq_distances(
        query_signs,
        reference_signs,
        reference_sq_norms=None,
        chunk_size=chunk_size,
        rerank_k=2,  # integer scores are exact: the two best are the two nearest
        reference_chunk_size=reference_chunk_size,
        equal_norms=True,  # every +-1 code has ||s||^2 = K
    )
    return top._replace(d1=top.d1 / 4, d2=top.d2 / 4)


def signed_codes(codes: Tensor) -> Tensor:
    """Any real or integer code matrix -> int8 in {-1, +1} (> 0 counts as +1); int8 passes through."""
    if codes.dtype == torch.int8:
        return codes
    return torch.where(codes > 0, 1, -1).to(torch.int8)


def token_codes(tokens: Tensor, num_bits: int) -> Tensor:
    """(B, h, w) token ids -> (B, C * h * w) int8 signed bits, the input of `hamming_top2`."""
    return unpack_bits(tokens, num_bits, dtype=torch.int8).flatten(1)  # (B, C * h * w)

"""Hamming top-2 of signed bit codes (latent token grids): exact, on any device.

On CPU, oneDNN's int8 linear multiplies query bits (0/1) by reference signs (+-1) with the bias
-|r| fused in, so the GEMM writes -Hamming directly. Elsewhere the L2 search on the +-1 codes
(``streaming.py``), as ||s - t||^2 = 4 * Hamming(s, t).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from networks.bits import unpack_bits
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
# oneDNN re-reads the packed reference block for every query tile: keeping the block at 4 MiB
# (4096 codes at 1024 bits, 585 at 7168) leaves it in cache (measured 0.65x -> 0.83-1.0x of faiss
# at 7168 bits on the 2-core AVX2 box, unchanged at 1024 bits)
_PACKED_BLOCK_BYTES = 2**22


def _negative_hamming_blocks(query_signs: Tensor, reference_signs: Tensor, chunk_size: int, reference_chunk_size: int):
    """Yield (block_start, scorer) per reference block; scorer(rows) -> (c, b) FP32 -Hamming of those queries.

    Hamming(q, r) = |r| - sum_i q_i s_i for bits q_i in {0, 1} and signs s_i = 2 r_i - 1, so one int8
    GEMM with the bias -|r| writes the negated distances (higher = nearer) as exact integers.
    """
    prepack, linear = _ONEDNN_QLINEAR
    query_bits = query_signs.gt(0).to(torch.uint8)  # (Q, K) 0/1
    unit_scale, zero_point = torch.ones(1), torch.zeros(1, dtype=torch.long)
    reference_chunk_size = min(reference_chunk_size, max(256, _PACKED_BLOCK_BYTES // query_signs.shape[1]))
    for block_start in range(0, reference_signs.shape[0], reference_chunk_size):
        block = reference_signs[block_start : block_start + reference_chunk_size].contiguous()  # (b, K)
        packed = prepack(block, [chunk_size, block.shape[1]])  # oneDNN's blocked weight layout, once per block
        bias = block.gt(0).sum(1, dtype=torch.int32).neg_().float()  # (b,) -|r|

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


def _onednn_hamming_applies(query_signs: Tensor, reference_signs: Tensor) -> bool:
    on_cpu = query_signs.device.type == "cpu" and reference_signs.device.type == "cpu"
    return on_cpu and _ONEDNN_QLINEAR is not None and 0 < query_signs.shape[1] < 2**24


def hamming_top2(query_codes: Tensor, reference_codes: Tensor, chunk_size: int = 1024, reference_chunk_size: int = 4096) -> Top2:
    """Hamming distances (as float64 integers) from every query code to its two nearest reference codes.

    query_codes (Q, K) and reference_codes (N, K) hold signed bits: int8 in {-1, +1} is used as is;
    any other dtype is binarized with `> 0 -> +1`. Token grids must be unpacked first:
    `token_codes(tokens, num_bits)`. On CPU (oneDNN): one int8 GEMM of query bits and reference
    signs writes -Hamming exactly (see the module docstring). Elsewhere, as ||s - t||^2 = 4 *
    Hamming(s, t) for +-1 codes, the L2 search on the int8 codes with exact integer (int8 GEMM, or
    FP32) dot products, divided by 4. Among more than two equally near codes, which two are
    returned is unspecified.
    """
    query_signs, reference_signs = signed_codes(query_codes), signed_codes(reference_codes)
    check_pair(query_signs, reference_signs)
    if query_signs.shape[0] and _onednn_hamming_applies(query_signs, reference_signs):
        try:
            with torch.no_grad():
                return _hamming_top2_onednn(query_signs, reference_signs, chunk_size, reference_chunk_size)
        except RuntimeError as error:  # an unusual oneDNN build: the GEMM path below is exact too
            warnings.warn(f"oneDNN int8 linear failed ({error}); Hamming search falls back to the GEMM path", stacklevel=2)
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

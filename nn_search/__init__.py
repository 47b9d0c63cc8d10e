"""Exact nearest-neighbour search for the memorization tests: L2 top-2 and Hamming top-2.

Both searches stream the reference in blocks and the queries in chunks, score every (chunk, block)
pair with one GEMM (scores q.r - ||r||^2 / 2: higher = nearer) and keep a running top-k of
candidates per query (`streaming.py`). Memory therefore stays at O(chunk_size x
reference_chunk_size) scores plus one cast reference block, never Q x N.

GEMM flavours, picked from the input dtypes and the device (`scores.py`):
- uint8 pixels (or int8 codes) on both sides, where int8 GEMMs are fast (CUDA; CPUs with
  AVX512-VNNI): an int8 GEMM with int32 accumulation (`int8_gemm.py`) on rows shifted by -128, so
  every score is an exact integer and the distances follow from the scores exactly. Without VNNI,
  torch's CPU int8 GEMM is a plain loop (~1 GOP/s), so those CPUs take the FP32 path below;
- Hamming on CPU: query bits (uint8 0/1) times reference signs (int8 +-1) through oneDNN's int8
  linear with an FP32 output and the bias -|r| fused in, i.e. the GEMM writes -Hamming directly
  (exact: every value is an integer below 2^24; products <= 1 cannot saturate AVX2's 16-bit pairs;
  `hamming.py`), with the prepacked reference kept between calls (`reference_cache.py`); where that
  GEMM is absent or the reference too large to keep, XOR + popcount of bit-packed words (`popcount.py`);
- anything else: an FP32 GEMM with TF32/bf16 shortcuts forced off (`networks/precision.strict_fp32`), whose
  rounding can only reorder near-ties; an FP64 re-rank of the top `rerank_k` candidates then
  gives exact distances (TF32/bf16 errors would flip borderline 1/3-ratio and PSNR cases).

Ties between equally distant rows resolve to the lower reference index among the candidates.
Exact row deduplication of references is `deduplication.py`.
"""

from __future__ import annotations

from nn_search.deduplication import UniqueRows, deduplicate_rows, first_occurrence
from nn_search.hamming import hamming_top2, signed_codes, token_codes
from nn_search.int8_gemm import int8_matmul
from nn_search.l2 import exact_l2_top2, search_sq_norms
from nn_search.streaming import Top2

__all__ = [
    "Top2",
    "UniqueRows",
    "deduplicate_rows",
    "exact_l2_top2",
    "first_occurrence",
    "hamming_top2",
    "int8_matmul",
    "search_sq_norms",
    "signed_codes",
    "token_codes",
]

"""GEMM flavours of the NN search ("spaces"): prepare rows once, then score blocks (higher score = nearer).

- `Int8Space`: exact int32 scores of uint8 pixels (shifted to int8) or int8 codes (`int8_gemm.py`);
- `Float32Space`: strict-FP32 scores of float rows, good for ranking only: the candidates are
  re-ranked with FP64 distances (`exact_sq_distances`);
- `ShiftedFloat32Space`: uint8/int8 rows where int8 GEMMs are slow, scored in FP32.

`space_for(queries, reference)` picks one from the dtypes and the device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

import nn_search.int8_gemm as int8_gemm  # looked up at call time, so a test can swap int8_matmul / fast_int8_gemm
from nn_search.int8_gemm import MAX_EXACT_INT8_DIMS, pad_columns, round_up


class Candidates(NamedTuple):
    scores: Tensor  # (Q, k) GEMM scores, higher = nearer
    indices: Tensor  # (Q, k) long reference rows


class Int8Space:
    """Exact integer scores for uint8 pixels (shifted to int8) or int8 codes."""

    @staticmethod
    def prepare(rows: Tensor) -> Tensor:
        """(M, D) uint8/int8 -> (M, D8) int8. uint8 v becomes v ^ 128 read as int8, i.e. v - 128
        (a common shift leaves every distance unchanged); zero columns up to D8 = D rounded up to
        8 change no dot product and satisfy the CUDA int8 kernel."""
        shifted = (rows ^ 128).view(torch.int8) if rows.dtype == torch.uint8 else rows.contiguous()  # (M, D)
        return pad_columns(shifted, round_up(rows.shape[1], 8))

    @staticmethod
    def sq_norms(prepared: Tensor, group: int = 4096) -> Tensor:
        """(M, D8) int8 -> (M,) exact squared norms: int16 squares (<= 2^14) summed in int32."""
        wide = (g.to(torch.int16) for g in prepared.split(group))  # (<= group, D8) int16 each
        return torch.cat([(g * g).sum(1, dtype=torch.int32) for g in wide])

    @staticmethod
    def scores(queries: Tensor, block: Tensor, neg_sq_norms: Tensor | None) -> Tensor:
        """(c, D8) x (b, D8) -> (c, b) int32 2 q.r - ||r||^2 (higher = nearer; the query norm is
        constant per row). Without norms (all equal, e.g. +-1 codes) just the dot product."""
        dot = int8_gemm.int8_matmul(queries, block)  # (c, b) int32
        return dot if neg_sq_norms is None else torch.add(neg_sq_norms, dot, alpha=2, out=dot)

    @staticmethod
    def neg_norm_bias(sq_norms: Tensor) -> Tensor:
        return -sq_norms  # pairs with 2 q.r

    @staticmethod
    def owns_norms(sq_norms: Tensor) -> bool:
        return sq_norms.dtype == torch.int32  # what `sq_norms` (shifted rows) returns

    @staticmethod
    def sq_distances(queries: Tensor, query_rows: Tensor, reference: Tensor, candidates: Candidates, equal_norms: bool) -> Tensor:
        """Exact integer scores give the distances without touching the rows again:
        ||q - r||^2 = ||q||^2 - (2 q.r - ||r||^2), or ||q||^2 + ||r||^2 - 2 q.r for bare dot products."""
        query_sq = Int8Space.sq_norms(query_rows).long()[:, None]  # (Q, 1)
        scores = candidates.scores.long()  # (Q, k)
        if not equal_norms:
            return (query_sq - scores).double()
        reference_sq = Int8Space.sq_norms(Int8Space.prepare(reference[:1])).long()  # (1,) every row's
        return (query_sq + reference_sq - 2 * scores).double()


class Float32Space:
    """FP32 scores for float inputs; exact only up to rounding, hence the FP64 re-rank."""

    @staticmethod
    def prepare(rows: Tensor) -> Tensor:
        return rows.to(torch.float32).contiguous()  # no copy when already contiguous float32

    @staticmethod
    def sq_norms(prepared: Tensor) -> Tensor:
        return torch.linalg.vector_norm(prepared, dim=1).square_()  # (M,)

    @staticmethod
    def scores(queries: Tensor, block: Tensor, neg_sq_norms: Tensor | None) -> Tensor:
        """(c, D) x (b, D) -> (c, b) q.r - ||r||^2 / 2 (higher = nearer), bias fused into the GEMM.
        Called under `strict_fp32` (see `streaming.top2_sq_distances`)."""
        if queries.device.type == "cpu" and _ONEDNN_LINEAR is not None:
            return _ONEDNN_LINEAR(queries, block, neg_sq_norms, "none", [], "")  # (c, b)
        if neg_sq_norms is None:
            return torch.mm(queries, block.T)  # (c, b)
        return torch.addmm(neg_sq_norms, queries, block.T)  # (c, b), bias broadcast over rows

    @staticmethod
    def neg_norm_bias(sq_norms: Tensor) -> Tensor:
        return sq_norms.to(torch.float32) * -0.5  # pairs with q.r (exact halving)

    @staticmethod
    def owns_norms(sq_norms: Tensor) -> bool:
        return sq_norms.is_floating_point()

    @staticmethod
    def sq_distances(queries: Tensor, query_rows: Tensor, reference: Tensor, candidates: Candidates, equal_norms: bool) -> Tensor:
        """FP32 scores are only good for ranking: re-rank the candidates in FP64."""
        return exact_sq_distances(queries, reference, candidates.indices)


class ShiftedFloat32Space(Float32Space):
    """uint8/int8 rows where int8 GEMMs are slow: the FP32 path on the int8 path's rows (uint8
    shifted by -128), so both paths share one set of exact int32 norms (`search_sq_norms`), which
    a bf16 cast of a metric leaves intact; the FP64 re-rank gives exact distances."""

    @staticmethod
    def prepare(rows: Tensor) -> Tensor:
        return Int8Space.prepare(rows).float()  # (M, D8) exact small integers

    @staticmethod
    def sq_norms(prepared: Tensor) -> Tensor:
        return prepared.double().square().sum(1).to(torch.int32)  # exact below MAX_EXACT_INT8_DIMS

    @staticmethod
    def neg_norm_bias(sq_norms: Tensor) -> Tensor:
        return sq_norms.to(torch.float32) * -0.5  # rounds above 2^24: only ranking, re-ranked in FP64

    @staticmethod
    def owns_norms(sq_norms: Tensor) -> bool:
        return sq_norms.dtype == torch.int32


def _onednn_linear():
    """oneDNN's fp32 linear (x @ w.T + b), the op Inductor uses on CPU, or None where absent.

    Private, but worth it: its JIT kernels pick AVX-512 on any x86 vendor, while MKL's sgemm (what
    addmm calls) runs its AVX2 path on AMD; on the 2-core EPYC CI machine that is ~145 vs ~75
    GFLOP/s per core. It honours the fp32 precision setting, which `strict_fp32` pins to IEEE.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_ONEDNN_LINEAR = _onednn_linear()


def integer_rows(queries: Tensor, reference: Tensor) -> bool:
    """Both sides uint8 (or both int8) and short enough for exact int32 scores."""
    integer_pair = queries.dtype == reference.dtype and queries.dtype in (torch.uint8, torch.int8)
    return integer_pair and queries.shape[1] < MAX_EXACT_INT8_DIMS


Space = type[Int8Space] | type[Float32Space]
"""A GEMM flavour (the class itself: its methods are static)."""


def space_for(queries: Tensor, reference: Tensor) -> Space:
    if not integer_rows(queries, reference):
        return Float32Space
    return Int8Space if int8_gemm.fast_int8_gemm(queries.device) else ShiftedFloat32Space


def exact_sq_distances(queries: Tensor, reference: Tensor, candidates: Tensor, elements_per_step: int = 2**15) -> Tensor:
    """(Q, D), (N, D), (Q, k) -> (Q, k) float64 squared distances to the candidate rows.

    FP64 differences of uint8 or fp32 values are exact and so are their squares; only the final
    sum rounds (relative 1e-16), so this is the reference-grade distance. Steps of 2^15 elements
    stay in cache (5x faster than one big pass) and at torch's parallel grain size, so they run on
    the calling thread: a thread barrier per small op costs more than it saves on shared cores
    (measured: median 0.04 s vs 0.1-0.5 s with 2^17-2^19 element steps on the loaded CI box).
    """
    queries = queries.double()  # (Q, D), cast once
    rows_per_step = max(1, elements_per_step // (candidates.shape[1] * queries.shape[1]))
    out = []
    for start in range(0, queries.shape[0], rows_per_step):
        cand = candidates[start : start + rows_per_step]  # (c, k)
        neighbours = reference.index_select(0, cand.reshape(-1)).view(*cand.shape, -1)  # (c, k, D)
        diff = neighbours - queries[start : start + rows_per_step, None]  # (c, k, D) float64 by promotion
        out.append(diff.square_().sum(-1))  # (c, k)
    return torch.cat(out)

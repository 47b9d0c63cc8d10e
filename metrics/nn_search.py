"""Exact nearest-neighbour search for the memorization tests: L2 top-2 and Hamming top-2.

Both searches stream the reference in blocks and the queries in chunks, score every (chunk, block)
pair with one GEMM (scores q.r - ||r||^2 / 2: higher = nearer) and keep a running top-k of
candidates per query. Memory therefore stays at O(chunk_size x reference_chunk_size) scores plus
one cast reference block, never Q x N.

GEMM flavours, picked from the input dtypes and the device:
- uint8 pixels (or int8 codes) on both sides, where int8 GEMMs are fast (CUDA; CPUs with
  AVX512-VNNI): an int8 GEMM with int32 accumulation on rows shifted by -128, so every score is an
  exact integer and the distances follow from the scores exactly. Without VNNI, torch's CPU int8
  GEMM is a plain loop (~1 GOP/s), so those CPUs take the FP32 path below;
- Hamming on CPU: query bits (uint8 0/1) times reference signs (int8 +-1) through oneDNN's int8
  linear with an FP32 output and the bias -|r| fused in, i.e. the GEMM writes -Hamming directly
  (exact: every value is an integer below 2^24; products <= 1 cannot saturate AVX2's 16-bit pairs);
- anything else: an FP32 GEMM with TF32/bf16 shortcuts forced off (`networks/precision.strict_fp32`), whose
  rounding can only reorder near-ties; an FP64 re-rank of the top `rerank_k` candidates then
  gives exact distances (TF32/bf16 errors would flip borderline 1/3-ratio and PSNR cases).

Ties between equally distant rows resolve to the lower reference index among the candidates.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from networks.bits import unpack_bits
from networks.precision import strict_fp32

# the int8 path scores 2 q.r - ||r||^2 in int32: per dimension |2 q_i r_i| <= 2^15 and r_i^2 <= 2^14,
# so the score is exact below this many dimensions (larger rows take the FP32 path)
_MAX_EXACT_INT8_DIMS = 2**31 // (3 * 2**14)


class Top2(NamedTuple):
    """Distances and indices of the two nearest reference rows of every query."""

    d1: Tensor  # (Q,) float64
    d2: Tensor  # (Q,) float64, inf when the reference has a single row
    idx1: Tensor  # (Q,) long
    idx2: Tensor  # (Q,) long, -1 when the reference has a single row


class UniqueRows(NamedTuple):
    """Distinct rows in order of first appearance, and where every original row went."""

    rows: Tensor  # (U, ...) same dtype and trailing shape as the input
    inverse: Tensor  # (N,) long: x[i] == rows[inverse[i]]


class _Candidates(NamedTuple):
    scores: Tensor  # (Q, k) GEMM scores, higher = nearer
    indices: Tensor  # (Q, k) long reference rows


# --------------------------------------------------------------------------------------------
# GEMM flavours: prepare rows once, then score blocks (higher score = nearer)


class _Int8Space:
    """Exact integer scores for uint8 pixels (shifted to int8) or int8 codes."""

    @staticmethod
    def prepare(rows: Tensor) -> Tensor:
        """(M, D) uint8/int8 -> (M, D8) int8. uint8 v becomes v ^ 128 read as int8, i.e. v - 128
        (a common shift leaves every distance unchanged); zero columns up to D8 = D rounded up to
        8 change no dot product and satisfy the CUDA int8 kernel."""
        shifted = (rows ^ 128).view(torch.int8) if rows.dtype == torch.uint8 else rows.contiguous()  # (M, D)
        return _pad_columns(shifted, _round_up(rows.shape[1], 8))

    @staticmethod
    def sq_norms(prepared: Tensor, group: int = 4096) -> Tensor:
        """(M, D8) int8 -> (M,) exact squared norms: int16 squares (<= 2^14) summed in int32."""
        wide = (g.to(torch.int16) for g in prepared.split(group))  # (<= group, D8) int16 each
        return torch.cat([(g * g).sum(1, dtype=torch.int32) for g in wide])

    @staticmethod
    def scores(queries: Tensor, block: Tensor, neg_sq_norms: Tensor | None) -> Tensor:
        """(c, D8) x (b, D8) -> (c, b) int32 2 q.r - ||r||^2 (higher = nearer; the query norm is
        constant per row). Without norms (all equal, e.g. +-1 codes) just the dot product."""
        dot = _int8_matmul(queries, block)  # (c, b) int32
        return dot if neg_sq_norms is None else torch.add(neg_sq_norms, dot, alpha=2, out=dot)

    @staticmethod
    def neg_norm_bias(sq_norms: Tensor) -> Tensor:
        return -sq_norms  # pairs with 2 q.r

    @staticmethod
    def owns_norms(sq_norms: Tensor) -> bool:
        return sq_norms.dtype == torch.int32  # what `sq_norms` (shifted rows) returns

    @staticmethod
    def sq_distances(queries: Tensor, query_rows: Tensor, reference: Tensor, candidates: _Candidates, equal_norms: bool) -> Tensor:
        """Exact integer scores give the distances without touching the rows again:
        ||q - r||^2 = ||q||^2 - (2 q.r - ||r||^2), or ||q||^2 + ||r||^2 - 2 q.r for bare dot products."""
        query_sq = _Int8Space.sq_norms(query_rows).long()[:, None]  # (Q, 1)
        scores = candidates.scores.long()  # (Q, k)
        if not equal_norms:
            return (query_sq - scores).double()
        reference_sq = _Int8Space.sq_norms(_Int8Space.prepare(reference[:1])).long()  # (1,) every row's
        return (query_sq + reference_sq - 2 * scores).double()


class _Float32Space:
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
        Called under `strict_fp32` (see `_top2_sq_distances`)."""
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
    def sq_distances(queries: Tensor, query_rows: Tensor, reference: Tensor, candidates: _Candidates, equal_norms: bool) -> Tensor:
        """FP32 scores are only good for ranking: re-rank the candidates in FP64."""
        return _exact_sq_distances(queries, reference, candidates.indices)


class _ShiftedFloat32Space(_Float32Space):
    """uint8/int8 rows where int8 GEMMs are slow: the FP32 path on the int8 path's rows (uint8
    shifted by -128), so both paths share one set of exact int32 norms (`search_sq_norms`), which
    a bf16 cast of a metric leaves intact; the FP64 re-rank gives exact distances."""

    @staticmethod
    def prepare(rows: Tensor) -> Tensor:
        return _Int8Space.prepare(rows).float()  # (M, D8) exact small integers

    @staticmethod
    def sq_norms(prepared: Tensor) -> Tensor:
        return prepared.double().square().sum(1).to(torch.int32)  # exact below _MAX_EXACT_INT8_DIMS

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


def _int8_matmul(a: Tensor, b: Tensor) -> Tensor:
    """(M, K) int8 @ (N, K)^T int8 -> (M, N) int32, exact.

    `torch._int_mm` is private but the only exact int8 GEMM in torch; on CUDA (cuBLAS) it also
    wants M > 16, K >= 16, K % 8 == 0 and N % 8 == 0, with b passed as the transposed view of a
    row-major (N, K) matrix, so pad with zero rows/columns there (they add nothing to any dot
    product) and cut the result back. Should a device still reject it, FP64 products of int8
    values are exact as well (slower, hence the warning).
    """
    num_a, num_b = a.shape[0], b.shape[0]
    if a.is_cuda:
        width = max(16, _round_up(a.shape[1], 8))
        a = _pad_rows(_pad_columns(a, width), max(17, num_a))
        b = _pad_rows(_pad_columns(b, width), _round_up(num_b, 8))
    try:
        product = torch._int_mm(a, b.T)  # (M', N') int32
    except RuntimeError as error:
        warnings.warn(f"torch._int_mm failed ({error}); exact FP64 fallback for the int8 NN search", stacklevel=2)
        product = (a.double() @ b.double().T).to(torch.int32)  # (M', N'), |sums| < 2^31 by _MAX_EXACT_INT8_DIMS
    return product[:num_a, :num_b]


def _fast_int8_gemm(device: torch.device) -> bool:
    """Whether torch._int_mm is a real int8 GEMM here: cuBLAS on CUDA, oneDNN on CPUs with
    AVX512-VNNI (elsewhere torch runs it as a scalar loop, slower than the FP32 path)."""
    if not hasattr(torch, "_int_mm"):
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and getattr(torch.cpu, "_is_vnni_supported", lambda: False)()


def _integer_rows(queries: Tensor, reference: Tensor) -> bool:
    integer_pair = queries.dtype == reference.dtype and queries.dtype in (torch.uint8, torch.int8)
    return integer_pair and queries.shape[1] < _MAX_EXACT_INT8_DIMS


def _space_for(queries: Tensor, reference: Tensor) -> type:
    if not _integer_rows(queries, reference):
        return _Float32Space
    return _Int8Space if _fast_int8_gemm(queries.device) else _ShiftedFloat32Space


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _pad_rows(x: Tensor, num_rows: int) -> Tensor:
    if x.shape[0] == num_rows:
        return x
    return torch.cat([x, x.new_zeros(num_rows - x.shape[0], *x.shape[1:])])


def _pad_columns(x: Tensor, num_columns: int) -> Tensor:
    if x.shape[1] == num_columns:
        return x
    return torch.cat([x, x.new_zeros(x.shape[0], num_columns - x.shape[1])], dim=1)


# --------------------------------------------------------------------------------------------
# Hamming on CPU: oneDNN int8 linear, bits x signs, -|r| fused


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
    best: _Candidates | None = None
    num_queries = query_signs.shape[0]
    for block_start, scorer in _negative_hamming_blocks(query_signs, reference_signs, chunk_size, reference_chunk_size):
        found = _top_k_of_query_chunks(scorer, num_queries, chunk_size, 2, block_start)
        best = found if best is None else _merge_top_k(best, found, 2)
    return _two_nearest(-best.scores.double(), best.indices)  # (Q, k) Hamming distances, exact


def _onednn_hamming_applies(query_signs: Tensor, reference_signs: Tensor) -> bool:
    on_cpu = query_signs.device.type == "cpu" and reference_signs.device.type == "cpu"
    return on_cpu and _ONEDNN_QLINEAR is not None and 0 < query_signs.shape[1] < 2**24


# --------------------------------------------------------------------------------------------
# streaming candidate search and exact re-rank


def _best_candidates(
    space: type,
    query_rows: Tensor,
    reference: Tensor,
    num_candidates: int,
    reference_sq_norms: Tensor | None,
    chunk_size: int,
    reference_chunk_size: int,
    equal_norms: bool,
) -> _Candidates:
    """(Q, D') prepared queries, (N, D) reference -> the k highest-scoring rows of every query.

    Blocks of the reference are cast once each (outer loop); queries were cast once up front, as
    the query side is the small one in every use here (a batch of samples vs. a training set).
    """
    num_queries = query_rows.shape[0]
    best: _Candidates | None = None
    for block_start in range(0, reference.shape[0], reference_chunk_size):
        block = space.prepare(reference[block_start : block_start + reference_chunk_size])  # (b, D')
        if equal_norms:
            bias = None  # ||r||^2 is the same for every row: the dot product alone ranks them
        elif reference_sq_norms is not None and space.owns_norms(reference_sq_norms):
            bias = space.neg_norm_bias(reference_sq_norms[block_start : block_start + block.shape[0]])  # (b,)
        else:
            bias = space.neg_norm_bias(space.sq_norms(block))  # (b,)
        scorer = lambda rows, block=block, bias=bias: space.scores(query_rows[rows], block, bias)  # noqa: E731
        found = _top_k_of_query_chunks(scorer, num_queries, chunk_size, num_candidates, block_start)
        best = found if best is None else _merge_top_k(best, found, num_candidates)
    return best


def _top_k_of_query_chunks(scorer, num_queries: int, chunk_size: int, k: int, block_start: int) -> _Candidates:
    """scorer(rows) -> (c, b) scores of those queries against one reference block; the k best per query."""
    chunk_scores, chunk_indices = [], []
    for query_start in range(0, num_queries, chunk_size):
        scores = scorer(slice(query_start, query_start + chunk_size))  # (c, b)
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1, sorted=False)  # (c, k)
        chunk_scores.append(top.values)
        chunk_indices.append(top.indices + block_start)
    return _Candidates(torch.cat(chunk_scores), torch.cat(chunk_indices))  # (Q, k) each


def _merge_top_k(a: _Candidates, b: _Candidates, k: int) -> _Candidates:
    scores = torch.cat([a.scores, b.scores], dim=1)  # (Q, ka + kb)
    indices = torch.cat([a.indices, b.indices], dim=1)  # (Q, ka + kb)
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1, sorted=False)
    return _Candidates(top.values, indices.gather(1, top.indices))


def _exact_sq_distances(queries: Tensor, reference: Tensor, candidates: Tensor, elements_per_step: int = 2**15) -> Tensor:
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


def _two_nearest(sq_distances: Tensor, candidates: Tensor) -> Top2:
    """(Q, k) distances and indices -> Top2 of *squared* distances, ties to the lower index."""
    by_index, index_order = candidates.sort(dim=1)  # (Q, k)
    sq_distances = sq_distances.gather(1, index_order)  # (Q, k)
    sq_sorted, order = sq_distances.sort(dim=1, stable=True)  # (Q, k)
    indices = by_index.gather(1, order)  # (Q, k)
    if indices.shape[1] == 1:  # single reference row: no second neighbour
        sq_sorted = torch.cat([sq_sorted, torch.full_like(sq_sorted, float("inf"))], dim=1)
        indices = torch.cat([indices, torch.full_like(indices, -1)], dim=1)
    return Top2(sq_sorted[:, 0], sq_sorted[:, 1], indices[:, 0], indices[:, 1])


def _check_pair(queries: Tensor, reference: Tensor) -> None:
    if queries.ndim != 2 or reference.ndim != 2 or queries.shape[1] != reference.shape[1]:
        raise ValueError(f"expected (Q, D) queries and (N, D) reference, got {tuple(queries.shape)} and {tuple(reference.shape)}")
    if reference.shape[0] == 0:
        raise ValueError("the reference set is empty")


def _top2_sq_distances(
    queries: Tensor,
    reference: Tensor,
    reference_sq_norms: Tensor | None,
    chunk_size: int,
    rerank_k: int,
    reference_chunk_size: int,
    equal_norms: bool = False,
) -> Top2:
    _check_pair(queries, reference)
    if rerank_k < 2:
        raise ValueError(f"rerank_k must be >= 2 to find two neighbours, got {rerank_k}")
    num_candidates = min(rerank_k, reference.shape[0])
    if queries.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.float64, device=queries.device)
        return Top2(empty, empty, empty.long(), empty.long())
    space = _space_for(queries, reference)
    with torch.no_grad(), strict_fp32():
        query_rows = space.prepare(queries)  # (Q, D')
        candidates = _best_candidates(
            space, query_rows, reference, num_candidates, reference_sq_norms, chunk_size, reference_chunk_size, equal_norms
        )
        sq_distances = space.sq_distances(queries, query_rows, reference, candidates, equal_norms)  # (Q, k) float64
        return _two_nearest(sq_distances, candidates.indices)


# --------------------------------------------------------------------------------------------
# public API


def exact_l2_top2(
    queries: Tensor,
    reference: Tensor,
    reference_sq_norms: Tensor | None = None,
    chunk_size: int = 1024,
    rerank_k: int = 8,
    reference_chunk_size: int = 4096,
) -> Top2:
    """L2 (not squared) distances from every query row to its two nearest reference rows.

    queries (Q, D) and reference (N, D), uint8 or float, on any one device. Both uint8: exact
    int8 GEMM scores, from which the distances follow exactly. Otherwise strict-FP32 GEMM scores
    whose `rerank_k` best candidates are re-ranked with FP64 distances, so the result matches a
    brute-force FP64 search unless more than `rerank_k` rows sit within FP32 rounding of the 2nd
    neighbour. Ties go to the lower index among the `rerank_k` candidates.

    reference_sq_norms: optional `search_sq_norms(reference)`, precomputed once for a reference
    that is searched again and again (it saves a pass over the reference per call; a float tensor
    of ||r||^2 also works for the FP32 path). Norms that do not fit the path taken are recomputed.
    chunk_size / reference_chunk_size: queries / reference rows scored per GEMM; peak extra memory
    is about chunk_size x reference_chunk_size x 4 B plus one cast reference block.
    """
    top = _top2_sq_distances(queries, reference, reference_sq_norms, chunk_size, rerank_k, reference_chunk_size)
    return top._replace(d1=top.d1.sqrt(), d2=top.d2.sqrt())


def hamming_top2(
    query_codes: Tensor,
    reference_codes: Tensor,
    chunk_size: int = 1024,
    reference_chunk_size: int = 4096,
) -> Top2:
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
    _check_pair(query_signs, reference_signs)
    if query_signs.shape[0] and _onednn_hamming_applies(query_signs, reference_signs):
        try:
            with torch.no_grad():
                return _hamming_top2_onednn(query_signs, reference_signs, chunk_size, reference_chunk_size)
        except RuntimeError as error:  # an unusual oneDNN build: the GEMM path below is exact too
            warnings.warn(f"oneDNN int8 linear failed ({error}); Hamming search falls back to the GEMM path", stacklevel=2)
    top = _top2_sq_distances(
        query_signs,
        reference_signs,
        reference_sq_norms=None,
        chunk_size=chunk_size,
        rerank_k=2,  # integer scores are exact: the two best are the two nearest
        reference_chunk_size=reference_chunk_size,
        equal_norms=True,  # every +-1 code has ||s||^2 = K
    )
    return top._replace(d1=top.d1 / 4, d2=top.d2 / 4)


def search_sq_norms(reference: Tensor) -> Tensor:
    """(N, D) -> (N,) the squared row norms `exact_l2_top2` ranks uint8 / float references with
    (int32, of the rows shifted by -128, for uint8 / int8; FP32 otherwise), for `reference_sq_norms=`."""
    space = _Int8Space if _integer_rows(reference, reference) else _Float32Space  # int32 norms serve both integer paths
    with torch.no_grad():
        return space.sq_norms(space.prepare(reference))


def signed_codes(codes: Tensor) -> Tensor:
    """Any real or integer code matrix -> int8 in {-1, +1} (> 0 counts as +1); int8 passes through."""
    if codes.dtype == torch.int8:
        return codes
    return torch.where(codes > 0, 1, -1).to(torch.int8)


def token_codes(tokens: Tensor, num_bits: int) -> Tensor:
    """(B, h, w) token ids -> (B, C * h * w) int8 signed bits, the input of `hamming_top2`."""
    return unpack_bits(tokens, num_bits, dtype=torch.int8).flatten(1)  # (B, C * h * w)


def deduplicate_rows(x: Tensor) -> UniqueRows:
    """Exact row deduplication of (N, ...) data (uint8 images, long token grids, any dtype).

    Rows keep the order of their first appearance, so data without duplicates comes back
    unchanged and `first_occurrence(inverse)` maps a unique row to a valid original index.
    """
    flat = x.reshape(x.shape[0], -1)  # (N, F)
    _, inverse = torch.unique(flat, dim=0, return_inverse=True)  # (N,) ids in sorted-row order
    first = first_occurrence(inverse)  # (U,) original index of each sorted unique row
    appearance_order = first.argsort()  # (U,) sorted-row ids by first appearance
    rank = torch.empty_like(appearance_order)
    rank[appearance_order] = torch.arange(len(first), device=x.device)  # sorted id -> appearance id
    return UniqueRows(rows=x[first[appearance_order]], inverse=rank[inverse])


def first_occurrence(inverse: Tensor) -> Tensor:
    """(N,) inverse ids -> (U,) lowest original index of every unique id."""
    num_unique = int(inverse.max()) + 1 if inverse.numel() else 0
    positions = torch.arange(inverse.numel(), device=inverse.device)
    first = torch.full((num_unique,), inverse.numel(), dtype=torch.long, device=inverse.device)
    return first.scatter_reduce_(0, inverse, positions, reduce="amin")

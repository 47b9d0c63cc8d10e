"""Exact L2 top-2 of uint8 pixel rows or float rows, and the reference norms it can reuse."""

from __future__ import annotations

import torch
from torch import Tensor

from nn_search.scores import Float32Space, Int8Space, integer_rows
from nn_search.streaming import Top2, top2_sq_distances


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
    top = top2_sq_distances(queries, reference, reference_sq_norms, chunk_size, rerank_k, reference_chunk_size)
    return top._replace(d1=top.d1.sqrt(), d2=top.d2.sqrt())


def search_sq_norms(reference: Tensor) -> Tensor:
    """(N, D) -> (N,) the squared row norms `exact_l2_top2` ranks uint8 / float references with
    (int32, of the rows shifted by -128, for uint8 / int8; FP32 otherwise), for `reference_sq_norms=`."""
    space = Int8Space if integer_rows(reference, reference) else Float32Space  # int32 norms serve both integer paths
    with torch.no_grad():
        return space.sq_norms(space.prepare(reference))

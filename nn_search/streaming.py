"""The streaming top-k search that every GEMM flavour shares, and the exact top-2 it ends in.

Reference blocks are prepared once each (outer loop), query chunks are scored against them
(`scores.py`), a running top-k of candidates per query is merged across blocks, and the
candidates' distances give the two nearest rows, ties to the lower reference index.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from networks.precision import strict_fp32
from nn_search.scores import Candidates, Space, space_for


class Top2(NamedTuple):
    """Distances and indices of the two nearest reference rows of every query."""

    d1: Tensor  # (Q,) float64
    d2: Tensor  # (Q,) float64, inf when the reference has a single row
    idx1: Tensor  # (Q,) long
    idx2: Tensor  # (Q,) long, -1 when the reference has a single row


def _best_candidates(
    space: Space,
    query_rows: Tensor,
    reference: Tensor,
    num_candidates: int,
    reference_sq_norms: Tensor | None,
    chunk_size: int,
    reference_chunk_size: int,
    equal_norms: bool,
) -> Candidates:
    """(Q, D') prepared queries, (N, D) reference -> the k highest-scoring rows of every query.

    Blocks of the reference are cast once each (outer loop); queries were cast once up front, as
    the query side is the small one in every use here (a batch of samples vs. a training set).
    """
    num_queries = query_rows.shape[0]
    best: Candidates | None = None
    for block_start in range(0, reference.shape[0], reference_chunk_size):
        block = space.prepare(reference[block_start : block_start + reference_chunk_size])  # (b, D')
        if equal_norms:
            bias = None  # ||r||^2 is the same for every row: the dot product alone ranks them
        elif reference_sq_norms is not None and space.owns_norms(reference_sq_norms):
            bias = space.neg_norm_bias(reference_sq_norms[block_start : block_start + block.shape[0]])  # (b,)
        else:
            bias = space.neg_norm_bias(space.sq_norms(block))  # (b,)
        scorer = lambda rows, block=block, bias=bias: space.scores(query_rows[rows], block, bias)  # noqa: E731
        found = top_k_of_query_chunks(scorer, num_queries, chunk_size, num_candidates, block_start)
        best = found if best is None else merge_top_k(best, found, num_candidates)
    assert best is not None  # the reference has rows (check_pair)
    return best


def top_k_of_query_chunks(scorer, num_queries: int, chunk_size: int, k: int, block_start: int) -> Candidates:
    """scorer(rows) -> (c, b) scores of those queries against one reference block; the k best per query."""
    chunk_scores, chunk_indices = [], []
    for query_start in range(0, num_queries, chunk_size):
        scores = scorer(slice(query_start, query_start + chunk_size))  # (c, b)
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1, sorted=False)  # (c, k)
        chunk_scores.append(top.values)
        chunk_indices.append(top.indices + block_start)
    return Candidates(torch.cat(chunk_scores), torch.cat(chunk_indices))  # (Q, k) each


def merge_top_k(a: Candidates, b: Candidates, k: int) -> Candidates:
    scores = torch.cat([a.scores, b.scores], dim=1)  # (Q, ka + kb)
    indices = torch.cat([a.indices, b.indices], dim=1)  # (Q, ka + kb)
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1, sorted=False)
    return Candidates(top.values, indices.gather(1, top.indices))


def two_nearest(sq_distances: Tensor, candidates: Tensor) -> Top2:
    """(Q, k) distances and indices -> Top2 of *squared* distances, ties to the lower index."""
    by_index, index_order = candidates.sort(dim=1)  # (Q, k)
    sq_distances = sq_distances.gather(1, index_order)  # (Q, k)
    sq_sorted, order = sq_distances.sort(dim=1, stable=True)  # (Q, k)
    indices = by_index.gather(1, order)  # (Q, k)
    if indices.shape[1] == 1:  # single reference row: no second neighbour
        sq_sorted = torch.cat([sq_sorted, torch.full_like(sq_sorted, float("inf"))], dim=1)
        indices = torch.cat([indices, torch.full_like(indices, -1)], dim=1)
    return Top2(sq_sorted[:, 0], sq_sorted[:, 1], indices[:, 0], indices[:, 1])


def check_pair(queries: Tensor, reference: Tensor) -> None:
    if queries.ndim != 2 or reference.ndim != 2 or queries.shape[1] != reference.shape[1]:
        raise ValueError(f"expected (Q, D) queries and (N, D) reference, got {tuple(queries.shape)} and {tuple(reference.shape)}")
    if reference.shape[0] == 0:
        raise ValueError("the reference set is empty")


def top2_sq_distances(
    queries: Tensor,
    reference: Tensor,
    reference_sq_norms: Tensor | None,
    chunk_size: int,
    rerank_k: int,
    reference_chunk_size: int,
    equal_norms: bool = False,
) -> Top2:
    """Squared distances of the two nearest reference rows through the GEMM flavour that fits the inputs."""
    check_pair(queries, reference)
    if rerank_k < 2:
        raise ValueError(f"rerank_k must be >= 2 to find two neighbours, got {rerank_k}")
    num_candidates = min(rerank_k, reference.shape[0])
    if queries.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.float64, device=queries.device)
        return Top2(empty, empty, empty.long(), empty.long())
    space = space_for(queries, reference)
    with torch.no_grad(), strict_fp32():
        query_rows = space.prepare(queries)  # (Q, D')
        candidates = _best_candidates(
            space, query_rows, reference, num_candidates, reference_sq_norms, chunk_size, reference_chunk_size, equal_norms
        )
        sq_distances = space.sq_distances(queries, query_rows, reference, candidates, equal_norms)  # (Q, k) float64
        return two_nearest(sq_distances, candidates.indices)

"""Exact attention of every query to its own small key set, computed in tiles (see gamma_mask.WindowTiles).

A dense masked attention over T queries and T keys costs O(T²) however small the windows are.
Here each tile of consecutive queries is scored against the union of its windows only
(gathered key/value slots), and a mask cuts every query back to exactly its own window. The
result equals dense masked attention up to float rounding; time and memory are O(T·L), L the
aligned union length (about (γ+1)(tile_len + 2γ) on a raster grid, against T + 1 keys dense).

Two implementations of the same function:
- `TiledAttention`, a hand-written autograd Function for CPU float math: it walks the batch in
  chunks whose score block stays in cache, saves only the probabilities for backward, and
  re-gathers the keys there instead of keeping the gathered copies (measured ~2x faster than
  letting autograd differentiate the gathers and SDPA on this machine class; bench/bench_window.py);
- `F.scaled_dot_product_attention` over the gathered tiles everywhere else (CUDA's fused kernels,
  autocast, attention dropout), with autograd through the gathers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from networks.gamma_mask import WindowTiles

CHUNK_BYTES = 2**21  # one chunk's score block (rows x T x L floats): stays in L2/L3 (measured 2 MiB best)


def tiled_attention(q: Tensor, k: Tensor, v: Tensor, tiles: WindowTiles, dropout_p: float = 0.0) -> Tensor:
    """q (B, H, T, dh) queries; k, v (B, H, S, dh) key/value slots; tiles over those slots -> (B, H, T, dh).

    Query t attends to exactly the slots tiles.visible marks for it, with softmax scale 1/sqrt(dh).
    """
    batch, heads, num_tokens, head_dim = q.shape
    num_tiles, width_k = tiles.keys.shape
    if num_tiles * tiles.tile_len != num_tokens:
        raise ValueError(f"{num_tiles} tiles of {tiles.tile_len} queries do not cover {num_tokens} queries")
    rows = batch * heads
    q = q.reshape(rows, num_tokens, head_dim)  # (N, T, dh); a copy if q is a transposed view
    k, v = k.reshape(rows, -1, head_dim), v.reshape(rows, -1, head_dim)  # (N, S, dh)
    if q.device.type == "cpu" and not torch.is_autocast_enabled("cpu") and dropout_p == 0.0:
        y = TiledAttention.apply(q, k, v, tiles.keys, tiles.visible)  # (N, T, dh)
    else:
        y = sdpa_tiles(q, k, v, tiles, dropout_p)
    return y.view(batch, heads, num_tokens, head_dim)


def gather_slots(x: Tensor, keys: Tensor) -> Tensor:
    """(N, S, dh) slots, (n_tiles, L) slot ids -> (N, n_tiles, L, dh) gathered copies."""
    return x.index_select(1, keys.view(-1)).view(x.shape[0], *keys.shape, x.shape[-1])


def sdpa_tiles(q: Tensor, k: Tensor, v: Tensor, tiles: WindowTiles, dropout_p: float = 0.0) -> Tensor:
    """(N, T, dh) queries, (N, S, dh) slots -> (N, T, dh) through SDPA, tiles as SDPA's head axis."""
    rows, num_tokens, head_dim = q.shape
    num_tiles = tiles.keys.shape[0]
    q_tiles = q.view(rows, num_tiles, tiles.tile_len, head_dim)  # (N, n_tiles, Q, dh)
    y = F.scaled_dot_product_attention(
        q_tiles, gather_slots(k, tiles.keys), gather_slots(v, tiles.keys), attn_mask=tiles.visible, dropout_p=dropout_p
    )  # (N, n_tiles, Q, dh); the (n_tiles, Q, L) mask broadcasts over N
    return y.reshape(rows, num_tokens, head_dim)


def chunk_rows(num_tokens: int, width_k: int, element_size: int) -> int:
    return max(1, CHUNK_BYTES // (num_tokens * width_k * element_size))


def flat_slot_ids(keys: Tensor, rows: int, num_slots: int) -> Tensor:
    """(n_tiles, L) slot ids -> (rows·n_tiles·L,) rows of a contiguous (rows, S, dh) tensor viewed as (rows·S, dh).

    Gathering and scattering whole dh-vectors along dim 0 of that flat view is 2-3x faster on CPU
    than index_select / index_add_ along dim 1 of (n, S, dh) when rows are few (long sequences).
    """
    return (torch.arange(rows, device=keys.device).view(-1, 1) * num_slots + keys.view(1, -1)).view(-1)


class TiledAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(dh) + mask) v over gathered tiles, chunked over the N rows (CPU path).

    Saved for backward: the scaled queries, the slots, the output and the probabilities
    (N, n_tiles, Q, L), i.e. O(T·L) per row; the gathered key/value copies are rebuilt per chunk.
    Backward is the standard one with D = rowsum(dY ∘ Y) in place of rowsum(dP ∘ P).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, keys: Tensor, visible: Tensor) -> Tensor:
        rows, num_tokens, head_dim = q.shape
        num_tiles, width_k = keys.shape
        tile_len = num_tokens // num_tiles
        scale = 1.0 / math.sqrt(head_dim)
        q = q * scale  # (N, T, dh): cheaper than scaling the (.., Q, L) scores
        bias = torch.zeros(visible.shape, dtype=q.dtype, device=q.device).masked_fill_(~visible, -math.inf)  # (n_tiles, Q, L)
        save = any(ctx.needs_input_grad[:3])
        step = chunk_rows(num_tokens, width_k, q.element_size())
        k, v = k.contiguous(), v.contiguous()  # (N, S, dh), viewed flat below
        num_slots = k.shape[1]
        flat_slots = flat_slot_ids(keys, min(step, rows), num_slots)  # (step·n_tiles·L,)
        flat_k, flat_v = k.view(-1, head_dim), v.view(-1, head_dim)  # (N·S, dh)
        y = q.new_empty(rows, num_tokens, head_dim)
        probs = q.new_empty(rows if save else min(step, rows), num_tiles, tile_len, width_k)  # (N or chunk, n_tiles, Q, L)
        for start in range(0, rows, step):
            chunk = slice(start, start + step)
            n = q[chunk].shape[0]
            p = probs[chunk] if save else probs[:n]
            slots, rows_at = flat_slots[: n * keys.numel()], slice(start * num_slots, (start + n) * num_slots)  # into flat rows_at
            k_tiles = flat_k[rows_at].index_select(0, slots).view(n, num_tiles, width_k, head_dim)  # (n, n_tiles, L, dh)
            scores = torch.matmul(q[chunk].view(n, num_tiles, tile_len, head_dim), k_tiles.transpose(-1, -2))
            torch.softmax(scores.add_(bias), dim=-1, out=p)  # (n, n_tiles, Q, L)
            v_tiles = flat_v[rows_at].index_select(0, slots).view(n, num_tiles, width_k, head_dim)  # (n, n_tiles, L, dh)
            torch.matmul(p, v_tiles, out=y[chunk].view(n, num_tiles, tile_len, head_dim))
        if save:
            ctx.save_for_backward(q, k, v, keys, y, probs)
        ctx.scale, ctx.step = scale, step
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor):
        q, k, v, keys, y, probs = ctx.saved_tensors
        rows, num_tokens, head_dim = q.shape
        num_tiles, width_k = keys.shape
        tile_len = num_tokens // num_tiles
        tiled = (num_tiles, tile_len)
        grad_y = grad_y.contiguous()
        delta = (grad_y * y).sum(-1).view(rows, *tiled, 1)  # (N, n_tiles, Q, 1) = rowsum(dP ∘ P)
        grad_q, grad_k, grad_v = torch.empty_like(q), k.new_zeros(k.shape), v.new_zeros(v.shape)  # contiguous: viewed flat
        num_slots = k.shape[1]
        flat_slots = flat_slot_ids(keys, min(ctx.step, rows), num_slots)  # (step·n_tiles·L,)
        flat_k, flat_v = k.view(-1, head_dim), v.view(-1, head_dim)  # (N·S, dh), contiguous since forward
        for start in range(0, rows, ctx.step):
            chunk = slice(start, start + ctx.step)
            n = q[chunk].shape[0]
            slots, rows_at = flat_slots[: n * keys.numel()], slice(start * num_slots, (start + n) * num_slots)  # into flat rows_at
            p = probs[chunk]  # (n, n_tiles, Q, L)
            grad_y_tiles = grad_y[chunk].view(n, *tiled, head_dim)
            k_tiles = flat_k[rows_at].index_select(0, slots).view(n, num_tiles, width_k, head_dim)  # (n, n_tiles, L, dh)
            v_tiles = flat_v[rows_at].index_select(0, slots).view(n, num_tiles, width_k, head_dim)
            grad_v_tiles = torch.matmul(p.transpose(-1, -2), grad_y_tiles)  # (n, n_tiles, L, dh)
            grad_v.view(-1, head_dim)[rows_at].index_add_(0, slots, grad_v_tiles.view(-1, head_dim))
            grad_scores = torch.matmul(grad_y_tiles, v_tiles.transpose(-1, -2)).sub_(delta[chunk]).mul_(p)  # (n, n_tiles, Q, L)
            torch.matmul(grad_scores, k_tiles, out=grad_q[chunk].view(n, *tiled, head_dim))
            grad_k_tiles = torch.matmul(grad_scores.transpose(-1, -2), q[chunk].view(n, *tiled, head_dim))  # q already scaled
            grad_k.view(-1, head_dim)[rows_at].index_add_(0, slots, grad_k_tiles.view(-1, head_dim))
        return grad_q.mul_(ctx.scale), grad_k, grad_v, None, None

"""The γ-window attention of the training path as block-sparse FlexAttention (torch's own), for GPUs.

The dense path scores every query against all 1 + T key slots and masks; the windowed path
(networks/tiled_attention.py) gathers each tile's keys. FlexAttention does neither: a BlockMask
lists, per block of 128 queries, the blocks of 128 key slots that hold any visible key, and the
compiled kernel skips the others (fully visible blocks skip the mask too). On a raster grid the
window of a query block spans about γ + 128/width rows, so the work is O(T·(γ + 128/W)·W) instead
of O(T²). PyTorch docs: "FlexAttention" (torch.nn.attention.flex_attention).

Slots are [null, positions 0..T-1] as everywhere in networks/window_transformer.py: slot 0 is the
always-visible null key, slot s + 1 holds position s. The mask is `mask_mod` below, the same
predicate as gamma_window_mask plus the null column; γ and the grid width are captured as tensors
(not Python ints), so one compiled kernel serves every γ of a grid size (global = γ covering the grid).

torch 2.13 compiles FlexAttention's forward on CPU, but has no backward there ("FlexAttention
does not support backward on CPU"): `flex_window_attention` refuses a CPU call that would need
gradients with one clear error, before the kernel runs. Evaluation and sampling on CPU work.
FlexAttention has no attention dropout: WindowedARConfig refuses attention="flex" with dropout > 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

NO_CPU_BACKWARD = (
    "attention='flex' has no backward on CPU (torch's FlexAttention: 'does not support backward on CPU'); "
    "train on CPU with attention='dense' or 'windowed' (or 'auto'), or evaluate under torch.no_grad()"
)


def window_mask_mod(height: int, width: int, gamma: int | None, device: torch.device | str | None = None) -> Callable:
    """FlexAttention mask_mod over the slots [null, 0..T-1]: True where query t may see slot kv.

    Slot 0 (null) is always visible; slot s + 1 when s < t and max(|Δrow|, |Δcol|) <= γ.
    Global γ = None is γ = max(height, width), which every earlier position is within.
    """
    reach = torch.tensor(max(height, width) if gamma is None else gamma, device=device)  # a tensor: not baked into the kernel
    cols = torch.tensor(width, device=device)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        s = kv_idx - 1  # the position slot kv holds (-1 for the null slot)
        near = torch.maximum((q_idx // cols - s // cols).abs(), (q_idx % cols - s % cols).abs()) <= reach
        return (kv_idx == 0) | ((s < q_idx) & near)

    return mask_mod


def window_block_mask(height: int, width: int, gamma: int | None, device: torch.device | str) -> BlockMask:
    """BlockMask of the γ window for T = height·width queries over 1 + T slots, shared by batch and heads."""
    num_tokens = height * width
    return create_block_mask(window_mask_mod(height, width, gamma, device), None, None, num_tokens, num_tokens + 1, device=device)


@functools.cache
def flex_kernel() -> Callable[..., Tensor]:
    """FlexAttention compiled once per process (its unfused eager form materialises all T × (1+T) scores).
    dynamic=False: the training path's shapes are fixed by the grid."""
    return torch.compile(flex_attention, dynamic=False)


def flex_window_attention(q: Tensor, k: Tensor, v: Tensor, block_mask: BlockMask) -> Tensor:
    """q (B, H, T, dh); k, v (B, H, 1+T, dh) slots -> (B, H, T, dh), softmax scale 1/sqrt(dh) as SDPA."""
    if q.device.type == "cpu" and torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        raise RuntimeError(NO_CPU_BACKWARD)
    return flex_kernel()(q, k, v, block_mask=block_mask)

"""`torch.compile` of the neural γ-ARVM: the training forward and the KV-cached sampling step.

The training forward has fixed shapes per grid, so `nn.Module.compile` of the network is enough
(in place: the state_dict keeps its keys, checkpoints load either way).

The cached sampling step is not compile-friendly as written (WindowedARTransformer.step_logits):
position t is a Python int and the window of t has its own length (fewer keys near the border,
a growing prefix for global γ), so a compiled step would recompile for nearly every t. Here every
step has one shape: the window slots are padded to the widest window (1 + K slots for a finite γ,
all 1 + T slots for global) with a visibility row that masks the padding, and t is a tensor. The
masked keys get probability exactly 0, so the logits equal the eager step's up to summation order.
One compile per sample count n (dynamic=False).

`compile_network(net)` does both; GammaARVM(compile=True) calls it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from typing import cast

import torch
from torch import Tensor

from networks.window_transformer import QueryBlock, WindowedARTransformer


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend (Inductor) would build with ($CXX, else g++ / c++ / clang++ on
    PATH), or None: on a CPU without one, compiling fails at the first call."""
    return next((path for name in (os.environ.get("CXX"), "g++", "c++", "clang++") if name and (path := shutil.which(name))), None)


class FixedShapeStep:
    """step_logits and write_cache of `net` with one shape for every position t, compiled."""

    def __init__(self, net: WindowedARTransformer):
        self.net = net
        num_tokens = net.config.num_tokens
        if net.config.gamma is None:  # every slot, visible up to the query's own position
            slots = torch.arange(1 + num_tokens).expand(num_tokens, -1)  # (T, 1+T)
            visible = slots <= torch.arange(num_tokens).view(-1, 1)  # null and positions s < t
        else:
            slots = net.window_slots  # (T, 1+K): null, the window, padding
            visible = torch.arange(slots.shape[1]) < torch.tensor(net.window_len).view(-1, 1)  # (T, 1+K)
        self.slots, self.visible = slots, visible
        self.whole_cache = net.config.gamma is None  # the padded window is the whole cache: read it in place
        self.step = torch.compile(self._step, dynamic=False)
        self.write = torch.compile(self._write, dynamic=False)

    def _step(self, cache: Tensor, t: Tensor) -> Tensor:
        row = t.view(1)  # index_select, not [t]: indexing by a 0-d tensor reads it back to Python (a graph break)
        window = cache if self.whole_cache else cache.index_select(4, self.slots.index_select(0, row)[0])  # (L, 2, n, H, S, d/H)
        visible = self.visible.index_select(0, row)  # (1 query, S)
        x = self.net.query_pos.weight.index_select(0, row).expand(window.shape[2], 1, -1)  # (n, 1, d)
        for block, (k, v) in zip(cast(Iterable[QueryBlock], self.net.blocks), window, strict=True):
            x = block(x, k, v, visible)
        return self.net.logits(x)[:, 0]

    def _write(self, cache: Tensor, token: Tensor, t: Tensor) -> None:
        context = self.net.context(token.view(-1, 1), t.view(1))  # (n, 1, d)
        kv = torch.stack([torch.stack(block.attn.context_kv(context)) for block in cast(Iterable[QueryBlock], self.net.blocks)])
        cache.index_copy_(4, (t + 1).view(1), kv.to(cache.dtype))  # (L, 2, n, H, 1, d/H) into slot t + 1 (as an autocast kv)

    def position(self, t: int, cache: Tensor) -> Tensor:
        """t as a tensor on the cache's device (where the tables move on first use: Lightning moves the network after init)."""
        if self.slots.device != cache.device:
            self.slots, self.visible = self.slots.to(cache.device), self.visible.to(cache.device)
        return torch.tensor(t, device=cache.device)

    def empty_cache(self, n: int) -> Tensor:
        """WindowedARTransformer.empty_cache with the position slots zeroed: the padded window reads slots not
        written yet, and a masked slot must hold a finite number (0 · NaN would be NaN; torch.empty may hold NaN)."""
        cache = WindowedARTransformer.empty_cache(self.net, n)  # the class's: compile_network shadows the instance's
        cache[..., 1:, :] = 0
        return cache

    def step_logits(self, cache: Tensor, t: int) -> Tensor:
        """(n, out_dim) logits of position t: WindowedARTransformer.step_logits, one shape for all t."""
        return self.step(cache, self.position(t, cache))

    def write_cache(self, cache: Tensor, token: Tensor, t: int) -> None:
        self.write(cache, token, self.position(t, cache))


def compile_network(net: WindowedARTransformer) -> WindowedARTransformer:
    """Compile `net` in place: its forward (training, evaluation, uncached sampling) and its cached sampling step.

    The step replaces the instance's empty_cache/step_logits/write_cache (the methods `resample` calls); tables built
    for it follow the cache to its device."""
    net.compile()
    fixed = FixedShapeStep(net)
    empty_cache: Callable[[int], Tensor] = torch.no_grad()(fixed.empty_cache)
    step_logits: Callable[[Tensor, int], Tensor] = torch.no_grad()(fixed.step_logits)
    write_cache: Callable[[Tensor, Tensor, int], None] = torch.no_grad()(fixed.write_cache)
    net.__dict__.update(empty_cache=empty_cache, step_logits=step_logits, write_cache=write_cache)
    return net

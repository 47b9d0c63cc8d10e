"""Training-free γ-ARVM: the authors' Nadaraya-Watson next-token histogram (docs/models.md).

Every training token is a random variable whose C bits flip independently with probability ρ:
q(a | b) = ρ^H(a,b) (1-ρ)^(C-H(a,b)). At position t, with already drawn context c in the γ window
W_γ(t) and training grids z^1..z^N,

    h_t(x) ∝ Σ_n q(x | z^n_t) · Π_{v ∈ W_γ(t)} q(c_v | z^n_v).

Position-specific (training tokens are read at the same grid cells); window cells outside the grid
are absent. Global γ with small ρ copies a training grid (the context singles it out); small γ lets
different training grids win in different neighbourhoods.

How it is computed (log space; beyond the stored grids, 1 byte a token up to C = 8, memory is bounded by
chunk_size training grids x query_chunk_size queries, never (S, N, 2^C)):
1. context weight: Σ_v log q(c_v | z^n_v) = const + ½ log((1-ρ)/ρ) · <c±, z^n±>, the dot
   product of the ±1 bit vectors of the two windows (H = (K·C - <c±, z±>) / 2), so one
   (S, K·C) @ (K·C, n) matmul per chunk;
   the const depends on the query only and cancels in the normalisation;
2. log-sum-exp of those weights per training token value b = z^n_t -> A (S, 2^C), chunk by chunk;
3. h(x) ∝ Σ_b exp(A_b) q(x | b): one (S, 2^C) @ (2^C, 2^C) product after a max shift.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from networks.bits import token_signs
from networks.gamma_mask import neighbourhood_indices, parse_gamma, window_indices
from networks.sampling import Generators, draw_uniforms, log_flip_kernel, sample_categorical

MAX_KERNEL_BITS = 14  # the (2^C, 2^C) float64 kernel matrix is 2 GiB at C = 14
QUERY_CHUNK_SIZE = 1024  # queries scored per block: a (1024, chunk_size) float64 block is 32 MiB at chunk 4096


def scatter_logsumexp(log_w: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    """(S, n) log-weights, (n,) group ids -> (S, num_groups) log Σ over each group (-inf if empty)."""
    top = log_w.amax(dim=1, keepdim=True)  # (S, 1) row max: the largest term becomes exp(0)
    sums = torch.zeros(log_w.shape[0], num_groups, dtype=log_w.dtype, device=log_w.device)
    sums.index_add_(1, groups, (log_w - top).exp())  # (S, num_groups)
    return sums.log() + top


class KernelARVM(nn.Module):
    """Non-parametric γ-ARVM over stored training token grids (no parameters, nothing to train)."""

    # buffers, registered in __init__
    kernel: Tensor
    tokens_by_position: Tensor
    sign_table: Tensor
    window_index: Tensor
    neighbourhood_index: Tensor

    def __init__(
        self, train_tokens: Tensor, num_bits: int, gamma: int | str | None = None, flip_prob: float = 0.002, chunk_size: int = 4096
    ):
        super().__init__()
        if num_bits > MAX_KERNEL_BITS:
            raise ValueError(f"the kernel estimator needs a 2^C x 2^C matrix; C = {num_bits} > {MAX_KERNEL_BITS}")
        if train_tokens.dim() != 3:
            raise ValueError(f"train_tokens must be (N, h, w), got shape {tuple(train_tokens.shape)}")
        num_grids, self.height, self.width = train_tokens.shape
        self.num_bits = num_bits
        self.gamma = parse_gamma(gamma)
        self.flip_prob = flip_prob
        self.chunk_size = chunk_size
        self.register_buffer("kernel", log_flip_kernel(num_bits, flip_prob).exp())  # (V, V) float64 q(x | b)
        # the per-bit log-likelihood ratio of agreeing vs flipped bits, halved for ±1 dot products
        self.dot_scale = 0.5 * math.log((1 - flip_prob) / flip_prob)
        # compact ids, position-major: the window columns of all N grids are K contiguous rows; a
        # chunk's ±1 bits come from a (2^C, C) table when it is scored. uint8 (1 byte a token) up
        # to C = 8, else int32: DDP broadcasts buffers, and gloo has no int16
        grids = train_tokens.reshape(num_grids, -1).to(torch.uint8 if num_bits <= 8 else torch.int32)  # (N, T)
        self.register_buffer("tokens_by_position", grids.T.contiguous())  # (T, N)
        self.register_buffer("sign_table", token_signs(torch.arange(self.vocab_size), num_bits), persistent=False)  # (V, C)
        window = window_indices(self.height, self.width, self.gamma)
        self.register_buffer("window_index", window.index, persistent=False)  # (T, K)
        self.window_len: list[int] = window.length.tolist()
        around = neighbourhood_indices(self.height, self.width, self.gamma)  # the non-causal conditional's cells
        self.register_buffer("neighbourhood_index", around.index, persistent=False)  # (T, K')
        self.neighbourhood_len: list[int] = around.length.tolist()

    @property
    def num_grids(self) -> int:
        return self.tokens_by_position.shape[1]

    @property
    def train_tokens(self) -> Tensor:
        """(N, T) long training grids (a copy; the estimator keeps them as compact (T, N) ids)."""
        return self.tokens_by_position.T.long()

    @property
    def num_tokens(self) -> int:
        return self.height * self.width

    @property
    def vocab_size(self) -> int:
        return 2**self.num_bits

    def log_value_weights(self, context: Tensor, t: int, visible: Tensor | None = None) -> Tensor:
        """(S, T) context ids -> (S, 2^C) float64 A_b = log Σ_{n: z^n_t = b} Π_v q(c_v | z^n_v).

        Up to a constant per row, which the normalisation in log_histogram removes. v runs over the
        causal window W_γ(t), or, with `visible` ((S, T) bool), over the visible cells of the full
        neighbourhood N_γ(t) (the non-causal conditional, docs/probes.md): a hidden cell's bits are 0
        in the ±1 query, so it adds nothing to the dot product (and its constant cancels per row).
        """
        if visible is None:
            index = self.window_index[t, : self.window_len[t]]  # (K,) earlier positions in W_γ(t)
            query = F.embedding(context[:, index], self.sign_table).flatten(1)  # (S, K·C) ±1
        else:
            index = self.neighbourhood_index[t, : self.neighbourhood_len[t]]  # (K',) every other cell within γ
            shown = visible[:, index].unsqueeze(-1).to(self.sign_table.dtype)  # (S, K', 1) 1 = visible
            query = (F.embedding(context[:, index], self.sign_table) * shown).flatten(1)  # (S, K'·C) ±1 or 0
        log_a = torch.full((context.shape[0], self.vocab_size), -math.inf, dtype=torch.float64, device=context.device)
        for start in range(0, self.num_grids, self.chunk_size):
            chunk = slice(start, start + self.chunk_size)
            window = self.tokens_by_position[:, chunk].index_select(0, index)  # (K, n) ids: K row pieces, contiguous
            keys = F.embedding(window.T.long(), self.sign_table).flatten(1)  # (n, K·C) ±1 (embedding: a row gather)
            values = self.tokens_by_position[t, chunk].long()  # (n,) z^n_t
            for first in range(0, len(query), QUERY_CHUNK_SIZE):
                rows = slice(first, first + QUERY_CHUNK_SIZE)
                with torch.autocast(context.device.type, enabled=False):  # bf16 would round the integers
                    log_w = (query[rows] @ keys.T).double() * self.dot_scale  # (s, n); exact integer dot products
                log_a[rows] = torch.logaddexp(log_a[rows], scatter_logsumexp(log_w, values, self.vocab_size))
        return log_a

    def log_histogram(self, context_grids: Tensor, t: int, visible: Tensor | None = None) -> Tensor:
        """(S, h, w) or (S, T) grids -> (S, 2^C) float64 normalised log h_t(x).

        Only the tokens in W_γ(t) are read; position t and later may hold anything. With `visible`
        ((S, T) bool): the non-causal conditional given the visible cells of N_γ(t), on either side of t.
        """
        context = context_grids.reshape(context_grids.shape[0], -1).long().to(self.sign_table.device)
        if visible is not None:
            visible = visible.reshape(context.shape).to(context.device)
        log_a = self.log_value_weights(context, t, visible)  # (S, V)
        top = log_a.amax(dim=1, keepdim=True)  # (S, 1) finite: every row has some training token
        mixed = (log_a - top).exp() @ self.kernel.T  # (S, V) Σ_b exp(A_b - top) q(x | b), >= ρ^C > 0
        log_h = mixed.log() + top
        return log_h - log_h.logsumexp(dim=1, keepdim=True)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: Generators = None) -> Tensor:
        """(n, h, w) token grids drawn in raster order; generator as in networks.sampling.draw_uniforms."""
        tokens = torch.zeros(n, self.num_tokens, dtype=torch.long, device=self.sign_table.device)
        return self.resample(tokens, torch.ones_like(tokens, dtype=torch.bool), temperature, generator)

    @torch.no_grad()
    def resample(
        self, tokens: Tensor, redraw: Tensor, temperature: float = 1.0, generator: Generators = None, full_window: bool = False
    ) -> Tensor:
        """(n, h, w) grids, (n, h, w) bool `redraw` -> (n, h, w): the redrawn cells drawn in raster order.

        Causal (default): each redrawn cell from h_t given its window W_γ(t) as it stands (kept cells
        and cells redrawn before it), exactly as `sample` draws it. full_window: from the non-causal
        conditional given every visible cell of N_γ(t), visible = kept or already redrawn (cells still
        to redraw are hidden), so later kept cells count too. One uniform per position, as `sample`.
        """
        device = self.sign_table.device
        flat = tokens.reshape(tokens.shape[0], -1).long().to(device).clone()  # (n, T)
        redraw = redraw.reshape(flat.shape).to(device)  # (n, T) bool
        visible = ~redraw if full_window else None  # (n, T) bool, grows as cells are redrawn
        uniforms = draw_uniforms(flat.shape[0], self.num_tokens, 1, generator, device)  # (n, T, 1)
        for t in range(self.num_tokens):
            rows = redraw[:, t].nonzero().flatten()  # (s,) the grids that redraw t (exact per row: integer dot products)
            if not len(rows):
                continue
            logits = self.log_histogram(flat[rows], t, None if visible is None else visible[rows]) / temperature  # (s, V)
            flat[rows, t] = sample_categorical(logits, uniforms[rows, t, 0])
            if visible is not None:
                visible[rows, t] = True
        return flat.view(-1, self.height, self.width)

    @torch.no_grad()
    def nll_bits(self, tokens: Tensor) -> Tensor:
        """(B, h, w) held-out grids -> (B,) mean per-token NLL in bits (teacher forcing)."""
        flat = tokens.reshape(tokens.shape[0], -1).long().to(self.sign_table.device)  # (B, T)
        nats = torch.zeros(flat.shape[0], dtype=torch.float64, device=flat.device)
        for t in range(self.num_tokens):
            nats -= self.log_histogram(flat, t).gather(1, flat[:, t : t + 1]).squeeze(1)
        return nats / (self.num_tokens * math.log(2))

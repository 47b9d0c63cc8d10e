"""γ-ARVM network: a transformer whose next-token histogram sees only the γ window (docs/models.md).

Why not a plain masked decoder: when every layer of a stacked transformer masks attention to the
γ window, information hops one window per layer, so L layers see ~L·γ (docs/models.md,
neural γ-ARVM). Here the context is never mixed:

- every context token is embedded *pointwise* (token + position embedding, then an MLP);
- a separate *query stream* per target position t starts from t's position embedding and runs L
  pre-LN blocks of [cross-attention to the context embeddings under the γ mask -> MLP];
- each layer's keys/values are projections of the pointwise context embeddings, plus one learned
  "null" key/value that every query always sees (position 0 and empty windows stay well defined).

So the logits at t are a function of t and the tokens inside W_γ(t) only, and the keys/values of
a position depend only on its own token: sampling caches them exactly (`sample(use_cache=True)`)
and each new token attends over its O(γ²) window instead of recomputing the sequence.

Training and evaluation (`forward`) attend in one of these ways, with the same result:
- "windowed": tiles of consecutive queries against the union of their windows
  (networks/tiled_attention.py), O(T·γ²) time and memory;
- "dense": one T×(1+T) masked attention, O(T²) time; faster for short sequences and wide windows;
- "flex" (opt-in, for GPUs): torch's block-sparse FlexAttention over the same mask
  (networks/flex_attention.py); forward only on CPU.
`attention="auto"` picks by `attention_plan`, a cost rule measured on CPU (bench/bench_window.py).

γ = None is the global model: the same network under a plain causal mask.

Heads: "histogram" = 2^C logits (the paper's histogram); "bits" = C independent Bernoulli logits
(channel 0 = most significant bit, as networks/bits.py), for C too large for a 2^C softmax.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask

from networks.bits import bits_to_tokens, token_bits, token_signs
from networks.flex_attention import flex_window_attention, window_block_mask
from networks.gamma_mask import WindowTiles, gamma_window_mask, parse_gamma, window_indices, window_tiles
from networks.precision import no_autocast
from networks.sampling import Generators, draw_uniforms, log_flip_kernel, sample_categorical
from networks.tiled_attention import tiled_attention

MAX_HISTOGRAM_BITS = 16  # 2^16 logits per position is the largest softmax we accept
HeadKind = Literal["histogram", "bits"]
AttentionKind = Literal["auto", "dense", "windowed", "flex"]


# ---------------------------------------------------------------------------------------------
# which attention the training path uses

# Cost rule, in units of one dense score (a query-key pair of the fused dense kernel, forward and
# backward). Measured on CPU, fp32, head dim 16, one attention layer (bench/bench_window.py "rule"
# row, issue 23): a windowed score costs TILED_SCORE_COST dense ones (gathers, small GEMMs, unfused
# softmax), every key slot of a tile adds GATHER_COST / tile_len for copying it in and its gradient
# out, and every query QUERY_OVERHEAD for the passes that do not depend on the slots (scaling,
# chunking). Tiles shorter than MIN_TILE_LEN are left out: their GEMMs are too small to run at speed
# (32×32 γ=1 in tiles of 2 ran 3x slower than predicted).
TILED_SCORE_COST = 1.65
GATHER_COST = 8.0
QUERY_OVERHEAD = 32.0
MIN_TILE_LEN = 8
MAX_TILE_LEN = 64


def windowed_cost(num_keys: int, tile_len: int) -> float:
    """Predicted cost per query of tiles of tile_len queries over num_keys slots, in dense scores."""
    return num_keys * (TILED_SCORE_COST + GATHER_COST / tile_len) + QUERY_OVERHEAD


def attention_plan(height: int, width: int, gamma: int | None, attention: AttentionKind = "auto") -> WindowTiles | None:
    """The tiles the windowed path uses, or None for the dense path.

    "auto": windowed when its predicted cost is below the dense path's T + 1 scores per query
    (so global γ, short sequences and windows that cover most of the grid stay dense); the tile
    length is the divisor of T in [MIN_TILE_LEN, MAX_TILE_LEN] (any divisor up to MAX_TILE_LEN if
    none) with the lowest predicted cost.
    """
    num_tokens = height * width
    if attention == "dense" or gamma is None:
        return None
    divisors = [n for n in range(1, min(MAX_TILE_LEN, num_tokens) + 1) if num_tokens % n == 0]
    candidates = [n for n in divisors if n >= MIN_TILE_LEN] or divisors
    window = window_indices(height, width, gamma)
    plans = [window_tiles(height, width, gamma, tile_len, window=window) for tile_len in candidates]
    best = min(plans, key=lambda tiles: windowed_cost(tiles.keys.shape[1], tiles.tile_len))
    if attention == "windowed" or windowed_cost(best.keys.shape[1], best.tile_len) < num_tokens + 1:
        return best
    return None


# ---------------------------------------------------------------------------------------------
# configuration and modules


@dataclass
class WindowedARConfig:
    height: int = 8
    width: int = 8
    num_bits: int = 6  # C: a token is an id in [0, 2^C)
    gamma: int | str | None = None  # int >= 1, or None / "global"; normalised by parse_gamma
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    head: HeadKind = "histogram"
    attention: AttentionKind = "auto"  # training/eval attention: see attention_plan; "flex": networks/flex_attention.py

    def __post_init__(self):
        self.gamma = parse_gamma(self.gamma)
        if self.head not in ("histogram", "bits"):
            raise ValueError(f"head must be 'histogram' or 'bits', got {self.head!r}")
        if self.attention not in ("auto", "dense", "windowed", "flex"):
            raise ValueError(f"attention must be 'auto', 'dense', 'windowed' or 'flex', got {self.attention!r}")
        if self.attention == "flex" and self.dropout > 0:
            raise ValueError("attention='flex' has no attention dropout (torch's FlexAttention); use dropout=0 or another attention")
        if self.attention == "windowed" and self.gamma is None:
            raise ValueError("attention='windowed' needs a finite gamma (the global window is every earlier position)")
        if self.head == "histogram" and self.num_bits > MAX_HISTOGRAM_BITS:
            raise ValueError(
                f"a histogram head over 2^{self.num_bits} values is too large (at most C = {MAX_HISTOGRAM_BITS}); use head='bits'"
            )
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")

    @property
    def num_tokens(self) -> int:
        return self.height * self.width

    @property
    def out_dim(self) -> int:
        return 2**self.num_bits if self.head == "histogram" else self.num_bits


class MLP(nn.Module):
    def __init__(self, config: WindowedARConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class TokenEmbedding(nn.Module):
    """id -> vector: a lookup table while 2^C is small, else a linear map of the ±1 bits."""

    def __init__(self, config: WindowedARConfig):
        super().__init__()
        self.num_bits = config.num_bits
        self.use_table = config.num_bits <= MAX_HISTOGRAM_BITS
        if self.use_table:
            self.table = nn.Embedding(2**config.num_bits, config.n_embd)
        else:
            self.from_bits = nn.Linear(config.num_bits, config.n_embd, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        if self.use_table:
            return self.table(tokens)
        signs = token_signs(tokens, self.num_bits)  # (..., C)
        return self.from_bits(signs)


class ContextEncoder(nn.Module):
    """Pointwise context embedding: e_s = f(token_s, s). Never mixes positions (the γ guarantee)."""

    def __init__(self, config: WindowedARConfig):
        super().__init__()
        self.tok = TokenEmbedding(config)
        self.pos = nn.Embedding(config.num_tokens, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.ln = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)
        self.ln_out = nn.LayerNorm(config.n_embd)

    def forward(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """(B, S) ids at (S,) raster positions -> (B, S, n_embd)."""
        x = self.drop(self.tok(tokens) + self.pos(positions))  # (B, S, d)
        x = x + self.mlp(self.ln(x))
        return self.ln_out(x)


class WindowCrossAttention(nn.Module):
    """Queries from the query stream, keys/values from the pointwise context, plus a null slot."""

    def __init__(self, config: WindowedARConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.q_proj = nn.Linear(config.n_embd, config.n_embd)
        self.kv_proj = nn.Linear(config.n_embd, 2 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        # the always-visible key/value: a query with an empty window attends to it alone
        self.null_kv = nn.Parameter(torch.randn(2, self.n_head, 1, self.head_dim) * 0.02)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, S, d) -> (B, H, S, d/H)."""
        return x.view(x.shape[0], x.shape[1], self.n_head, self.head_dim).transpose(1, 2)

    def context_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S, d) context embeddings -> keys, values (B, H, S, d/H), each from one position."""
        k, v = self.kv_proj(context).chunk(2, dim=-1)  # (B, S, d) each
        return self.split_heads(k), self.split_heads(v)

    def null_slot(self, batch: int) -> tuple[Tensor, Tensor]:
        """Null key, value (B, H, 1, d/H): slot 0 of every key/value sequence."""
        null = self.null_kv.unsqueeze(1).expand(-1, batch, -1, -1, -1)  # (2, B, H, 1, d/H), no copy
        return null[0], null[1]

    def forward(self, x: Tensor, k: Tensor, v: Tensor, visible: Tensor | WindowTiles | BlockMask | None) -> Tensor:
        """x (B, Tq, d); k, v (B, H, S, d/H) slots; visible: a (Tq, S) bool mask (True = visible),
        WindowTiles over the slots (the windowed path), a FlexAttention BlockMask (the flex path), or None (every slot)."""
        q = self.split_heads(self.q_proj(x))  # (B, H, Tq, d/H)
        dropout = self.dropout if self.training else 0.0
        if isinstance(visible, WindowTiles):
            y = tiled_attention(q, k, v, visible, dropout)  # (B, H, Tq, d/H)
        elif isinstance(visible, BlockMask):
            y = flex_window_attention(q, k, v, visible)  # (B, H, Tq, d/H); the config refuses dropout
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, dropout_p=dropout)  # (B, H, Tq, d/H)
        y = y.transpose(1, 2).reshape(x.shape)  # (B, Tq, d)
        return self.resid_dropout(self.c_proj(y))


class QueryBlock(nn.Module):
    """Pre-LN residual block of the query stream: cross-attention to the window, then MLP."""

    def __init__(self, config: WindowedARConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = WindowCrossAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, visible: Tensor | WindowTiles | BlockMask | None) -> Tensor:
        x = x + self.attn(self.ln_1(x), k, v, visible)
        return x + self.mlp(self.ln_2(x))


# ---------------------------------------------------------------------------------------------
# the model


class WindowedARTransformer(nn.Module):
    # buffers, registered in __init__ (tile_* when windowed, else attn_mask; window_slots for a finite γ)
    tile_keys: Tensor
    tile_visible: Tensor
    attn_mask: Tensor
    window_slots: Tensor

    def __init__(self, config: WindowedARConfig):
        super().__init__()
        self.config = config
        self.context = ContextEncoder(config)
        self.query_pos = nn.Embedding(config.num_tokens, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([QueryBlock(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.out_dim)

        # training attention over the slots [null, positions 0..T-1]: tiles, or a dense mask whose
        # null column is always visible
        gamma = cast("int | None", config.gamma)  # normalised by WindowedARConfig.__post_init__
        tiles = None if config.attention == "flex" else attention_plan(config.height, config.width, gamma, config.attention)
        self.windowed = tiles is not None
        if tiles is not None:
            self.register_buffer("tile_keys", tiles.keys, persistent=False)  # (n_tiles, L)
            self.register_buffer("tile_visible", tiles.visible, persistent=False)  # (n_tiles, Q, L)
        else:
            window = gamma_window_mask(config.height, config.width, gamma)  # (T, T)
            always = torch.ones(config.num_tokens, 1, dtype=torch.bool)
            self.register_buffer("attn_mask", torch.cat([always, window], dim=1), persistent=False)  # (T, 1+T)
        # cache slots of every window for cached sampling (finite γ only; global slices a prefix)
        self.window_len: list[int] = []
        if gamma is not None:
            win = window_indices(config.height, config.width, gamma)
            slots = torch.cat([torch.zeros_like(win.index[:, :1]), win.index + 1], dim=1)  # (T, 1+K)
            self.register_buffer("window_slots", slots, persistent=False)
            self.window_len = (win.length + 1).tolist()

        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(number of residual additions)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flat_tokens(self, tokens: Tensor) -> Tensor:
        """(B, h, w) or (B, T) -> (B, T) long, checking the grid size."""
        flat = tokens.reshape(tokens.shape[0], -1).long()
        if flat.shape[1] != self.config.num_tokens:
            raise ValueError(
                f"expected {self.config.height}x{self.config.width} = {self.config.num_tokens} tokens "
                f"per grid, got shape {tuple(tokens.shape)}"
            )
        return flat

    # --- training path: all positions in parallel -------------------------------------------

    def training_visibility(self) -> Tensor | WindowTiles | BlockMask:
        """What every query of the training path sees: the dense (T, 1+T) mask, the tiles or (flex) a BlockMask."""
        if self.config.attention == "flex":
            return self.flex_block_mask(self.attn_mask.device)
        return WindowTiles(self.tile_keys, self.tile_visible) if self.windowed else self.attn_mask

    def flex_block_mask(self, device: torch.device) -> BlockMask:
        """The flex path's BlockMask on `device`, built once per device (not a buffer: .to() cannot move it)."""
        masks = self.__dict__.setdefault("_flex_masks", {})
        if device not in masks:
            gamma = cast("int | None", self.config.gamma)
            masks[device] = window_block_mask(self.config.height, self.config.width, gamma, device)
        return masks[device]

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, T) or (B, h, w) ids -> (B, T, 2^C) histogram logits or (B, T, C) bit logits.

        Row t is the prediction of token t from the tokens in t's window (never token t itself).
        """
        tokens = self.flat_tokens(tokens)  # (B, T)
        batch, num_tokens = tokens.shape
        positions = torch.arange(num_tokens, device=tokens.device)
        context = self.context(tokens, positions)  # (B, T, d)
        x = self.drop(self.query_pos(positions)).expand(batch, -1, -1)  # (B, T, d)
        visible = self.training_visibility()
        for block in cast(Iterable[QueryBlock], self.blocks):
            k, v = block.attn.context_kv(context)  # (B, H, T, d/H) each
            null_k, null_v = block.attn.null_slot(batch)  # (B, H, 1, d/H) each
            k, v = torch.cat([null_k, k], dim=2), torch.cat([null_v, v], dim=2)  # (B, H, 1+T, d/H) slots
            x = block(x, k, v, visible)
        return self.logits(x)

    def logits(self, x: Tensor) -> Tensor:
        """(..., d) query states -> (..., out_dim) logits in the head's own dtype with autocast off: float32 under
        bf16-mixed (the head's 2^C-way softmax and the bits head's BCE need more than bf16's 8 mantissa bits,
        docs/models.md); a bf16-true model's bf16 head stays bf16."""
        with no_autocast():
            return self.head(self.ln_f(x.to(self.head.weight.dtype)))  # float32 weights under bf16-mixed

    def loss(self, logits: Tensor, tokens: Tensor, flip_prob: float = 0.0) -> Tensor:
        """Mean next-token cross-entropy in nats per token.

        flip_prob = ρ > 0 replaces the one-hot target by the bit-flip kernel q(x | z_t) =
        ρ^H (1-ρ)^(C-H) (docs/models.md), i.e. each training token is treated as a random variable.
        For the bits head this is the per-bit BCE against targets 1-ρ / ρ, summed over the C bits
        (so both heads report nats per token).
        """
        tokens = self.flat_tokens(tokens)  # (B, T)
        if self.config.head == "bits":
            target = token_bits(tokens, self.config.num_bits).float()  # (B, T, C)
            target = target * (1 - 2 * flip_prob) + flip_prob  # 1 -> 1-ρ, 0 -> ρ
            bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")  # (B, T, C)
            return bce.sum(-1).mean()
        logits = logits.reshape(-1, logits.shape[-1]).float()  # (B*T, V)
        if flip_prob == 0.0:
            return F.cross_entropy(logits, tokens.reshape(-1))
        kernel = log_flip_kernel(self.config.num_bits, flip_prob, logits.device).exp().float()  # (V, V)
        return F.cross_entropy(logits, kernel[tokens.reshape(-1)])  # soft target rows q(. | z_t)

    def nll_bits(self, logits: Tensor, tokens: Tensor) -> Tensor:
        """(B, T) NLL of the hard tokens in bits (for val/nll_bits)."""
        tokens = self.flat_tokens(tokens)  # (B, T)
        if self.config.head == "bits":
            target = token_bits(tokens, self.config.num_bits).float()  # (B, T, C)
            nats = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").sum(-1)
        else:
            nats = F.cross_entropy(logits.float().transpose(1, 2), tokens, reduction="none")  # (B, T)
        return nats / math.log(2)

    # --- sampling -----------------------------------------------------------------------------

    @torch.no_grad()
    def empty_cache(self, n: int) -> Tensor:
        """KV cache for n samples: (L, 2, n, H, 1 + T, d/H) keys [:, 0] and values [:, 1] of every layer.

        Slot 0 holds the null key/value, slot 1 + s position s. One tensor, so a step gathers the
        window of every layer with a single index_select.
        """
        config = self.config
        shape = (config.n_layer, 2, n, config.n_head, 1 + config.num_tokens, config.n_embd // config.n_head)
        cache = torch.empty(shape, device=self.head.weight.device, dtype=self.head.weight.dtype)
        cache[..., :1, :] = torch.stack([torch.stack(block.attn.null_slot(n)) for block in cast(Iterable[QueryBlock], self.blocks)])
        return cache

    @torch.no_grad()
    def write_cache(self, cache: Tensor, token: Tensor, t: int):
        """Store the keys/values of the (n,) tokens just drawn at position t (they depend on nothing else)."""
        position = torch.full((1,), t, device=token.device)
        context = self.context(token.view(-1, 1), position)  # (n, 1, d)
        kv = [torch.stack(block.attn.context_kv(context)) for block in cast(Iterable[QueryBlock], self.blocks)]  # L x (2, n, H, 1, d/H)
        cache[..., t + 1 : t + 2, :] = torch.stack(kv)  # (L, 2, n, H, 1, d/H)

    def window_slice(self, cache: Tensor, t: int) -> Tensor:
        """(L, 2, n, H, 1+T, d/H) -> (L, 2, n, H, S_t, d/H): null plus the window of t (global: a prefix view)."""
        if self.config.gamma is None:
            return cache[..., : t + 1, :]
        return cache.index_select(4, self.window_slots[t, : self.window_len[t]])

    def step_logits(self, cache: Tensor, t: int) -> Tensor:
        """(n, out_dim) logits of position t from the cache: one query stream, O(γ²) keys."""
        window = self.window_slice(cache, t)  # (L, 2, n, H, S_t, d/H)
        x = self.query_pos.weight[t].expand(window.shape[2], 1, -1)  # (n, 1, d)
        for block, (k, v) in zip(self.blocks, window, strict=True):
            x = block(x, k, v, None)
        return self.logits(x)[:, 0]

    def draw(self, logits: Tensor, uniform: Tensor, temperature: float) -> Tensor:
        """(n, out_dim) logits, (n, draws) uniforms -> (n,) token ids."""
        logits = logits.float() / temperature
        if self.config.head == "bits":
            return bits_to_tokens(uniform < torch.sigmoid(logits))  # (n,) from (n, C) bits
        return sample_categorical(logits, uniform[:, 0])

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: Generators = None, use_cache: bool = True) -> Tensor:
        """(n, h, w) token grids drawn in raster order (eval mode; the training flag is restored).

        generator: see draw_uniforms (None, one torch.Generator, or n per-sample seeds). The
        uniforms are drawn up front, so cached and uncached sampling pick the same tokens.
        use_cache=False recomputes the full forward for every token (the slow reference).
        """
        device = self.head.weight.device
        tokens = torch.zeros(n, self.config.num_tokens, dtype=torch.long, device=device)
        return self.resample(tokens, torch.ones_like(tokens, dtype=torch.bool), temperature, generator, use_cache)

    @torch.no_grad()
    def resample(
        self, tokens: Tensor, redraw: Tensor, temperature: float = 1.0, generator: Generators = None, use_cache: bool = True
    ) -> Tensor:
        """(n, h, w) grids, (n, h, w) bool `redraw` -> (n, h, w): the redrawn cells drawn in raster order.

        Each redrawn cell comes from the model's causal conditional given its γ window as it stands
        (kept cells and cells redrawn before it); kept cells stay as they are. A prefix completion
        redraws every cell after the prefix; `sample` redraws everything. Uniforms as in `sample`
        (one per position, drawn up front), so a redrawn cell uses the same uniform as in `sample`.
        """
        config = self.config
        device = self.head.weight.device
        tokens = self.flat_tokens(tokens).to(device).clone()  # (n, T)
        redraw = redraw.reshape(tokens.shape).to(device)  # (n, T) bool
        n = tokens.shape[0]
        draws = config.num_bits if config.head == "bits" else 1
        uniforms = draw_uniforms(n, config.num_tokens, draws, generator, device)  # (n, T, draws)
        was_training = self.training
        self.eval()
        try:
            cache = self.empty_cache(n) if use_cache else None
            for t in range(config.num_tokens):
                if redraw[:, t].any():
                    logits = self.step_logits(cache, t) if cache is not None else self(tokens)[:, t]  # (n, out_dim)
                    tokens[:, t] = torch.where(redraw[:, t], self.draw(logits, uniforms[:, t], temperature), tokens[:, t])
                if cache is not None:
                    self.write_cache(cache, tokens[:, t], t)
        finally:
            self.train(was_training)
        return tokens.view(n, config.height, config.width)

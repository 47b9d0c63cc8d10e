"""The neural γ-ARVM at the CIFAR latent size (32×32 grid, 1024 tokens, 7 bits, γ = 5): windowed vs dense.

Rows (ratio = ours / baseline, both measured in this process, calls interleaved):
  window attention layer 32x32 γ=5   one cross-attention layer, forward + backward, windowed tiles
                                     vs the dense T×(1+T) masked SDPA (the op the windowed path replaces)
  window attention layer 64x64 γ=5   the same at T = 4096: dense grows as T², windowed as T
  window training 32x32 γ=5          full training step of the network (tokens/s), goal >= 5
  window training peak memory        peak RSS growth of one training step, each path in a fresh process
  window attention rule              cases (grid, γ) where `attention_plan` picked the faster path
  window sampling, KV cache, γ=...   samples/s per γ at 32×32 (8×8 with --smoke), against global γ

    python -m bench.bench_window [--smoke] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.common import Row
from bench.harness import interleaved_medians, timed
from networks.gamma_mask import gamma_name, gamma_window_mask
from networks.window_transformer import WindowedARConfig, WindowedARTransformer, attention_plan

GRID, BITS, GAMMA = 32, 7, 5
ATTENTION_ROW = f"window attention layer {GRID}x{GRID} γ={GAMMA}: windowed vs dense (fwd+bwd)"
LARGE_ATTENTION_ROW = f"window attention layer 64x64 γ={GAMMA}: windowed vs dense (fwd+bwd)"
TRAINING_ROW = f"window training {GRID}x{GRID} γ={GAMMA}: windowed vs dense masked (tokens/s)"
MEMORY_ROW = f"window training {GRID}x{GRID} γ={GAMMA} peak memory: windowed vs dense"
RULE_ROW = "window attention rule: cases where attention_plan picked the faster path"
SAMPLING_GAMMAS = (1, 3, 5)
SAMPLING_ROWS = [f"window sampling, KV cache, γ={g} vs global (samples/s)" for g in SAMPLING_GAMMAS]
ROW_NAMES = [ATTENTION_ROW, LARGE_ATTENTION_ROW, TRAINING_ROW, MEMORY_ROW, RULE_ROW, *SAMPLING_ROWS]


@dataclass(frozen=True)
class Sizes:
    n_embd: int
    n_layer: int
    n_head: int
    batch: int  # training grids per step
    attention_rows: int  # batch x heads of the attention-layer rows
    head_dim: int
    rule_cases: tuple[tuple[int, int], ...]  # (grid side, γ)
    samples: int
    sampling_grid: int
    repeats: int


# A CPU-sized model (head dim 32 like the digits and CIFAR configs); the CIFAR GPU config is 4 x 256.
FULL = Sizes(
    n_embd=64,
    n_layer=2,
    n_head=2,
    batch=16,
    attention_rows=64,
    head_dim=32,
    rule_cases=((8, 1), (8, 2), (8, 3), (16, 1), (16, 3), (16, 5), (32, 1), (32, 3), (32, 5), (32, 8)),
    samples=16,
    sampling_grid=GRID,
    repeats=3,
)
SMOKE = Sizes(
    n_embd=16,
    n_layer=1,
    n_head=1,
    batch=1,
    attention_rows=1,
    head_dim=16,
    rule_cases=((8, 2), (32, 5)),
    samples=1,
    sampling_grid=8,
    repeats=1,
)


def make_network(sizes: Sizes, gamma, attention: str = "auto", grid: int = GRID) -> WindowedARTransformer:
    torch.manual_seed(0)
    config = {**network_config(sizes, gamma, attention), "height": grid, "width": grid}
    return WindowedARTransformer(WindowedARConfig(**config))


# --------------------------------------------------------------------------------------------
# one attention layer


def attention_step(side: int, gamma: int, rows: int, head_dim: int, windowed: bool):
    """A callable running one forward + backward of the layer's attention on random inputs."""
    from networks.tiled_attention import tiled_attention

    num_tokens = side * side
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(rows, 1, num_tokens, head_dim, generator=generator).requires_grad_()
    k, v = (torch.randn(rows, 1, num_tokens + 1, head_dim, generator=generator).requires_grad_() for _ in range(2))
    grad = torch.randn(rows, 1, num_tokens, head_dim, generator=generator)
    if windowed:
        tiles = attention_plan(side, side, gamma, "windowed")
        return lambda: tiled_attention(q, k, v, tiles).backward(grad)
    mask = torch.cat([torch.ones(num_tokens, 1, dtype=torch.bool), gamma_window_mask(side, side, gamma)], dim=1)
    return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask).backward(grad)


def layer_seconds(side: int, gamma: int, rows: int, head_dim: int, repeats: int) -> dict[str, float]:
    steps = {name: attention_step(side, gamma, rows, head_dim, name == "windowed") for name in ("windowed", "dense")}
    for step in steps.values():
        step()  # warm-up
    return interleaved_medians({name: (lambda s=step: timed(s)) for name, step in steps.items()}, repeats)


def attention_row(name: str, side: int, sizes: Sizes, rows: int) -> Row:
    seconds = layer_seconds(side, GAMMA, rows, sizes.head_dim, sizes.repeats)
    tiles = attention_plan(side, side, GAMMA, "windowed")
    queries = rows * side * side
    note = (
        f"{rows} rows (batch x heads) x {side * side} queries, head dim {sizes.head_dim}; tiles of {tiles.tile_len} queries"
        f" over {tiles.keys.shape[1]} slots vs {side * side + 1} dense; {seconds['windowed'] * 1e3:.0f} vs {seconds['dense'] * 1e3:.0f} ms"
    )
    return Row(name, queries / seconds["windowed"], queries / seconds["dense"], "queries/s", note=note)


# --------------------------------------------------------------------------------------------
# the whole network


def training_step(network: WindowedARTransformer, tokens: torch.Tensor):
    def step():
        network.zero_grad(set_to_none=True)
        network.loss(network(tokens), tokens).backward()

    return step


def training_row(sizes: Sizes) -> tuple[Row, dict[str, float]]:
    tokens = torch.randint(0, 2**BITS, (sizes.batch, GRID, GRID), generator=torch.Generator().manual_seed(0))
    networks = {name: make_network(sizes, GAMMA, name).train() for name in ("windowed", "dense")}
    steps = {name: training_step(net, tokens) for name, net in networks.items()}
    for step in steps.values():
        step()
    seconds = interleaved_medians({name: (lambda s=step: timed(s)) for name, step in steps.items()}, sizes.repeats)
    tokens_per_step = sizes.batch * GRID * GRID
    layer = layer_seconds(GRID, GAMMA, sizes.batch * sizes.n_head, sizes.n_embd // sizes.n_head, sizes.repeats)
    attention_share = sizes.n_layer * layer["dense"] / seconds["dense"]
    ceiling = 1 / max(1e-9, 1 - attention_share)
    note = (
        f"n_embd {sizes.n_embd}, {sizes.n_layer} layers, {sizes.n_head} heads, batch {sizes.batch}, 2^{BITS} histogram;"
        f" step {seconds['windowed'] * 1e3:.0f} vs {seconds['dense'] * 1e3:.0f} ms; dense attention is"
        f" {100 * attention_share:.0f}% of the dense step, so free attention would give at most {ceiling:.1f}x"
    )
    row = Row(TRAINING_ROW, tokens_per_step / seconds["windowed"], tokens_per_step / seconds["dense"], "tokens/s", 5.0, note)
    return row, seconds


MEMORY_SCRIPT = """
import json, sys, torch
from bench.common import rss_growth_mib
from networks.window_transformer import WindowedARConfig, WindowedARTransformer
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
net = WindowedARTransformer(WindowedARConfig(**args["config"])).train()
tokens = torch.randint(0, 2 ** args["config"]["num_bits"], (args["batch"], args["config"]["height"], args["config"]["width"]))
saved = {}
def step():
    def pack(t):
        return saved.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) and t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = net.loss(net(tokens), tokens)
    loss.backward()
step()  # warm-up: first-call allocations are not the step's working set
saved.clear()
peak = rss_growth_mib(step)
print(json.dumps({"peak_mib": peak, "saved_mib": sum(saved.values()) / 2**20}))
"""


def network_config(sizes: Sizes, gamma, attention: str) -> dict:
    return dict(
        height=GRID,
        width=GRID,
        num_bits=BITS,
        gamma=gamma,
        n_layer=sizes.n_layer,
        n_head=sizes.n_head,
        n_embd=sizes.n_embd,
        attention=attention,
    )


def peak_memory_mib(sizes: Sizes, attention: str) -> dict:
    """Peak RSS growth of a training step (after a warm-up step) in a fresh interpreter, so the two
    paths never reuse each other's freed memory; plus the bytes autograd saved for backward."""
    args = {"config": network_config(sizes, GAMMA, attention), "batch": sizes.batch, "threads": torch.get_num_threads()}
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, json.dumps(args)], capture_output=True, text=True, env=env, timeout=600, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_row(sizes: Sizes) -> Row:
    memory = {name: peak_memory_mib(sizes, name) for name in ("windowed", "dense")}
    note = (
        f"peak RSS growth of a step, fresh process each; autograd saved {memory['windowed']['saved_mib']:.0f} vs"
        f" {memory['dense']['saved_mib']:.0f} MiB; batch {sizes.batch}; the dense SDPA kernel (flash on CPU) keeps no T×T matrix"
    )
    return Row(MEMORY_ROW, memory["windowed"]["peak_mib"], memory["dense"]["peak_mib"], "MiB (lower is better)", note=note)


# --------------------------------------------------------------------------------------------
# the rule and sampling


def rule_row(sizes: Sizes) -> Row:
    right, lines = 0, []
    for side, gamma in sizes.rule_cases:
        seconds = layer_seconds(side, gamma, sizes.attention_rows, sizes.head_dim, sizes.repeats)
        picked = "windowed" if attention_plan(side, side, gamma) is not None else "dense"
        faster = min(seconds, key=seconds.get)
        # a pick within 10% of the faster path is right: nothing to gain from switching
        right += seconds[picked] <= 1.1 * seconds[faster]
        lines.append(f"{side}x{side} γ={gamma} {picked} {seconds['dense'] / seconds['windowed']:.2f}x")
    note = "attention layer windowed/dense speed per case, and the rule's pick: " + ", ".join(lines)
    return Row(RULE_ROW, right, len(sizes.rule_cases), "cases", 1.0, note)


def sampling_rows(sizes: Sizes) -> list[Row]:
    gammas = (*SAMPLING_GAMMAS, None)
    networks = {gamma: make_network(sizes, gamma, grid=sizes.sampling_grid).eval() for gamma in gammas}
    for network in networks.values():
        network.sample(1)
    seconds = interleaved_medians({g: (lambda n=net: timed(lambda: n.sample(sizes.samples))) for g, net in networks.items()}, sizes.repeats)
    rate = {g: sizes.samples / s for g, s in seconds.items()}
    side = sizes.sampling_grid
    note = (
        f"{side}x{side} grid, n={sizes.samples} per call, n_embd {sizes.n_embd}, {sizes.n_layer} layers; global {rate[None]:.3g} samples/s"
    )
    return [
        Row(name, rate[g], rate[None], "samples/s", note=f"γ={gamma_name(g)}; {note}")
        for name, g in zip(SAMPLING_ROWS, SAMPLING_GAMMAS, strict=True)
    ]


def run(smoke: bool = False) -> list[Row]:
    sizes = SMOKE if smoke else FULL
    training, _ = training_row(sizes)
    rows = [
        attention_row(ATTENTION_ROW, GRID, sizes, sizes.attention_rows),
        attention_row(LARGE_ATTENTION_ROW, 64, sizes, max(1, sizes.attention_rows // 16)),
        training,
        memory_row(sizes),
        rule_row(sizes),
        *sampling_rows(sizes),
    ]
    if smoke:  # tiny models only check that everything runs; the goals are about the real sizes
        for row in rows:
            row.goal = None
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model and batch, same grid: seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from bench.run_all import format_table

    print(format_table(run(smoke=args.smoke)))

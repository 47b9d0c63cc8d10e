"""The neural γ-ARVM's training step at γ = 3 on 16×16, 32×32 and 64×64 grids: windowed vs dense attention.

The windowed path (networks/tiled_attention.py) costs O(T·γ²) per step, the dense one O(T²); these rows
check that claim on the whole training step, where the rest of the network (MLPs, the 2^7 head, the
optimizer) costs the same per token on both paths.

Rows (ratio = ours / baseline, both measured in this process, calls interleaved; model below):
  window training NxN γ=3               full training step (forward, backward, AdamW step), tokens/s,
                                        windowed vs dense, for N = 16, 32, 64; goal >= 3 at 64×64
  window per-token cost 64x64 vs 32x32  windowed s/token at T = 4096 ÷ at T = 1024 (lower is better),
                                        goal <= 1.3: the windowed cost per token does not grow with T
  window training NxN γ=3 peak memory   peak RSS growth of one step, windowed vs dense, each in a fresh process
  window attention layer NxN γ=3        one cross-attention layer, forward + backward, windowed vs dense
  window attention rule                 (grid, γ) cases where `attention_plan` picked the faster path:
                                        every attention-layer case and every training case; goal all
  window sampling, KV cache, γ=...      samples/s per γ at 32×32 (8×8 with --smoke), against global γ

Model (fixed here, so that config edits do not move the rows): n_embd 64, 2 layers, 4 heads (head dim
16), 7 bits (2^7 histogram head): the size of configs/model/arvm_rgb32.yaml at issue 23. Every training
step holds TOKENS_PER_STEP = 16384 tokens: batch 64, 16, 4 grids at 16×16, 32×32, 64×64; an attention
layer has the same queries: batch × 4 heads rows.

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

BITS, GAMMA = 7, 3
PATHS = ("windowed", "dense")
SAMPLING_GAMMAS = (1, 3, 5)
SAMPLING_ROWS = [f"window sampling, KV cache, γ={g} vs global (samples/s)" for g in SAMPLING_GAMMAS]
RULE_ROW = "window attention rule: cases where attention_plan picked the faster path"


def training_row_name(side: int) -> str:
    return f"window training {side}x{side} γ={GAMMA}: windowed vs dense (tokens/s)"


def memory_row_name(side: int) -> str:
    return f"window training {side}x{side} γ={GAMMA} peak memory: windowed vs dense"


def layer_row_name(side: int) -> str:
    return f"window attention layer {side}x{side} γ={GAMMA}: windowed vs dense (fwd+bwd)"


def per_token_row_name(large: int, small: int) -> str:
    return f"window per-token cost {large}x{large} vs {small}x{small} γ={GAMMA}: windowed s/token"


@dataclass(frozen=True)
class Sizes:
    n_embd: int
    n_layer: int
    n_head: int
    tokens_per_step: int  # batch = tokens_per_step / T grids per training step
    sides: tuple[int, ...]  # training grids; the last two make the per-token row, the last has the >= 3x goal
    rule_cases: tuple[tuple[int, int], ...]  # extra (grid side, γ) attention-layer cases of the rule row
    samples: int
    sampling_grid: int
    repeats: int

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def batch(self, side: int) -> int:
        return max(1, self.tokens_per_step // (side * side))

    def layer_cases(self) -> list[tuple[int, int]]:
        """Every (side, γ) whose attention layer is timed: the rule's cases and the training grids at γ."""
        return sorted({*self.rule_cases, *((side, GAMMA) for side in self.sides)})


# both modes bench the same grids (the row names are fixed: ROW_NAMES); --smoke shrinks the model and batch
FULL = Sizes(
    n_embd=64,
    n_layer=2,
    n_head=4,
    tokens_per_step=16384,
    sides=(16, 32, 64),
    rule_cases=((8, 1), (8, 2), (8, 3), (16, 1), (16, 5), (32, 1), (32, 5), (32, 8), (64, 5)),
    samples=16,
    sampling_grid=32,
    repeats=5,
)
SMOKE = Sizes(
    n_embd=16,
    n_layer=1,
    n_head=1,
    tokens_per_step=4096,
    sides=(16, 32, 64),
    rule_cases=((8, 2),),
    samples=1,
    sampling_grid=8,
    repeats=1,
)


def network_config(sizes: Sizes, gamma, attention: str, side: int) -> dict:
    return dict(
        height=side,
        width=side,
        num_bits=BITS,
        gamma=gamma,
        n_layer=sizes.n_layer,
        n_head=sizes.n_head,
        n_embd=sizes.n_embd,
        attention=attention,
    )


def make_network(sizes: Sizes, gamma, attention: str, side: int) -> WindowedARTransformer:
    torch.manual_seed(0)
    return WindowedARTransformer(WindowedARConfig(**network_config(sizes, gamma, attention, side)))


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
    mask = torch.cat([torch.ones(num_tokens, 1, dtype=torch.bool), gamma_window_mask(side, side, gamma)], dim=1)  # (T, 1+T)
    return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask).backward(grad)


def layer_seconds(side: int, gamma: int, rows: int, head_dim: int, repeats: int) -> dict[str, float]:
    """Median seconds of one attention layer's forward + backward per path, calls interleaved."""
    steps = {name: attention_step(side, gamma, rows, head_dim, name == "windowed") for name in PATHS}
    for step in steps.values():
        step()  # warm-up
    return interleaved_medians({name: (lambda s=step: timed(s)) for name, step in steps.items()}, repeats)


def all_layer_seconds(sizes: Sizes) -> dict[tuple[int, int], dict[str, float]]:
    """(side, γ) -> seconds per path, for every layer case, with the training step's queries and head dim."""
    return {
        (side, gamma): layer_seconds(side, gamma, sizes.batch(side) * sizes.n_head, sizes.head_dim, sizes.repeats)
        for side, gamma in sizes.layer_cases()
    }


def layer_row(side: int, sizes: Sizes, seconds: dict[str, float]) -> Row:
    tiles = attention_plan(side, side, GAMMA, "windowed")
    rows = sizes.batch(side) * sizes.n_head
    queries = rows * side * side
    note = (
        f"{rows} rows (batch x heads) x {side * side} queries, head dim {sizes.head_dim}; tiles of {tiles.tile_len} queries"
        f" over {tiles.keys.shape[1]} slots vs {side * side + 1} dense; {seconds['windowed'] * 1e3:.0f} vs {seconds['dense'] * 1e3:.0f} ms"
    )
    return Row(layer_row_name(side), queries / seconds["windowed"], queries / seconds["dense"], "queries/s", note=note)


# --------------------------------------------------------------------------------------------
# the whole training step


def training_step(network: WindowedARTransformer, tokens: torch.Tensor):
    """A callable running one full training step: forward, loss, backward, AdamW update."""
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        network.loss(network(tokens), tokens).backward()
        optimizer.step()

    return step


def training_seconds(sizes: Sizes) -> dict[tuple[int, str], float]:
    """(side, path) -> median seconds of a training step; all sizes and paths interleaved in one loop,
    so the per-token row compares sizes under the same load too."""
    steps = {}
    for side in sizes.sides:
        tokens = torch.randint(0, 2**BITS, (sizes.batch(side), side, side), generator=torch.Generator().manual_seed(0))
        for path in PATHS:
            steps[side, path] = training_step(make_network(sizes, GAMMA, path, side).train(), tokens)
    for step in steps.values():
        step()  # warm-up: first-call allocations and the optimizer state
    return interleaved_medians({key: (lambda s=step: timed(s)) for key, step in steps.items()}, sizes.repeats)


def training_rows(sizes: Sizes, seconds: dict[tuple[int, str], float], layers: dict) -> list[Row]:
    rows = []
    for side in sizes.sides:
        tokens = sizes.batch(side) * side * side
        windowed, dense = seconds[side, "windowed"], seconds[side, "dense"]
        attention_share = sizes.n_layer * layers[side, GAMMA]["dense"] / dense
        note = (
            f"n_embd {sizes.n_embd}, {sizes.n_layer} layers, {sizes.n_head} heads, 2^{BITS} histogram, AdamW; batch"
            f" {sizes.batch(side)} ({tokens} tokens); step {windowed * 1e3:.0f} vs {dense * 1e3:.0f} ms; dense attention is"
            f" ~{100 * attention_share:.0f}% of the dense step"
        )
        goal = 3.0 if side == sizes.sides[-1] else None
        rows.append(Row(training_row_name(side), tokens / windowed, tokens / dense, "tokens/s", goal, note))
    return rows


def per_token_row(sizes: Sizes, seconds: dict[tuple[int, str], float]) -> Row:
    small, large = sizes.sides[-2], sizes.sides[-1]
    per_token = {side: seconds[side, "windowed"] / (sizes.batch(side) * side * side) for side in (small, large)}
    dense = {side: seconds[side, "dense"] / (sizes.batch(side) * side * side) for side in (small, large)}
    note = (
        f"windowed training step, {per_token[large] * 1e6:.2f} vs {per_token[small] * 1e6:.2f} µs/token at T = {large * large} vs"
        f" {small * small} (dense: {dense[large] * 1e6:.2f} vs {dense[small] * 1e6:.2f}); O(T·γ²) keeps it flat"
    )
    return Row(per_token_row_name(large, small), per_token[large], per_token[small], "s/token (lower is better)", 1.3, note)


MEMORY_SCRIPT = """
import json, sys, torch
from bench.common import rss_growth_mib
from networks.window_transformer import WindowedARConfig, WindowedARTransformer
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
net = WindowedARTransformer(WindowedARConfig(**args["config"])).train()
optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
tokens = torch.randint(0, 2 ** args["config"]["num_bits"], (args["batch"], args["config"]["height"], args["config"]["width"]))
saved = {}
def step():
    def pack(t):
        return saved.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) and t

    optimizer.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = net.loss(net(tokens), tokens)
    loss.backward()
    optimizer.step()
step()  # warm-up: first-call allocations and the optimizer state are not the step's working set
saved.clear()
peak = rss_growth_mib(step)
print(json.dumps({"peak_mib": peak, "saved_mib": sum(saved.values()) / 2**20}))
"""


def peak_memory_mib(sizes: Sizes, attention: str, side: int) -> dict:
    """Peak RSS growth of a training step (after a warm-up step) in a fresh interpreter, so the two
    paths never reuse each other's freed memory; plus the bytes autograd saved for backward."""
    args = {"config": network_config(sizes, GAMMA, attention, side), "batch": sizes.batch(side), "threads": torch.get_num_threads()}
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, json.dumps(args)], capture_output=True, text=True, env=env, timeout=600, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_row(sizes: Sizes, side: int, measure: bool = True) -> Row:
    name, unit = memory_row_name(side), "MiB (lower is better)"
    if not measure:
        return Row(name, None, None, unit, note=f"--smoke measures the {sizes.sides[-1]}x{sizes.sides[-1]} grid only")
    memory = {path: peak_memory_mib(sizes, path, side) for path in PATHS}
    note = (
        f"peak RSS growth of a training step, fresh process each; autograd saved {memory['windowed']['saved_mib']:.0f} vs"
        f" {memory['dense']['saved_mib']:.0f} MiB; batch {sizes.batch(side)}"
    )
    return Row(name, memory["windowed"]["peak_mib"], memory["dense"]["peak_mib"], unit, note=note)


# --------------------------------------------------------------------------------------------
# the rule and sampling


def rule_row(sizes: Sizes, layers: dict, training: dict[tuple[int, str], float]) -> Row:
    """Whether `attention_plan` picked the measured-faster path in every attention-layer case and
    every training case; a pick within 10% of the faster path counts as right (nothing to gain)."""
    right, lines = 0, []
    cases = [("layer", side, gamma, seconds) for (side, gamma), seconds in layers.items()]
    cases += [("step", side, GAMMA, {path: training[side, path] for path in PATHS}) for side in sizes.sides]
    for kind, side, gamma, seconds in cases:
        picked = "windowed" if attention_plan(side, side, gamma) is not None else "dense"
        ok = seconds[picked] <= 1.1 * min(seconds.values())
        right += ok
        lines.append(f"{kind} {side}x{side} γ={gamma} {picked} {seconds['dense'] / seconds['windowed']:.2f}x{'' if ok else ' WRONG'}")
    note = "windowed/dense speed per case and the plan's pick: " + ", ".join(lines)
    return Row(RULE_ROW, right, len(cases), "cases", 1.0, note)


def sampling_rows(sizes: Sizes) -> list[Row]:
    gammas = (*SAMPLING_GAMMAS, None)
    side = sizes.sampling_grid
    networks = {gamma: make_network(sizes, gamma, "auto", side).eval() for gamma in gammas}
    for network in networks.values():
        network.sample(1)
    seconds = interleaved_medians({g: (lambda n=net: timed(lambda: n.sample(sizes.samples))) for g, net in networks.items()}, sizes.repeats)
    rate = {g: sizes.samples / s for g, s in seconds.items()}
    note = (
        f"{side}x{side} grid, n={sizes.samples} per call, n_embd {sizes.n_embd}, {sizes.n_layer} layers; global {rate[None]:.3g} samples/s"
    )
    return [
        Row(name, rate[g], rate[None], "samples/s", note=f"γ={gamma_name(g)}; {note}")
        for name, g in zip(SAMPLING_ROWS, SAMPLING_GAMMAS, strict=True)
    ]


SIDES = (16, 32, 64)
ROW_NAMES = [
    *(training_row_name(side) for side in SIDES),
    per_token_row_name(SIDES[-1], SIDES[-2]),
    *(memory_row_name(side) for side in SIDES),
    *(layer_row_name(side) for side in SIDES),
    RULE_ROW,
    *SAMPLING_ROWS,
]


def run(smoke: bool = False) -> list[Row]:
    sizes = SMOKE if smoke else FULL
    layers = all_layer_seconds(sizes)
    training = training_seconds(sizes)
    rows = [
        *training_rows(sizes, training, layers),
        per_token_row(sizes, training),
        *(memory_row(sizes, side, measure=not smoke or side == sizes.sides[-1]) for side in sizes.sides),
        *(layer_row(side, sizes, layers[side, GAMMA]) for side in sizes.sides),
        rule_row(sizes, layers, training),
        *sampling_rows(sizes),
    ]
    if smoke:  # tiny models only check that everything runs; the goals are about the real sizes
        for row in rows:
            row.goal = None
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model and batch, same grids: seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from bench.run_all import format_table

    print(format_table(run(smoke=args.smoke)))

"""Sampling throughput of the γ-ARVM networks (networks/window_transformer.py, kernel_estimator.py).

Rows (samples/s, higher is better; ratio = ours / baseline):
  (a) KV-cached vs full-recompute sampling of the transformer on a 16×16 grid    goal >= 10×
  (b) γ = 2 vs global, both cached, on a 32×32 grid (cost O(γ²) vs O(t) per token)  goal >= 3×
  (c) kernel estimator vs training-set size N; baseline = the smallest N's throughput scaled
      down N-fold (exact linear scaling), so ratio ≈ 1 means linear                 goal >= 0.8
The model is digits-sized: 4 query layers, n_embd 128, 4 heads, C = 6 bits (64-way histogram).

python -m bench.bench_sampling [--smoke] [--device cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from bench.common import Row
from bench.harness import interleaved_medians, timed
from networks.kernel_estimator import KernelARVM
from networks.window_transformer import WindowedARConfig, WindowedARTransformer

NUM_BITS = 6


def make_transformer(size: int, gamma: int | None, device, smoke: bool) -> WindowedARTransformer:
    width = dict(n_layer=2, n_head=2, n_embd=32) if smoke else dict(n_layer=4, n_head=4, n_embd=128)
    config = WindowedARConfig(height=size, width=size, num_bits=NUM_BITS, gamma=gamma, **width)
    torch.manual_seed(0)
    return WindowedARTransformer(config).to(device).eval()


def samples_per_second(samplers: dict, n: int, rounds: int, device: torch.device, inner: dict | None = None) -> dict:
    """{name: sampler} -> {name: samples/s of sampler(n)}, calls interleaved round-robin (the shared
    2-core dev machine drifts by 2x between back-to-back medians). inner[name] = calls per round,
    medianed, for a fast sampler paired with a slow baseline that runs once per round."""

    def measure(sampler, calls):
        return lambda: statistics.median(timed(lambda: sampler(n), device) for _ in range(calls))

    for sampler in samplers.values():
        sampler(1)  # warm-up: allocator, kernels, first-call dispatch
    inner = inner or {}
    seconds = interleaved_medians({name: measure(f, inner.get(name, 1)) for name, f in samplers.items()}, rounds)
    return {name: n / value for name, value in seconds.items()}


def cache_rows(smoke: bool, device) -> list[Row]:
    """(a) the KV cache against re-running the whole forward per token."""
    size, n, gamma = (6, 4, 2) if smoke else (16, 16, 2)
    model = make_transformer(size, gamma, device, smoke)
    samplers = {"cached": model.sample, "full": lambda k: model.sample(k, use_cache=False)}
    speed = samples_per_second(samplers, n, 1, device, inner={"cached": 5})  # full recompute: ~1 min a call
    note = f"{size}x{size}, gamma={gamma}, n={n}, {model.num_params() / 1e6:.2f}M params"
    return [Row(f"transformer cached vs full recompute {size}x{size}", speed["cached"], speed["full"], "samples/s", 10.0, note)]


def window_rows(smoke: bool, device) -> list[Row]:
    """(b) a finite window against the global prefix, both cached."""
    size, n = (8, 4) if smoke else (32, 64)
    windowed, global_ = make_transformer(size, 2, device, smoke), make_transformer(size, None, device, smoke)
    speed = samples_per_second({"window": windowed.sample, "global": global_.sample}, n, 3, device)
    name = f"transformer gamma=2 vs global (cached) {size}x{size}"
    return [Row(name, speed["window"], speed["global"], "samples/s", 3.0, f"n={n}")]


def kernel_rows(smoke: bool, device) -> list[Row]:
    """(c) the kernel estimator should cost O(N): rows against exact N-fold scaling."""
    sizes, size, n, gamma = ((50, 100, 200), 4, 8, 2) if smoke else ((500, 1000, 2000), 8, 64, 2)
    generator = torch.Generator().manual_seed(0)
    grids = [torch.randint(0, 2**NUM_BITS, (num_train, size, size), generator=generator) for num_train in sizes]
    models = [KernelARVM(train, NUM_BITS, gamma).to(device) for train in grids]
    speed = samples_per_second({num_train: model.sample for num_train, model in zip(sizes, models, strict=True)}, n, 3, device)
    rows = []
    for num_train in sizes:
        linear = speed[sizes[0]] * sizes[0] / num_train  # the smallest N's throughput, scaled N-fold
        note = f"{size}x{size}, gamma={gamma}, n={n}, chunk {models[0].chunk_size}"
        rows.append(Row(f"kernel estimator N={num_train} vs linear", speed[num_train], linear, "samples/s", 0.8, note))
    return rows


def run(smoke: bool = False, device: str | torch.device = "cpu") -> list[Row]:
    device = torch.device(device)
    rows = cache_rows(smoke, device) + window_rows(smoke, device) + kernel_rows(smoke, device)
    if smoke:  # tiny grids only check that everything runs; the goals are about the real sizes
        for row in rows:
            row.goal = None
    return rows


def format_table(rows: list[Row]) -> str:
    lines = [f"{'name':<52} {'ours':>10} {'baseline':>10} {'ratio':>7} {'goal':>6}  unit       note"]
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        goal = f"{row.goal:g}" if row.goal is not None else "-"
        lines.append(f"{row.name:<52} {row.ours:>10.3g} {row.baseline:>10.3g} {ratio:>7} {goal:>6}  {row.unit:<10} {row.note}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(format_table(run(smoke=args.smoke, device=args.device)))

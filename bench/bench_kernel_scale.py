"""The kernel γ-ARVM (networks/kernel_estimator.py) at the authors' scale: 32×32 grids of 7-bit tokens, γ = 5.

For N = 1k, 10k and 50k synthetic training grids:
  time     per scored position (S queries against all N grids), at the positions with a full
           window, rounds interleaved over the three N in this process; row ratio = (N=1k rate
           scaled N-fold) / measured rate, so 1.0 means linear in N;
  memory   in a fresh interpreter per N (no run reuses another's freed memory): peak RSS growth
           while the estimator is built (the grids it stores, 1 byte a token at 7 bits, position-
           major) and then while it scores a position: the working memory, which chunking bounds
           independently of N.

    python -m bench.bench_kernel_scale [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.common import Row
from bench.harness import interleaved_medians, timed

GRID, BITS, GAMMA = 32, 7, 5
SIZES = (1_000, 10_000, 50_000)
TIME_ROWS = [f"kernel estimator 32x32x7 bits γ={GAMMA} N={n // 1000}k vs linear" for n in SIZES]
MEMORY_ROW = f"kernel estimator 32x32x7 bits γ={GAMMA} working memory N=50k vs N=10k"
ROW_NAMES = [*TIME_ROWS, MEMORY_ROW]

MEMORY_SCRIPT = """
import json, sys, torch
from bench.common import rss_growth_mib
from networks.kernel_estimator import KernelARVM
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
generator = torch.Generator().manual_seed(0)
train = torch.randint(0, 2 ** args["bits"], (args["num_train"], args["grid"], args["grid"]), generator=generator, dtype=torch.uint8)
queries = torch.randint(0, 2 ** args["bits"], (args["queries"], args["grid"], args["grid"]), generator=generator)
state = {}
def build():
    state["model"] = KernelARVM(train, args["bits"], args["gamma"], chunk_size=args["chunk"])
build_mib = rss_growth_mib(build)
query_mib = rss_growth_mib(lambda: state["model"].log_histogram(queries, args["position"]))
stored_mib = state["model"].tokens_by_position.nbytes / 2**20
print(json.dumps({"build_mib": build_mib, "query_mib": query_mib, "stored_mib": stored_mib}))
"""


@dataclass(frozen=True)
class Sizes:
    queries: int  # scored per call (a sampling batch)
    positions: int  # full-window positions timed per round
    repeats: int


FULL = Sizes(queries=64, positions=4, repeats=3)
SMOKE = Sizes(queries=8, positions=1, repeats=1)
CHUNK = 4096


def full_window_positions(count: int) -> list[int]:
    return [GRID * GRID - 1 - GRID // 2 - k for k in range(count)]  # last row: every window cell inside the grid


def memory_mib(num_train: int, sizes: Sizes) -> dict:
    """Peak RSS growth of building the estimator, then of scoring one position, in a fresh interpreter."""
    import torch

    args = {
        "grid": GRID,
        "bits": BITS,
        "gamma": GAMMA,
        "num_train": num_train,
        "chunk": CHUNK,
        "queries": sizes.queries,
        "position": full_window_positions(1)[0],
        "threads": torch.get_num_threads(),
    }
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, json.dumps(args)], capture_output=True, text=True, env=env, timeout=900, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def seconds_per_position(sizes: Sizes) -> dict[int, float]:
    """Median seconds to score one position against N grids, rounds interleaved over the three N."""
    import torch

    from networks.kernel_estimator import KernelARVM

    generator = torch.Generator().manual_seed(0)
    queries = torch.randint(0, 2**BITS, (sizes.queries, GRID, GRID), generator=generator)
    models = {
        n: KernelARVM(torch.randint(0, 2**BITS, (n, GRID, GRID), generator=generator, dtype=torch.uint8), BITS, GAMMA, chunk_size=CHUNK)
        for n in SIZES
    }
    positions = full_window_positions(sizes.positions)

    def score(model):
        for t in positions:
            model.log_histogram(queries, t)

    for model in models.values():
        model.log_histogram(queries, positions[0])  # warm-up
    seconds = interleaved_medians({n: (lambda m=m: timed(lambda: score(m))) for n, m in models.items()}, sizes.repeats)
    return {n: s / len(positions) for n, s in seconds.items()}


def run(smoke: bool = False) -> list[Row]:
    sizes = SMOKE if smoke else FULL
    seconds = seconds_per_position(sizes)
    memory = {n: memory_mib(n, sizes) for n in SIZES}
    rows = []
    for name, n in zip(TIME_ROWS, SIZES, strict=True):
        linear = sizes.queries / seconds[SIZES[0]] * SIZES[0] / n  # the smallest N's rate, scaled N-fold
        m = memory[n]
        note = (
            f"{seconds[n] * 1e3:.1f} ms per position for {sizes.queries} queries; scoring +{m['query_mib']:.0f} MiB;"
            f" building +{m['build_mib']:.0f} MiB of which {m['stored_mib']:.0f} MiB are the stored uint8 grids; chunk {CHUNK}"
        )
        rows.append(Row(name, sizes.queries / seconds[n], linear, "queries x positions/s", None if smoke else 0.8, note))
    note = (
        "peak RSS growth while scoring one position, fresh process per N: "
        + ", ".join(f"{n // 1000}k {memory[n]['query_mib']:.0f}" for n in SIZES)
        + f" MiB; N=1k fills less than one chunk of {CHUNK}, so compare the chunk-filling sizes"
    )
    rows.append(Row(MEMORY_ROW, memory[SIZES[-1]]["query_mib"], memory[SIZES[1]]["query_mib"], "MiB (lower is better)", note=note))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one position, 8 queries: seconds per N")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from bench.run_all import format_table

    print(format_table(run(smoke=args.smoke)))

"""The kernel γ-ARVM (networks/kernel_estimator.py) at the authors' scale: 32×32 grids of 7-bit tokens, γ = 5.

For N = 1k, 10k and 50k synthetic training grids, each in a fresh interpreter (so no run reuses
another's freed memory):
  time     per scored position (S queries against all N grids), at the positions with a full
           window; row ratio = (N=1k time scaled N-fold) / measured, so 1.0 means linear in N;
  memory   peak RSS growth while the estimator is built and queried: its working memory, which
           chunking bounds independently of N. The int16 grids it stores (2 bytes a token) are the
           caller's tensor, kept without a copy, so they are not part of the growth.

    python -m bench.bench_kernel_scale [--smoke]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.common import Row

GRID, BITS, GAMMA = 32, 7, 5
SIZES = (1_000, 10_000, 50_000)
TIME_ROWS = [f"kernel estimator 32x32x7 bits γ={GAMMA} N={n // 1000}k vs linear" for n in SIZES]
MEMORY_ROW = f"kernel estimator 32x32x7 bits γ={GAMMA} working memory N=50k vs N=1k"
ROW_NAMES = [*TIME_ROWS, MEMORY_ROW]

SCRIPT = """
import json, statistics, sys, time, torch
from bench.common import current_rss_mib, rss_growth_mib
from networks.kernel_estimator import KernelARVM
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
grid, n = args["grid"], args["num_train"]
generator = torch.Generator().manual_seed(0)
train = torch.randint(0, 2 ** args["bits"], (n, grid, grid), generator=generator, dtype=torch.int16)  # the caller's grids
queries = torch.randint(0, 2 ** args["bits"], (args["queries"], grid, grid), generator=generator)
positions = [grid * grid - 1 - grid // 2 - k for k in range(args["positions"])]  # last row, full windows
state = {}
def build_and_query():
    state["model"] = KernelARVM(train, args["bits"], args["gamma"], chunk_size=args["chunk"])
    state["model"].log_histogram(queries, positions[0])
peak = rss_growth_mib(build_and_query)
model = state["model"]
stored = (model.train_tokens.nbytes + model.kernel.nbytes) / 2**20
seconds = []
for _ in range(args["repeats"]):
    start = time.perf_counter()
    for t in positions:
        model.log_histogram(queries, t)
    seconds.append((time.perf_counter() - start) / len(positions))
print(json.dumps({"peak_mib": peak, "stored_mib": stored, "seconds_per_position": statistics.median(seconds)}))
"""


def measure(num_train: int, smoke: bool) -> dict:
    import torch

    args = {"grid": GRID, "bits": BITS, "gamma": GAMMA, "num_train": num_train, "chunk": 4096,
            "queries": 8 if smoke else 64, "positions": 1 if smoke else 4, "repeats": 1 if smoke else 3,
            "threads": torch.get_num_threads()}
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)], capture_output=True, text=True, env=env,
                         timeout=900, check=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "queries": args["queries"]}


def run(smoke: bool = False) -> list[Row]:
    results = {n: measure(n, smoke) for n in SIZES}
    smallest = results[SIZES[0]]
    rows = []
    for name, n in zip(TIME_ROWS, SIZES):
        r = results[n]
        rate = r["queries"] / r["seconds_per_position"]  # scored (query, position) pairs per second
        linear = smallest["queries"] / smallest["seconds_per_position"] * SIZES[0] / n
        note = (f"{r['seconds_per_position'] * 1e3:.1f} ms per position for {r['queries']} queries; working memory"
                f" {r['peak_mib']:.0f} MiB; stored grids {r['stored_mib']:.0f} MiB; chunk 4096")
        rows.append(Row(name, rate, linear, "queries x positions/s", None if smoke else 0.8, note))
    working = {n: results[n]["peak_mib"] for n in SIZES}
    note = "working memory (MiB) by N: " + ", ".join(f"{n // 1000}k {working[n]:.0f}" for n in SIZES) + "; bounded = ratio ≈ 1"
    rows.append(Row(MEMORY_ROW, working[SIZES[-1]], working[SIZES[0]], "MiB (lower is better)", note=note))
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

"""torch.compile of the neural γ-ARVM (networks/compiled_step.py, GammaARVM(compile=True)) against eager, on CPU.

Rows (higher is better; ratio = compiled / eager, both measured in this process, interleaved):
  training step (forward, loss, backward, AdamW) on a 16×16 grid at γ = 2        tokens/s
  KV-cached sampling on the same network                                          samples/s
The network is digits-sized (4 layers × 128, 4 heads, 6 bits); --smoke: 6×6, 2 × 32. Compile time is
kept out of the timed calls (warm-up) and reported in the note: it is paid once per process and shape.
No goal: on CPU the fused kernels help the small per-token ops most, and the ratio is what to read.

python -m bench.bench_compile [--smoke] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from bench.common import Row
from bench.harness import interleaved_medians, timed
from networks.compiled_step import compile_network, cpp_compiler
from networks.window_transformer import WindowedARConfig, WindowedARTransformer

NUM_BITS, GAMMA = 6, 2
TRAIN_NAME = "compile: γ-ARVM training step, compiled vs eager"
SAMPLE_NAME = "compile: γ-ARVM cached sampling, compiled vs eager"
ROW_NAMES = [TRAIN_NAME, SAMPLE_NAME]


def networks(smoke: bool) -> tuple[WindowedARTransformer, WindowedARTransformer, int]:
    side = 6 if smoke else 16
    width = dict(n_layer=2, n_head=2, n_embd=32) if smoke else dict(n_layer=4, n_head=4, n_embd=128)
    torch.manual_seed(0)
    eager = WindowedARTransformer(WindowedARConfig(height=side, width=side, num_bits=NUM_BITS, gamma=GAMMA, **width))
    return eager, compile_network(copy.deepcopy(eager)), side


def training_row(eager, compiled, side: int, smoke: bool) -> Row:
    batch, steps, repeats = (4, 2, 3) if smoke else (32, 5, 5)
    tokens = torch.randint(0, 2**NUM_BITS, (batch, side, side), generator=torch.Generator().manual_seed(0))

    def stepper(net):
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def run():
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                net.loss(net(tokens), tokens).backward()
                optimizer.step()

        return run

    runs = {"eager": stepper(eager.train()), "compiled": stepper(compiled.train())}
    start = time.perf_counter()
    runs["compiled"]()  # compiles forward and backward
    compile_s = time.perf_counter() - start
    runs["eager"]()
    seconds = interleaved_medians({name: (lambda run=run: timed(run)) for name, run in runs.items()}, repeats)
    rate = {name: steps * tokens.numel() / s for name, s in seconds.items()}
    attention = "windowed" if eager.windowed else "dense"
    params = eager.num_params() / 1e6
    note = f"{side}x{side}, γ={GAMMA} ({attention}), batch {batch}, {params:.2f}M params, fp32; compile {compile_s:.0f} s once"
    return Row(TRAIN_NAME, rate["compiled"], rate["eager"], "tokens/s", note=note)


def sampling_row(eager, compiled, side: int, smoke: bool) -> Row:
    n, repeats = (4, 3) if smoke else (64, 3)
    eager.eval(), compiled.eval()
    start = time.perf_counter()
    compiled.sample(n)  # compiles the step and the cache write (one shape for every position)
    compile_s = time.perf_counter() - start
    eager.sample(n)
    calls = {name: (lambda net=net: timed(lambda: net.sample(n))) for name, net in (("eager", eager), ("compiled", compiled))}
    seconds = interleaved_medians(calls, repeats)
    note = f"{side}x{side}, γ={GAMMA}, n={n}, KV cache, fp32; compiled step pads every window to the widest; compile {compile_s:.0f} s once"
    return Row(SAMPLE_NAME, n / seconds["compiled"], n / seconds["eager"], "samples/s", note=note)


NO_COMPILER = "not run: no C++ compiler for torch.compile's CPU backend (set CXX or install g++)"


def run(smoke: bool = False) -> list[Row]:
    if not torch.cuda.is_available() and cpp_compiler() is None:
        return [Row(name, None, None, unit, note=NO_COMPILER) for name, unit in ((TRAIN_NAME, "tokens/s"), (SAMPLE_NAME, "samples/s"))]
    eager, compiled, side = networks(smoke)
    return [training_row(eager, compiled, side, smoke), sampling_row(eager, compiled, side, smoke)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from bench.harness import machine_description
    from bench.run_all import format_table

    print(f"machine: {machine_description()}")
    print(format_table(run(smoke=args.smoke)))

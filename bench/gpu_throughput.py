"""`make gpu-check`, the numbers: throughput at CIFAR size on one CUDA device, in < 5 min.

    python -m bench.gpu_throughput [--out FILE.json]

Prints one table (bench.run_all's format): BL-AE training (bf16-mixed, Lightning vs a plain loop) at
32×32×3 with the CIFAR config's Patch-MLP; neural γ-ARVM training (bf16 autocast) at 32×32×7 bits
with the CIFAR config's 4 × 256 network, windowed vs dense masked at γ = 5 and global; KV-cached
sampling at γ = 5 and global; exact L2 top-2 (uint8 pixels, 32×32×3) and Hamming top-2 (7168 bits)
against 50k references. A section that fails makes the exit status 1. Without CUDA it prints one
line and exits 0. The pass/fail half of `make gpu-check`, every CUDA-only code path against the
CPU, is tests/gpu/test_cuda_matches_cpu.py. Not a `bench_*` module, so `make bench` (bench.run_all)
leaves it out.

`--device cpu --tiny` (not in --help) runs every section at toy sizes on the CPU, so the logic of
this script is tested where no GPU exists (tests/bench/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.common import Row
from bench.harness import failure_note, interleaved_medians, machine_description, timed

BUDGET_S = 270.0  # sections start only while the run is younger than this: the whole run stays < 5 min
NO_CUDA_LINE = "gpu throughput: no CUDA device here (torch.cuda.is_available() is False); nothing to measure"


@dataclass(frozen=True)
class Sizes:
    blae_width: int
    blae_blocks: int
    blae_batch: int
    blae_steps: int
    n_layer: int
    n_head: int
    n_embd: int
    arvm_batch: int
    arvm_steps: int
    samples: int
    grid: int  # latent grid side (32 at CIFAR size)
    references: int  # NN search reference rows
    queries: int
    repeats: int


# The CIFAR configs: configs/blae/cifar10.yaml (Patch-MLP 512 x 4, patch 7, batch 256) and
# configs/arvm/cifar10.yaml (4 layers x 256, 8 heads, batch 64); 50k references = CIFAR-10's train split.
CUDA = Sizes(
    blae_width=512,
    blae_blocks=4,
    blae_batch=256,
    blae_steps=20,
    n_layer=4,
    n_head=8,
    n_embd=256,
    arvm_batch=64,
    arvm_steps=10,
    samples=256,
    grid=32,
    references=50_000,
    queries=10_000,
    repeats=3,
)
TINY = Sizes(
    blae_width=16,
    blae_blocks=1,
    blae_batch=4,
    blae_steps=3,
    n_layer=1,
    n_head=2,
    n_embd=16,
    arvm_batch=2,
    arvm_steps=2,
    samples=2,
    grid=6,
    references=300,
    queries=40,
    repeats=1,
)
BITS, GAMMA, IMAGE_CHANNELS = 7, 5, 3


def blae_training(sizes: Sizes, device: torch.device) -> list[Row]:
    """bf16-mixed BL-AE steps through Lightning and a plain loop in lock-step (bench.harness)."""
    from bench import bench_training_step as steps
    from bench.harness import cycled_batches, quiet_lightning
    from lightning_modules.blae import BinaryLatentAutoencoder
    from networks.autoencoder import PatchMLPDecoder, PatchMLPEncoder
    from networks.binarizer import NoiseInjectionBinarizer

    side = sizes.grid
    net_args = dict(image_channels=IMAGE_CHANNELS, latent_channels=BITS, width=sizes.blae_width, num_blocks=sizes.blae_blocks, patch_size=7)
    with quiet_lightning():
        model = BinaryLatentAutoencoder(
            PatchMLPEncoder(**net_args),
            PatchMLPDecoder(**net_args),
            NoiseInjectionBinarizer(noise="gaussian", noise_rate=0.4),
            optimizer=lambda params: torch.optim.Adam(params, lr=2e-4),
            image_size=side,
            channels=IMAGE_CHANNELS,
        )
    images = torch.rand(4 * sizes.blae_batch, IMAGE_CHANNELS, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    warmup = 3
    batches = cycled_batches({"image": images}, sizes.blae_batch, warmup + sizes.blae_steps, device)
    loop_sizes = steps.Sizes(
        width=sizes.blae_width,
        blocks=sizes.blae_blocks,
        bits=BITS,
        n_layer=0,
        n_embd=0,
        blae_batch=sizes.blae_batch,
        arvm_batch=0,
        warmup=warmup,
        steps=sizes.blae_steps,
        repeats=1,
    )
    row = steps.compare_loops(
        f"BL-AE training {side}x{side}x{IMAGE_CHANNELS}, Lightning vs plain loop",
        "images/s",
        model,
        steps.blae_plain_loss,
        model.optimizer_factory,
        batches,
        loop_sizes,
        device,
        items_per_batch=sizes.blae_batch,
        note=f"Patch-MLP {sizes.blae_width} x {sizes.blae_blocks}, patch 7, {BITS} bits, batch {sizes.blae_batch}",
    )
    row.goal = None  # the overhead goal belongs to bench_training_step; here the absolute rate matters
    return [row]


def arvm_network(sizes: Sizes, gamma, attention: str, device: torch.device):
    from networks.window_transformer import WindowedARConfig, WindowedARTransformer

    torch.manual_seed(0)
    config = WindowedARConfig(
        height=sizes.grid,
        width=sizes.grid,
        num_bits=BITS,
        gamma=gamma,
        n_layer=sizes.n_layer,
        n_head=sizes.n_head,
        n_embd=sizes.n_embd,
        attention=attention,
    )
    return WindowedARTransformer(config).to(device)


def autocast_for(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def arvm_training(sizes: Sizes, device: torch.device) -> list[Row]:
    """Training steps (bf16 autocast on CUDA, AdamW) of the three attention paths, interleaved."""
    tokens = torch.randint(0, 2**BITS, (sizes.arvm_batch, sizes.grid, sizes.grid), generator=torch.Generator().manual_seed(0)).to(device)
    paths = {"windowed γ=5": (GAMMA, "windowed"), "dense γ=5": (GAMMA, "dense"), "global": (None, "dense")}
    steps = {}
    for name, (gamma, attention) in paths.items():
        net = arvm_network(sizes, gamma, attention, device).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=5e-4)

        def step(net=net, optimizer=optimizer):
            for _ in range(sizes.arvm_steps):
                optimizer.zero_grad(set_to_none=True)
                with autocast_for(device):
                    loss = net.loss(net(tokens), tokens)
                loss.backward()
                optimizer.step()

        step()  # warm-up: kernels, allocator
        steps[name] = step
    seconds = interleaved_medians({name: (lambda s=s: timed(s, device)) for name, s in steps.items()}, sizes.repeats)
    tokens_per_call = sizes.arvm_steps * tokens.numel()
    rate = {name: tokens_per_call / s for name, s in seconds.items()}
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    note = f"{sizes.n_layer} x {sizes.n_embd}, {sizes.n_head} heads, batch {sizes.arvm_batch}, {precision}, AdamW"
    side = sizes.grid
    return [
        Row(
            f"γ-ARVM training {side}x{side} γ={GAMMA}: windowed vs dense masked",
            rate["windowed γ=5"],
            rate["dense γ=5"],
            "tokens/s",
            note=f"{note}; ratio < 1 means the auto rule (CPU-measured) should pick dense on this device",
        ),
        Row(f"γ-ARVM training {side}x{side} global (dense)", rate["global"], None, "tokens/s", note=note),
    ]


def arvm_sampling(sizes: Sizes, device: torch.device) -> list[Row]:
    nets = {name: arvm_network(sizes, gamma, "auto", device).eval() for name, gamma in (("γ=5", GAMMA), ("global", None))}
    for net in nets.values():
        net.sample(2)
    calls = {name: (lambda n=n: timed(lambda: n.sample(sizes.samples), device)) for name, n in nets.items()}
    seconds = interleaved_medians(calls, sizes.repeats)
    rate = {name: sizes.samples / s for name, s in seconds.items()}
    side = sizes.grid
    return [
        Row(
            f"γ-ARVM sampling {side}x{side}, KV cache: γ={GAMMA} vs global",
            rate["γ=5"],
            rate["global"],
            "samples/s",
            note=f"n={sizes.samples} per call, fp32, {sizes.n_layer} x {sizes.n_embd}",
        )
    ]


def nn_search_inputs(grid: int, references: int, queries: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"L2": (queries, reference) uint8 pixel rows, "Hamming": the same of int8 ±1 codes} at a latent grid side."""
    generator = torch.Generator().manual_seed(0)
    dims = IMAGE_CHANNELS * grid * grid
    bits = BITS * grid * grid
    pixels = torch.randint(0, 256, (references + queries, dims), generator=generator, dtype=torch.uint8)
    codes = torch.randint(0, 2, (references + queries, bits), generator=generator, dtype=torch.int8) * 2 - 1
    # a few queries are near-copies of references, as generated samples that memorize would be
    pixels[references : references + 4] = pixels[:4]
    codes[references : references + 4] = codes[:4]
    codes[references : references + 4, :3] *= -1
    return {"L2": (pixels[references:], pixels[:references]), "Hamming": (codes[references:], codes[:references])}


def nn_search_rows(sizes: Sizes, device: torch.device, inputs) -> list[Row]:
    from nn_search import exact_l2_top2, hamming_top2

    rows = []
    for name, search in (("L2", exact_l2_top2), ("Hamming", hamming_top2)):
        queries, reference = (x.to(device) for x in inputs[name])
        search(queries[:32], reference)  # warm-up
        seconds = timed(lambda search=search, queries=queries, reference=reference: search(queries, reference), device)
        unit_note = f"{queries.shape[1]} uint8 dims" if name == "L2" else f"{queries.shape[1]} bits"
        rows.append(
            Row(
                f"exact {name} top-2, {len(queries)} x {len(reference)} ({unit_note})",
                len(queries) / seconds,
                None,
                "queries/s",
                note=f"{seconds:.2f} s; {device.type}",
            )
        )
    return rows


# --------------------------------------------------------------------------------------------


def run(device: torch.device, sizes: Sizes) -> list[Row]:
    start = time.perf_counter()
    inputs = nn_search_inputs(sizes.grid, sizes.references, sizes.queries)
    sections = [
        ("BL-AE training", lambda: blae_training(sizes, device)),
        ("γ-ARVM training", lambda: arvm_training(sizes, device)),
        ("γ-ARVM sampling", lambda: arvm_sampling(sizes, device)),
        ("NN search", lambda: nn_search_rows(sizes, device, inputs)),
    ]
    rows = []
    for name, section in sections:
        elapsed = time.perf_counter() - start
        if elapsed > BUDGET_S:
            rows.append(Row(name, None, None, "", note=f"skipped: {elapsed:.0f} s into the {BUDGET_S:.0f} s budget"))
            continue
        try:
            rows += section()
        except Exception as err:  # noqa: BLE001 - one broken section must not hide the others
            import traceback

            traceback.print_exc(file=sys.stderr)
            rows.append(Row(name, None, None, "", note=failure_note(err)))
        print(f"gpu throughput: {name} done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA_LINE)
        return 0
    from bench.run_all import format_table, row_payload

    rows = run(device, TINY if args.tiny else CUDA)
    print(f"machine: {machine_description()}; device {device}")
    print(format_table(rows))
    if args.out is not None:
        args.out.write_text(json.dumps({"machine": machine_description(), "rows": [row_payload(r) for r in rows]}, indent=2))
    bad = [row for row in rows if row.note.startswith("failed")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

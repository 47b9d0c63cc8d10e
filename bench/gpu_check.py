"""`make gpu-check`: throughput at CIFAR size and the CUDA-only code paths, on one CUDA device, in < 5 min.

    python -m bench.gpu_check [--out FILE.json]

Prints one table (bench.run_all's format):
  performance  BL-AE training (bf16-mixed, Lightning vs a plain loop) at 32×32×3 with the CIFAR
               config's Patch-MLP; neural γ-ARVM training (bf16 autocast) at 32×32×7 bits with the
               CIFAR config's 4 × 256 network, windowed vs dense masked at γ = 5 and global; KV-cached
               sampling at γ = 5 and global; exact L2 top-2 (uint8 pixels, 32×32×3) and Hamming
               top-2 (7168 bits) against 50k references;
  checks       the code paths that only run on CUDA, against the CPU result: the int8 GEMM with
               its row/column padding, bit packing, token codes, windowed attention (SDPA over
               tiles), KV-cached sampling, and both NN searches on a slice of the queries.
A failed check makes the exit status 1. Without CUDA it prints one line and exits 0.

`--device cpu --tiny` (not in --help) runs every section at toy sizes on the CPU, so the logic of
this script is tested where no GPU exists (tests/bench/test_bench_smoke.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.common import Row
from bench.harness import failure_note, interleaved_medians, machine_description, timed

BUDGET_S = 270.0  # sections start only while the run is younger than this: the whole check stays < 5 min
NO_CUDA_LINE = "gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing to check"


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
    check_queries: int  # queries also searched on the CPU for the comparison
    repeats: int


# The CIFAR configs: configs/blae/cifar10.yaml (Patch-MLP 512 x 4, patch 7, batch 256) and
# configs/arvm/cifar10.yaml (4 layers x 256, 8 heads, batch 64); 50k references = CIFAR-10's train split.
CUDA = Sizes(blae_width=512, blae_blocks=4, blae_batch=256, blae_steps=20, n_layer=4, n_head=8, n_embd=256,
             arvm_batch=64, arvm_steps=10, samples=256, grid=32, references=50_000, queries=10_000, check_queries=64,
             repeats=3)
TINY = Sizes(blae_width=16, blae_blocks=1, blae_batch=4, blae_steps=3, n_layer=1, n_head=2, n_embd=16,
             arvm_batch=2, arvm_steps=2, samples=2, grid=6, references=300, queries=40, check_queries=8, repeats=1)
BITS, GAMMA, IMAGE_CHANNELS = 7, 5, 3


# --------------------------------------------------------------------------------------------
# performance


def blae_training(sizes: Sizes, device: torch.device) -> list[Row]:
    """bf16-mixed BL-AE steps through Lightning and a plain loop in lock-step (bench.harness)."""
    from bench import bench_training_step as steps
    from bench.harness import cycled_batches, quiet_lightning
    from lightning_modules.blae import BinaryLatentAutoencoder
    from networks.autoencoder import PatchMLPDecoder, PatchMLPEncoder
    from networks.binarizer import TanhBinarizer

    side = sizes.grid
    net_args = dict(image_channels=IMAGE_CHANNELS, latent_channels=BITS, width=sizes.blae_width, num_blocks=sizes.blae_blocks, patch_size=7)
    with quiet_lightning():
        model = BinaryLatentAutoencoder(
            PatchMLPEncoder(**net_args), PatchMLPDecoder(**net_args), TanhBinarizer(noise="gaussian", noise_rate=0.4),
            optimizer=lambda params: torch.optim.Adam(params, lr=2e-4), image_size=side, channels=IMAGE_CHANNELS,
        )
    images = torch.rand(4 * sizes.blae_batch, IMAGE_CHANNELS, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    warmup = 3
    batches = cycled_batches({"image": images}, sizes.blae_batch, warmup + sizes.blae_steps, device)
    loop_sizes = steps.Sizes(width=sizes.blae_width, blocks=sizes.blae_blocks, bits=BITS, n_layer=0, n_embd=0,
                             blae_batch=sizes.blae_batch, arvm_batch=0, warmup=warmup, steps=sizes.blae_steps, repeats=1)
    row = steps.compare_loops(
        f"BL-AE training {side}x{side}x{IMAGE_CHANNELS}, Lightning vs plain loop", "images/s", model, steps.blae_plain_loss,
        model.optimizer_factory, batches, loop_sizes, device, items_per_batch=sizes.blae_batch,
        note=f"Patch-MLP {sizes.blae_width} x {sizes.blae_blocks}, patch 7, {BITS} bits, batch {sizes.blae_batch}",
    )
    row.goal = None  # the overhead goal belongs to bench_training_step; here the absolute rate matters
    return [row]


def arvm_network(sizes: Sizes, gamma, attention: str, device: torch.device):
    from networks.window_transformer import WindowedARConfig, WindowedARTransformer

    torch.manual_seed(0)
    config = WindowedARConfig(height=sizes.grid, width=sizes.grid, num_bits=BITS, gamma=gamma, n_layer=sizes.n_layer,
                              n_head=sizes.n_head, n_embd=sizes.n_embd, attention=attention)
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
        Row(f"γ-ARVM training {side}x{side} γ={GAMMA}: windowed vs dense masked", rate["windowed γ=5"], rate["dense γ=5"], "tokens/s",
            note=f"{note}; ratio < 1 means the auto rule (CPU-measured) should pick dense on this device"),
        Row(f"γ-ARVM training {side}x{side} global (dense)", rate["global"], None, "tokens/s", note=note),
    ]


def arvm_sampling(sizes: Sizes, device: torch.device) -> list[Row]:
    nets = {name: arvm_network(sizes, gamma, "auto", device).eval() for name, gamma in (("γ=5", GAMMA), ("global", None))}
    for net in nets.values():
        net.sample(2)
    seconds = interleaved_medians({name: (lambda n=n: timed(lambda: n.sample(sizes.samples), device)) for name, n in nets.items()}, sizes.repeats)
    rate = {name: sizes.samples / s for name, s in seconds.items()}
    side = sizes.grid
    return [Row(f"γ-ARVM sampling {side}x{side}, KV cache: γ={GAMMA} vs global", rate["γ=5"], rate["global"], "samples/s",
                note=f"n={sizes.samples} per call, fp32, {sizes.n_layer} x {sizes.n_embd}")]


def nn_search_inputs(sizes: Sizes):
    generator = torch.Generator().manual_seed(0)
    dims = IMAGE_CHANNELS * sizes.grid * sizes.grid
    bits = BITS * sizes.grid * sizes.grid
    pixels = torch.randint(0, 256, (sizes.references + sizes.queries, dims), generator=generator, dtype=torch.uint8)
    codes = torch.randint(0, 2, (sizes.references + sizes.queries, bits), generator=generator, dtype=torch.int8) * 2 - 1
    # a few queries are near-copies of references, as generated samples that memorize would be
    pixels[sizes.references : sizes.references + 4] = pixels[:4]
    codes[sizes.references : sizes.references + 4] = codes[:4]
    codes[sizes.references : sizes.references + 4, :3] *= -1
    return {"L2": (pixels[sizes.references :], pixels[: sizes.references]), "Hamming": (codes[sizes.references :], codes[: sizes.references])}


def nn_search_rows(sizes: Sizes, device: torch.device, inputs) -> list[Row]:
    from metrics.nn_search import exact_l2_top2, hamming_top2

    rows = []
    for name, search in (("L2", exact_l2_top2), ("Hamming", hamming_top2)):
        queries, reference = (x.to(device) for x in inputs[name])
        search(queries[:32], reference)  # warm-up
        seconds = timed(lambda: search(queries, reference), device)
        unit_note = f"{queries.shape[1]} uint8 dims" if name == "L2" else f"{queries.shape[1]} bits"
        rows.append(Row(f"exact {name} top-2, {len(queries)} x {len(reference)} ({unit_note})", len(queries) / seconds, None, "queries/s",
                        note=f"{seconds:.2f} s; {device.type}"))
    return rows


# --------------------------------------------------------------------------------------------
# CUDA paths against the CPU


def check_row(name: str, check: Callable[[], str]) -> Row:
    """A pass/fail row: check() returns a short note when the result matches, raises AssertionError when not."""
    try:
        return Row(f"check: {name}", None, None, "", note=f"pass: {check()}")
    except AssertionError as err:
        return Row(f"check: {name}", None, None, "", note=f"FAIL: {' '.join(str(err).split())[:180]}")


def checks(sizes: Sizes, device: torch.device, inputs) -> list[Row]:
    from metrics.nn_search import _int8_matmul, exact_l2_top2, hamming_top2, token_codes
    from networks.bits import pack_bits, popcount_table, token_bits, unpack_bits
    from networks.gamma_mask import window_tiles
    from networks.tiled_attention import sdpa_tiles, tiled_attention

    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(1)

    def int8_padding() -> str:
        # cuBLAS int8 wants M > 16, K >= 16 and K, N multiples of 8: these shapes need every padding
        shapes = [(5, 20, 13), (16, 8, 7), (17, 24, 8), (40, 3072, 101)]  # (M, K, N)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for m, k, n in shapes:
                a = torch.randint(-128, 128, (m, k), generator=generator, dtype=torch.int8)
                b = torch.randint(-128, 128, (n, k), generator=generator, dtype=torch.int8)
                expected = (a.long() @ b.long().T).to(torch.int32)
                got = _int8_matmul(a.to(device), b.to(device)).cpu()
                assert got.dtype == torch.int32 and torch.equal(got, expected), f"(M, K, N) = {(m, k, n)}"
        fallback = [str(w.message) for w in caught if "_int_mm" in str(w.message)]
        assert not fallback, f"torch._int_mm was refused, the FP64 fallback ran: {fallback[0]}"
        return f"torch._int_mm exact for (M, K, N) in {shapes}"

    def bit_packing() -> str:
        signs = torch.randint(0, 2, (3, BITS, sizes.grid, sizes.grid), generator=generator).float() * 2 - 1
        # independent references, from the definition: channel 0 is the most significant bit
        ids = sum((signs[:, c] > 0).long() << (BITS - 1 - c) for c in range(BITS))  # (B, h, w)
        bits = torch.stack([(ids >> (BITS - 1 - c)) & 1 for c in range(BITS)], dim=-1).bool()  # (B, h, w, C)
        popcounts = torch.tensor([bin(i).count("1") for i in range(2**BITS)])
        assert torch.equal(pack_bits(signs.to(device)).cpu(), ids), "pack_bits"
        assert torch.equal(unpack_bits(ids.to(device), BITS).cpu(), signs), "unpack_bits"
        assert torch.equal(token_bits(ids.to(device), BITS).cpu(), bits), "token_bits"
        assert torch.equal(popcount_table(BITS, device).cpu(), popcounts), "popcount_table"
        assert torch.equal(token_codes(ids.to(device), BITS).cpu(), signs.to(torch.int8).flatten(1)), "token_codes"
        return f"pack/unpack/token_bits/popcount/token_codes match the definition on {tuple(ids.shape)} grids"

    def windowed_attention() -> str:
        tiles = window_tiles(sizes.grid, sizes.grid, GAMMA, 16 if sizes.grid * sizes.grid % 16 == 0 else 1)
        num_tokens = sizes.grid * sizes.grid
        q = torch.randn(2, 4, num_tokens, 32, generator=generator)
        k, v = (torch.randn(2, 4, num_tokens + 1, 32, generator=generator) for _ in range(2))
        expected = tiled_attention(q, k, v, tiles)  # the CPU kernel
        on_device = tiles_on(tiles, device)
        got = sdpa_tiles(*(x.to(device).flatten(0, 1) for x in (q, k, v)), on_device).view_as(q).cpu()
        error = (got - expected).abs().max().item()
        assert error < 1e-4, f"max |Δ| {error:.2e} (fp32)"
        with autocast_for(device):
            mixed = tiled_attention(q.to(device), k.to(device), v.to(device), on_device).float().cpu()
        mixed_error = (mixed - expected).abs().max().item()
        assert mixed_error < 5e-2, f"bf16 max |Δ| {mixed_error:.2e}"
        return f"SDPA over tiles vs the CPU kernel: max |Δ| {error:.1e} fp32, {mixed_error:.1e} bf16"

    def sampling() -> str:
        tiny = Sizes(**{**sizes.__dict__, "n_layer": 2, "n_embd": 32, "n_head": 2})
        net = arvm_network(tiny, GAMMA, "auto", device).eval()
        seeds = list(range(4))
        cached, full = net.sample(4, generator=seeds), net.sample(4, generator=seeds, use_cache=False)
        assert torch.equal(cached, full), "cached != uncached"
        reference = arvm_network(tiny, GAMMA, "auto", cpu).eval().sample(4, generator=seeds)
        agree = (cached.cpu() == reference).float().mean().item()
        return f"KV-cached == uncached on {device.type}; {100 * agree:.1f}% of tokens as on the CPU (rounding may flip a draw)"

    def nn_search(name: str, search) -> Callable[[], str]:
        def run() -> str:
            queries, reference = inputs[name]
            queries = queries[: sizes.check_queries]
            expected = search(queries, reference)
            got = search(queries.to(device), reference.to(device))
            assert torch.equal(got.d1.cpu(), expected.d1) and torch.equal(got.d2.cpu(), expected.d2), "distances differ"
            return f"{len(queries)} queries: identical top-2 distances to the CPU search"
        return run

    return [
        check_row("int8 GEMM with padding", int8_padding),
        check_row("bit packing and token codes", bit_packing),
        check_row("windowed attention (SDPA over tiles, fp32 and bf16)", windowed_attention),
        check_row("KV-cached sampling", sampling),
        check_row("exact L2 top-2 vs CPU", nn_search("L2", exact_l2_top2)),
        check_row("Hamming top-2 vs CPU", nn_search("Hamming", hamming_top2)),
    ]


def tiles_on(tiles, device: torch.device):
    from networks.gamma_mask import WindowTiles

    return WindowTiles(tiles.keys.to(device), tiles.visible.to(device))


# --------------------------------------------------------------------------------------------


def run(device: torch.device, sizes: Sizes) -> list[Row]:
    start = time.perf_counter()
    inputs = nn_search_inputs(sizes)
    sections = [
        ("checks", lambda: checks(sizes, device, inputs)),
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
        print(f"gpu-check: {name} done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
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
    bad = [row for row in rows if row.note.startswith(("FAIL", "failed"))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""The code paths that only run on CUDA, each against the CPU result: the pass/fail half of `make gpu-check`.

The int8 GEMM with its row/column padding, bit packing, token codes, windowed attention (SDPA over
tiles), KV-cached sampling, flex attention (forward and backward) against dense, torch.compile of the
γ-ARVM against eager, the float32 head under bf16 autocast, and both NN searches on a slice of the queries. Each check takes a
device and the sizes, returns a short note when the device's result matches the CPU's and raises
AssertionError when not. tests/gpu/test_cuda_matches_cpu.py runs them on CUDA at CIFAR size;
tests/gpu/test_device_checks.py runs them on the CPU at toy sizes, so their logic is tested where
no GPU exists. The throughput half is bench/gpu_throughput.py.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench import gpu_throughput
from bench.gpu_throughput import BITS, GAMMA, arvm_network, autocast_for, nn_search_inputs
from networks import bits  # looked up at call time, so a test can swap pack_bits
from networks.gamma_mask import WindowTiles, window_tiles
from networks.tiled_attention import sdpa_tiles, tiled_attention
from nn_search import exact_l2_top2, hamming_top2, int8_gemm, token_codes


@dataclass(frozen=True)
class CheckSizes:
    grid: int  # latent grid side (32 at CIFAR size)
    references: int  # NN search reference rows
    queries: int  # queries searched on the device and on the CPU


CIFAR = CheckSizes(grid=32, references=50_000, queries=64)  # 50k references = CIFAR-10's train split
TINY = CheckSizes(grid=6, references=300, queries=8)
CPU = torch.device("cpu")


def int8_gemm_with_padding(device: torch.device, sizes: CheckSizes) -> str:
    # cuBLAS int8 wants M > 16, K >= 16 and K, N multiples of 8: these shapes need every padding
    generator = torch.Generator().manual_seed(1)
    shapes = [(5, 20, 13), (16, 8, 7), (17, 24, 8), (40, 3072, 101)]  # (M, K, N)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for m, k, n in shapes:
            a = torch.randint(-128, 128, (m, k), generator=generator, dtype=torch.int8)
            b = torch.randint(-128, 128, (n, k), generator=generator, dtype=torch.int8)
            expected = (a.long() @ b.long().T).to(torch.int32)
            got = int8_gemm.int8_matmul(a.to(device), b.to(device)).cpu()
            assert got.dtype == torch.int32 and torch.equal(got, expected), f"(M, K, N) = {(m, k, n)}"
    fallback = [str(w.message) for w in caught if "_int_mm" in str(w.message)]
    assert not fallback, f"torch._int_mm was refused, the FP64 fallback ran: {fallback[0]}"
    return f"torch._int_mm exact for (M, K, N) in {shapes}"


def bit_packing_and_token_codes(device: torch.device, sizes: CheckSizes) -> str:
    generator = torch.Generator().manual_seed(1)
    signs = torch.randint(0, 2, (3, BITS, sizes.grid, sizes.grid), generator=generator).float() * 2 - 1
    # independent references, from the definition: channel 0 is the most significant bit
    ids = sum((signs[:, c] > 0).long() << (BITS - 1 - c) for c in range(BITS))  # (B, h, w)
    expected_bits = torch.stack([(ids >> (BITS - 1 - c)) & 1 for c in range(BITS)], dim=-1).bool()  # (B, h, w, C)
    popcounts = torch.tensor([bin(i).count("1") for i in range(2**BITS)])
    assert torch.equal(bits.pack_bits(signs.to(device)).cpu(), ids), "pack_bits"
    assert torch.equal(bits.unpack_bits(ids.to(device), BITS).cpu(), signs), "unpack_bits"
    assert torch.equal(bits.token_bits(ids.to(device), BITS).cpu(), expected_bits), "token_bits"
    assert torch.equal(bits.popcount_table(BITS, device).cpu(), popcounts), "popcount_table"
    assert torch.equal(token_codes(ids.to(device), BITS).cpu(), signs.to(torch.int8).flatten(1)), "token_codes"
    return f"pack/unpack/token_bits/popcount/token_codes match the definition on {tuple(ids.shape)} grids"


def windowed_attention(device: torch.device, sizes: CheckSizes) -> str:
    generator = torch.Generator().manual_seed(1)
    tiles = window_tiles(sizes.grid, sizes.grid, GAMMA, 16 if sizes.grid * sizes.grid % 16 == 0 else 1)
    num_tokens = sizes.grid * sizes.grid
    q = torch.randn(2, 4, num_tokens, 32, generator=generator)
    k, v = (torch.randn(2, 4, num_tokens + 1, 32, generator=generator) for _ in range(2))
    expected = tiled_attention(q, k, v, tiles)  # the CPU kernel
    on_device = WindowTiles(tiles.keys.to(device), tiles.visible.to(device))
    got = sdpa_tiles(*(x.to(device).flatten(0, 1) for x in (q, k, v)), on_device).view_as(q).cpu()
    error = (got - expected).abs().max().item()
    assert error < 1e-4, f"max |Δ| {error:.2e} (fp32)"
    with autocast_for(device):
        mixed = tiled_attention(q.to(device), k.to(device), v.to(device), on_device).float().cpu()
    mixed_error = (mixed - expected).abs().max().item()
    assert mixed_error < 5e-2, f"bf16 max |Δ| {mixed_error:.2e}"
    return f"SDPA over tiles vs the CPU kernel: max |Δ| {error:.1e} fp32, {mixed_error:.1e} bf16"


def _arvm_pair(device: torch.device, sizes: CheckSizes, attention: str, gamma=GAMMA):
    network_sizes = dataclasses.replace(gpu_throughput.TINY, grid=sizes.grid, n_layer=2, n_embd=32, n_head=2)
    return arvm_network(network_sizes, gamma, attention, device), arvm_network(network_sizes, gamma, "dense", device)


def _grid_tokens(sizes: CheckSizes, device: torch.device, batch: int = 2) -> torch.Tensor:
    return torch.randint(0, 2**BITS, (batch, sizes.grid, sizes.grid), generator=torch.Generator().manual_seed(2)).to(device)


def flex_attention_matches_dense(device: torch.device, sizes: CheckSizes) -> str:
    """Block-sparse FlexAttention (attention="flex") against the dense masked path: logits and, on CUDA, every
    gradient (torch has no FlexAttention backward on CPU: there the forward only)."""
    if device.type == "cpu":  # no backward there, and its compiled forward costs ~40 s: tests/networks/test_flex_attention.py
        return "not run on the CPU here (tests/networks/test_flex_attention.py checks the forward)"
    flexed, dense = _arvm_pair(device, sizes, "flex")
    tokens = _grid_tokens(sizes, device)
    losses = [net.loss(net(tokens), tokens) for net in (flexed, dense)]
    error = abs(losses[0].item() - losses[1].item())
    for loss in losses:
        loss.backward()
    grad_error = max(
        ((p.grad - q.grad).abs().max() / (q.grad.abs().max() + 1e-12)).item()
        for p, q in zip(flexed.parameters(), dense.parameters(), strict=True)
    )
    assert error < 1e-4 and grad_error < 1e-3, f"loss |Δ| {error:.2e}, grads max relative |Δ| {grad_error:.2e}"
    return f"loss |Δ| {error:.1e}, gradients max relative |Δ| {grad_error:.1e} against dense"


def compiled_arvm_matches_eager(device: torch.device, sizes: CheckSizes) -> str:
    """networks/compiled_step.compile_network (GammaARVM(compile=True)): logits and cached samples as eager."""
    from networks.compiled_step import compile_network

    if device.type == "cpu":  # a compile costs ~30-60 s on a CPU: tests/networks/test_compile.py (slow) checks it there
        return "not compiled on the CPU here (tests/networks/test_compile.py)"
    eager, _ = _arvm_pair(device, sizes, "auto")
    compiled = compile_network(copy.deepcopy(eager))
    tokens = _grid_tokens(sizes, device)
    error = (compiled(tokens) - eager(tokens)).abs().max().item()
    assert error < 1e-3, f"logits max |Δ| {error:.2e}"
    seeds = list(range(4))
    same = (compiled.eval().sample(4, generator=seeds) == eager.eval().sample(4, generator=seeds)).float().mean().item()
    assert same > 0.99, f"{100 * same:.1f}% of cached-sample tokens as eager"
    return f"logits max |Δ| {error:.1e}; {100 * same:.1f}% of cached-sample tokens as eager"


def bf16_keeps_the_head_float32(device: torch.device, sizes: CheckSizes) -> str:
    """Under bf16 autocast the γ-ARVM's logits and loss are float32 and close to the fp32 ones."""
    net, _ = _arvm_pair(device, sizes, "auto")
    tokens = _grid_tokens(sizes, device)
    with torch.no_grad():
        expected = net.loss(net(tokens), tokens).item()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = net(tokens)
            loss = net.loss(logits, tokens)
    assert logits.dtype == loss.dtype == torch.float32, f"{logits.dtype}, {loss.dtype}"
    assert abs(loss.item() - expected) < 1e-2 * expected, f"bf16 loss {loss.item():.4f} vs fp32 {expected:.4f}"
    return f"float32 logits and loss under bf16 autocast; loss {loss.item():.4f} vs fp32 {expected:.4f}"


def kv_cached_sampling(device: torch.device, sizes: CheckSizes) -> str:
    network_sizes = dataclasses.replace(gpu_throughput.TINY, grid=sizes.grid, n_layer=2, n_embd=32, n_head=2)
    net = arvm_network(network_sizes, GAMMA, "auto", device).eval()
    seeds = list(range(4))
    cached, full = net.sample(4, generator=seeds), net.sample(4, generator=seeds, use_cache=False)
    assert torch.equal(cached, full), "cached != uncached"
    reference = arvm_network(network_sizes, GAMMA, "auto", CPU).eval().sample(4, generator=seeds)
    agree = (cached.cpu() == reference).float().mean().item()
    return f"KV-cached == uncached on {device.type}; {100 * agree:.1f}% of tokens as on the CPU (rounding may flip a draw)"


@functools.lru_cache(maxsize=2)
def _search_inputs(sizes: CheckSizes) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return nn_search_inputs(sizes.grid, sizes.references, sizes.queries)


def _search_matches_the_cpu(name: str, search: Callable) -> Callable[[torch.device, CheckSizes], str]:
    def check(device: torch.device, sizes: CheckSizes) -> str:
        queries, reference = _search_inputs(sizes)[name]
        expected = search(queries, reference)
        got = search(queries.to(device), reference.to(device))
        assert torch.equal(got.d1.cpu(), expected.d1) and torch.equal(got.d2.cpu(), expected.d2), "distances differ"
        return f"{len(queries)} queries: identical top-2 distances to the CPU search"

    return check


CHECKS: dict[str, Callable[[torch.device, CheckSizes], str]] = {
    "int8 GEMM with padding": int8_gemm_with_padding,
    "bit packing and token codes": bit_packing_and_token_codes,
    "windowed attention (SDPA over tiles, fp32 and bf16)": windowed_attention,
    "KV-cached sampling": kv_cached_sampling,
    "flex attention vs dense (forward, backward on CUDA)": flex_attention_matches_dense,
    "torch.compile of the γ-ARVM vs eager": compiled_arvm_matches_eager,
    "bf16 autocast keeps the head float32": bf16_keeps_the_head_float32,
    "exact L2 top-2 vs CPU": _search_matches_the_cpu("L2", exact_l2_top2),
    "Hamming top-2 vs CPU": _search_matches_the_cpu("Hamming", hamming_top2),
}
"""Every check by the name `make gpu-check` reports it under."""

import math

import pytest
import torch

from networks.bits import token_hamming
from networks.gamma_mask import gamma_window_mask
from networks.kernel_estimator import KernelARVM
from networks.sampling import log_flip_kernel


def random_grids(n, height=4, width=4, bits=4, seed=0):
    return torch.randint(0, 2**bits, (n, height, width), generator=torch.Generator().manual_seed(seed))


def brute_force_log_histogram(train, context, t, bits, gamma, rho):
    """(S, V) from the definition: Σ_n q(x | z^n_t) Π_{v in W(t)} q(c_v | z^n_v), one term at a time."""
    height, width = train.shape[1:]
    train, context = train.view(len(train), -1), context.view(len(context), -1)
    window = torch.nonzero(gamma_window_mask(height, width, gamma)[t]).view(-1)
    log_q = log_flip_kernel(bits, rho)  # (V, V) log q(a | b)
    rows = []
    for c in context:
        terms = [log_q[:, z[t]] + log_q[c[window], z[window]].sum() for z in train]  # each (V,)
        log_h = torch.stack(terms).logsumexp(0)
        rows.append(log_h - log_h.logsumexp(0))
    return torch.stack(rows)


@pytest.mark.parametrize("gamma", [1, 2, None])
def test_matches_definition(gamma):
    train, context = random_grids(7), random_grids(3, seed=1)
    model = KernelARVM(train, num_bits=4, gamma=gamma, flip_prob=0.05)
    for t in [0, 1, 5, 15]:
        expected = brute_force_log_histogram(train, context, t, 4, gamma, 0.05)
        torch.testing.assert_close(model.log_histogram(context, t), expected)


def test_histogram_ignores_tokens_outside_the_window():
    train, context = random_grids(20), random_grids(2, seed=1)
    model = KernelARVM(train, num_bits=4, gamma=1, flip_prob=0.01)
    t = 10  # (2, 2): its window is (1, 1), (1, 2), (1, 3), (2, 1)
    moved = context.clone()
    moved[:, 0, 0] ^= 5  # outside
    moved[:, 2, 2:] ^= 3  # t itself and a later cell
    assert torch.equal(model.log_histogram(moved, t), model.log_histogram(context, t))
    moved[:, 1, 1] ^= 5  # inside
    assert not torch.allclose(model.log_histogram(moved, t), model.log_histogram(context, t))


@pytest.mark.parametrize("gamma", [2, None])
def test_chunked_equals_unchunked(gamma):
    train, context = random_grids(50), random_grids(4, seed=3)
    whole = KernelARVM(train, num_bits=4, gamma=gamma, chunk_size=1000)
    chunked = KernelARVM(train, num_bits=4, gamma=gamma, chunk_size=7)
    for t in [0, 6, 15]:
        torch.testing.assert_close(chunked.log_histogram(context, t), whole.log_histogram(context, t))


def test_global_copies_a_training_grid():
    train = random_grids(5)
    model = KernelARVM(train, num_bits=4, gamma=None, flip_prob=1e-4)
    samples = model.sample(40, generator=torch.Generator().manual_seed(0))
    distance = token_hamming(samples.view(40, 1, -1), train.view(1, 5, -1), 4).sum(-1).amin(1)  # (40,) bits
    # each token is a noisy copy (a bit flips with prob 1e-4): expect ~0.3 flipped bits in 40 grids
    assert (distance == 0).float().mean() >= 0.9
    assert distance.max() <= 1


def test_small_gamma_recombines():
    train = random_grids(200, seed=4)
    model = KernelARVM(train, num_bits=4, gamma=1, flip_prob=0.002)
    samples = model.sample(30, generator=torch.Generator().manual_seed(1))
    exact = (samples.view(30, 1, -1) == train.view(1, 200, -1)).all(-1).any(-1)  # (30,)
    assert exact.float().mean() < 0.3


def test_sampling_reproducible_and_temperature():
    model = KernelARVM(random_grids(30), num_bits=4, gamma=2)
    first = model.sample(4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first, model.sample(4, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(model.sample(2, generator=[7, 8])[1], model.sample(1, generator=[8])[0])
    cold = model.sample(4, temperature=0.5, generator=torch.Generator().manual_seed(2))
    assert cold.shape == (4, 4, 4) and cold.dtype == torch.long


def test_nll_bits():
    train = random_grids(8)
    model = KernelARVM(train, num_bits=4, gamma=None, flip_prob=1e-6)
    # global γ on its own (distinct) training grids: the conditionals telescope to 1/8 per grid
    expected = torch.full((8,), math.log2(8) / 16, dtype=torch.float64)
    torch.testing.assert_close(model.nll_bits(train), expected, atol=1e-3, rtol=0)
    held_out = model.nll_bits(random_grids(3, seed=9))
    assert held_out.shape == (3,) and torch.all(held_out > 1.0)  # unseen grids need many flips


def test_validation():
    with pytest.raises(ValueError, match="gamma"):
        KernelARVM(random_grids(2), num_bits=4, gamma=0)
    with pytest.raises(ValueError, match="flip_prob"):
        KernelARVM(random_grids(2), num_bits=4, flip_prob=0.0)
    with pytest.raises(ValueError, match="C = 20"):
        KernelARVM(random_grids(2), num_bits=20)
    model = KernelARVM(random_grids(2), num_bits=4, gamma="global")
    assert model.gamma is None and math.isclose(model.dot_scale, 0.5 * math.log(0.998 / 0.002))


def test_autocast_does_not_round_the_dot_products():
    model = KernelARVM(random_grids(40, 8, 8, bits=6), num_bits=6, gamma=None)
    context = random_grids(3, 8, 8, bits=6, seed=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.log_histogram(context, 63)  # K·C = 378: bf16 would round the dot products
    assert torch.equal(mixed, model.log_histogram(context, 63))


def test_query_blocks_equal_one_block(monkeypatch):
    train, context = random_grids(30), random_grids(5, seed=3)
    model = KernelARVM(train, num_bits=4, gamma=2, chunk_size=8)
    whole = [model.log_histogram(context, t) for t in (0, 7, 15)]
    monkeypatch.setattr("networks.kernel_estimator.QUERY_CHUNK_SIZE", 2)
    for t, expected in zip((0, 7, 15), whole, strict=True):
        torch.testing.assert_close(model.log_histogram(context, t), expected)


@pytest.mark.parametrize("bits,dtype", [(7, torch.uint8), (10, torch.int32)])
def test_stores_compact_grids_that_gloo_can_broadcast(bits, dtype, tmp_path):
    train = random_grids(6, bits=bits)
    model = KernelARVM(train, num_bits=bits, gamma=1)
    assert model.tokens_by_position.dtype == dtype and model.tokens_by_position.shape == (16, 6)
    assert torch.equal(model.train_tokens.view(6, 4, 4), train)
    kernel_bytes = 2 * 4**bits * 8
    assert sum(b.nbytes for b in model.buffers()) < 6 * 16 * dtype.itemsize + kernel_bytes + 2**bits * bits * 4 + 4096, (
        "no (N, T, C) bit copy"
    )
    # DDP broadcasts every buffer at setup, and gloo refuses some dtypes (int16): broadcast them for real
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    finally:
        dist.destroy_process_group()

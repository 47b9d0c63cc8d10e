"""Windowed attention in tiles (networks/tiled_attention.py) against dense masked attention."""

import pytest
import torch
import torch.nn.functional as F

from networks.gamma_mask import gamma_window_mask, window_tiles
from networks.tiled_attention import TiledAttention, sdpa_tiles, tiled_attention

GRIDS = [(1, 1, None, 1), (2, 2, 1, 2), (4, 5, 1, 5), (5, 5, 2, 5), (6, 4, 3, 8), (6, 7, None, 7), (3, 8, 2, 2)]


def dense_visibility(height, width, gamma):
    """(T, 1+T): the null slot, then the γ window of every query."""
    num_tokens = height * width
    return torch.cat([torch.ones(num_tokens, 1, dtype=torch.bool), gamma_window_mask(height, width, gamma)], dim=1)


@pytest.mark.parametrize("height,width,gamma,tile_len", GRIDS)
def test_tiles_cover_exactly_each_window(height, width, gamma, tile_len):
    tiles = window_tiles(height, width, gamma, tile_len)
    num_tokens = height * width
    assert tiles.keys.shape[1] % 8 == 0 and tiles.visible.shape == (num_tokens // tile_len, tile_len, tiles.keys.shape[1])
    rebuilt = torch.zeros(num_tokens, num_tokens + 1, dtype=torch.int64)
    for i in range(num_tokens // tile_len):
        for q in range(tile_len):
            rebuilt[i * tile_len + q].index_add_(
                0, tiles.keys[i][tiles.visible[i, q]], torch.ones(int(tiles.visible[i, q].sum()), dtype=torch.int64)
            )
    # every query sees each slot of its window exactly once (no duplicates), and nothing else
    assert torch.equal(rebuilt, dense_visibility(height, width, gamma).long())


def test_tile_len_must_divide_the_grid():
    with pytest.raises(ValueError, match="does not divide"):
        window_tiles(4, 5, 1, 3)


def random_qkv(num_tokens, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(2, 3, num_tokens, 4), (2, 3, num_tokens + 1, 4), (2, 3, num_tokens + 1, 4)]
    return [torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_() for shape in shapes]


@pytest.mark.parametrize("height,width,gamma,tile_len", GRIDS)
def test_equals_dense_masked_attention_with_gradients(height, width, gamma, tile_len):
    q, k, v = random_qkv(height * width)
    grad_out = torch.randn_like(q)
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=dense_visibility(height, width, gamma))
    dense_grads = torch.autograd.grad(dense, (q, k, v), grad_out)
    tiles = window_tiles(height, width, gamma, tile_len)
    for attend in (
        lambda: tiled_attention(q, k, v, tiles),
        lambda: sdpa_tiles(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), tiles).view_as(q),
    ):
        out = attend()
        torch.testing.assert_close(out, dense)
        for grad, expected in zip(torch.autograd.grad(out, (q, k, v), grad_out), dense_grads, strict=True):
            torch.testing.assert_close(grad, expected)


def test_backward_passes_gradcheck():
    q, k, v = random_qkv(20)
    tiles = window_tiles(4, 5, 2, 4)
    assert torch.autograd.gradcheck(lambda *qkv: tiled_attention(*qkv, tiles), (q, k, v))


@pytest.mark.parametrize("step", [1, 4])  # 4: the last chunk of the 6 rows is partial
def test_chunked_and_unchunked_agree(monkeypatch, step):
    q, k, v = random_qkv(24, dtype=torch.float32)
    grad_out = torch.randn_like(q)
    tiles = window_tiles(4, 6, 1, 6)
    whole = tiled_attention(q, k, v, tiles)
    whole_grads = torch.autograd.grad(whole, (q, k, v), grad_out)
    monkeypatch.setattr("networks.tiled_attention.chunk_rows", lambda *_: step)
    chunked = tiled_attention(q, k, v, tiles)
    torch.testing.assert_close(chunked, whole)
    for grad, expected in zip(torch.autograd.grad(chunked, (q, k, v), grad_out), whole_grads, strict=True):
        torch.testing.assert_close(grad, expected)


def test_cpu_kernel_without_grad_keeps_no_probabilities():
    q, k, v = (x.detach() for x in random_qkv(20, dtype=torch.float32))
    tiles = window_tiles(4, 5, 1, 5)
    with torch.no_grad():
        out = TiledAttention.apply(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), tiles.keys, tiles.visible)
    assert out.grad_fn is None and out.shape == (6, 20, 4)


def test_dropout_and_autocast_take_the_sdpa_path():
    q, k, v = random_qkv(20, dtype=torch.float32)
    tiles = window_tiles(4, 5, 1, 5)
    torch.manual_seed(0)
    dropped = tiled_attention(q, k, v, tiles, dropout_p=0.5)
    assert dropped.grad_fn is not None and "TiledAttention" not in type(dropped.grad_fn).__name__
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = tiled_attention(q, k, v, tiles)
    assert mixed.dtype == torch.bfloat16
    torch.testing.assert_close(mixed.float(), tiled_attention(q, k, v, tiles), atol=3e-2, rtol=3e-2)

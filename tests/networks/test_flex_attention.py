"""attention="flex" (networks/flex_attention.py): the same mask and the same logits as the dense path.

On CPU, torch 2.13 runs FlexAttention's forward (compiled) but no backward. The fast tests check the
mask against the dense one and the whole network through the unfused eager FlexAttention (same math,
no compile); the slow test compiles the real kernel. The GPU's forward + backward against dense is
tests/gpu/device_checks.py ("flex attention").
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention.flex_attention import create_mask, flex_attention

from networks import flex_attention as flex
from networks.gamma_mask import gamma_window_mask
from networks.window_transformer import WindowedARConfig, WindowedARTransformer
from tests.helpers import needs_cpp_compiler

BITS = 4
# |Δ logit| between two float32 attention paths of a 3-layer network: both are exact softmax attention
# over the same keys, so only summation order differs (measured ~1e-6 at logits of size ~1); 1e-5 is
# an order above rounding and far below what one wrongly (in)visible key changes (~1e-2 here).
TOLERANCE = 1e-5


def network(height: int, width: int, gamma, attention: str) -> WindowedARTransformer:
    torch.manual_seed(0)
    config = WindowedARConfig(height=height, width=width, num_bits=BITS, gamma=gamma, n_layer=3, n_head=2, n_embd=32, attention=attention)
    return WindowedARTransformer(config).eval()


def grids(height: int, width: int, batch: int = 3) -> torch.Tensor:
    return torch.randint(0, 2**BITS, (batch, height, width), generator=torch.Generator().manual_seed(1))


# the unfused eager FlexAttention warns that it is unfused: that is the point of the fast tests
eager_flex = pytest.mark.filterwarnings("ignore:.*flex_attention called without torch.compile")


@pytest.mark.parametrize("height,width,gamma", [(5, 5, 1), (4, 7, 2), (6, 5, 3), (5, 6, None)])
def test_the_flex_mask_is_the_dense_mask_with_its_null_column(height, width, gamma):
    num_tokens = height * width
    got = create_mask(flex.window_mask_mod(height, width, gamma), None, None, num_tokens, num_tokens + 1)[0, 0]  # (T, 1+T)
    expected = torch.cat([torch.ones(num_tokens, 1, dtype=torch.bool), gamma_window_mask(height, width, gamma)], dim=1)
    assert torch.equal(got, expected)
    assert torch.equal(got, network(height, width, gamma, "dense").attn_mask)


@eager_flex
@pytest.mark.parametrize("gamma", [1, 3, None])
def test_flex_logits_equal_dense_and_windowed_eager_kernel(gamma, monkeypatch):
    """The flex path of the whole network, through FlexAttention's unfused eager form (no compile)."""
    monkeypatch.setattr(flex, "flex_kernel", lambda: flex_attention)
    height, width = 6, 6
    tokens = grids(height, width)
    with torch.no_grad():
        flexed = network(height, width, gamma, "flex")(tokens)
        assert flexed.abs().max() > 0.1  # logits of a size where a wrong key would show
        for attention in ("dense", "windowed") if gamma is not None else ("dense",):
            error = (flexed - network(height, width, gamma, attention)(tokens)).abs().max().item()
            assert error < TOLERANCE, (attention, error)


@eager_flex
def test_a_wrong_mask_is_caught(monkeypatch):
    """The comparison can fail: a mask that also shows each query its own token moves the logits."""
    monkeypatch.setattr(flex, "flex_kernel", lambda: flex_attention)
    real = flex.window_mask_mod

    def leaky(height, width, gamma, device=None):
        mask_mod = real(height, width, gamma, device)
        return lambda b, h, q, kv: mask_mod(b, h, q, kv) | (kv == q + 1)

    monkeypatch.setattr(flex, "window_mask_mod", leaky)
    tokens = grids(5, 5)
    with torch.no_grad():
        error = (network(5, 5, 2, "flex")(tokens) - network(5, 5, 2, "dense")(tokens)).abs().max().item()
    assert error > 100 * TOLERANCE


def test_backward_on_cpu_is_refused_with_one_clear_error():
    model = network(4, 4, 1, "flex").train()
    with pytest.raises(RuntimeError, match="attention='flex' has no backward on CPU"):
        model(grids(4, 4))


def test_flex_refuses_attention_dropout():
    with pytest.raises(ValueError, match="no attention dropout"):
        WindowedARConfig(attention="flex", dropout=0.1)


@pytest.mark.slow
@needs_cpp_compiler
def test_compiled_flex_forward_equals_dense_on_cpu():
    """The compiled FlexAttention kernel (what a GPU runs, here its CPU forward): one compile serves every γ
    of a grid size (γ is a captured tensor), so three cases cost one compile (~45 s cold on a 2-core box)."""
    height, width = 8, 8
    tokens = grids(height, width)
    with torch.no_grad():
        for gamma in (1, 3, None):
            flexed = network(height, width, gamma, "flex")(tokens)
            error = (flexed - network(height, width, gamma, "dense")(tokens)).abs().max().item()
            assert error < TOLERANCE, (gamma, error)

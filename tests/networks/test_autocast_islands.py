"""Under bf16 autocast (what --trainer.precision bf16-mixed turns on), the places that need float32/64 keep it.

The γ-ARVM's head (2^C-way histogram logits, its loss), the latent overlap and the NN search: each run
inside torch.autocast("cpu", dtype=torch.bfloat16) must give float32/64 outputs equal to the ones
outside it, while the network body around the head really runs in bf16 (so autocast is on).
The whole chain at bf16-mixed against 32-true: tests/e2e/test_bf16_chain.py.
"""

from __future__ import annotations

import pytest
import torch

from metrics.overlap import PairwiseOverlap
from networks.precision import strict_fp32
from networks.window_transformer import WindowedARConfig, WindowedARTransformer
from nn_search import exact_l2_top2


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("head", ["histogram", "bits"])
def test_the_head_and_its_loss_stay_float32_while_the_body_runs_bf16(head):
    torch.manual_seed(0)
    net = WindowedARTransformer(WindowedARConfig(height=4, width=4, num_bits=6, gamma=1, n_layer=2, n_head=2, n_embd=32, head=head))
    tokens = torch.randint(0, 64, (3, 4, 4), generator=torch.Generator().manual_seed(1))
    body = []
    net.blocks[-1].mlp.register_forward_hook(lambda module, args, out: body.append(out.dtype))
    with bf16_autocast():
        logits = net(tokens)
        loss = net.loss(logits, tokens, flip_prob=0.1)
        step = net.step_logits(net.empty_cache(3), 0)
    assert body and set(body) == {torch.bfloat16}  # autocast is on around the head (forward and step)
    assert logits.dtype == loss.dtype == step.dtype == torch.float32
    # the head is fp32 math on bf16-rounded states: the logits are those of fp32 up to the body's rounding
    assert (logits - net(tokens)).abs().max() < 0.1


def test_strict_fp32_turns_autocast_off_inside():
    a, b = torch.randn(16, 32), torch.randn(32, 8)
    with bf16_autocast():
        assert (a @ b).dtype == torch.bfloat16
        with strict_fp32():
            product = a @ b
        assert (a @ b).dtype == torch.bfloat16  # restored on exit
    assert product.dtype == torch.float32 and torch.equal(product, a @ b)


def test_nn_search_under_autocast_is_the_fp32_search():
    generator = torch.Generator().manual_seed(0)
    reference, queries = torch.randn(500, 48, generator=generator), torch.randn(20, 48, generator=generator)
    expected = exact_l2_top2(queries, reference)
    with bf16_autocast():
        got = exact_l2_top2(queries, reference)
    assert got.d1.dtype == expected.d1.dtype and got.d1.dtype in (torch.float32, torch.float64)
    assert torch.equal(got.d1, expected.d1) and torch.equal(got.d2, expected.d2) and torch.equal(got.idx1, expected.idx1)


@pytest.mark.parametrize("kind", ["gaussian", "diag_gaussian"])
def test_overlap_under_autocast_is_the_fp32_overlap(kind):
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(12, 2, 3, 3, generator=generator)
    logvar = torch.randn(12, 2, 3, 3, generator=generator) * 0.3 - 1 if kind == "diag_gaussian" else None

    def overlap() -> dict[str, torch.Tensor]:
        metric = PairwiseOverlap(kind, scale=0.5 if kind == "gaussian" else None, mc_samples=64)
        metric.update(latents, logvar)
        return metric.compute()

    expected = overlap()
    with bf16_autocast():
        got = overlap()
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and value.dtype in (torch.float32, torch.float64), key
        assert torch.allclose(got[key], value, rtol=1e-6, atol=0, equal_nan=True), (key, got[key], value)

"""torch.compile of the neural γ-ARVM (networks/compiled_step.py, GammaARVM(compile=True)): eager's logits and samples.

Fast: the fixed-shape sampling step (padded window, visibility row, t as a tensor), run eagerly, gives
WindowedARTransformer.step_logits at every position; GammaARVM's switch compiles its network. Slow: the
compiled forward, its gradients and compiled cached sampling against eager.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from networks.compiled_step import FixedShapeStep, compile_network
from networks.window_transformer import WindowedARConfig, WindowedARTransformer
from tests.helpers import needs_cpp_compiler

BITS, SIDE = 4, 6
# float32 logits of two executions of the same network: eager vs inductor's fused kernels differ only
# in summation order (measured ~1e-7 at logits of size ~1), so 1e-5 is rounding with an order to spare.
LOGIT_TOLERANCE = 1e-5
# gradients: the same, relative to the largest gradient entry (measured ~1e-4 of it: the backward sums
# over batch x positions in another order); 1e-3 still catches a missing or doubled term.
GRAD_TOLERANCE = 1e-3


def network(gamma, attention: str = "auto") -> WindowedARTransformer:
    torch.manual_seed(0)
    config = WindowedARConfig(height=SIDE, width=SIDE, num_bits=BITS, gamma=gamma, n_layer=2, n_head=2, n_embd=32, attention=attention)
    return WindowedARTransformer(config)


def grids(batch: int = 4) -> torch.Tensor:
    return torch.randint(0, 2**BITS, (batch, SIDE, SIDE), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("gamma", [1, 2, None])
def test_the_fixed_shape_step_equals_the_step_at_every_position(gamma):
    net = network(gamma).eval()
    fixed = FixedShapeStep(net)
    tokens = grids(3).flatten(1)
    cache = fixed.empty_cache(3)
    with torch.no_grad():
        for t in range(SIDE * SIDE):
            position = fixed.position(t, cache)
            error = (fixed._step(cache, position) - net.step_logits(cache, t)).abs().max().item()
            assert error < LOGIT_TOLERANCE, (t, error)
            shadow = cache.clone()
            net.write_cache(cache, tokens[:, t], t)
            fixed._write(shadow, tokens[:, t], position)
            assert torch.equal(shadow[..., : t + 2, :], cache[..., : t + 2, :]), t  # later slots: not written yet


def test_a_step_that_sees_the_padding_differs():
    """The comparison can fail: showing the padded slots (as if every window were full) moves the logits."""
    net = network(2).eval()
    fixed = FixedShapeStep(net)
    fixed.visible = torch.ones_like(fixed.visible)
    cache = fixed.empty_cache(2)
    with torch.no_grad():
        for t in range(SIDE * SIDE):
            net.write_cache(cache, grids(2).flatten(1)[:, t], t)
        error = (fixed._step(cache, fixed.position(0, cache)) - net.step_logits(cache, 0)).abs().max().item()
    assert error > 100 * LOGIT_TOLERANCE


def test_gamma_arvm_compile_switch_compiles_its_network(monkeypatch):
    import lightning_modules.gamma_arvm as gamma_arvm
    import lightning_modules.token_model as token_model

    spec = SimpleNamespace(num_bits=BITS, grid_shape=(SIDE, SIDE), path="blae.ckpt", sha256="0")
    monkeypatch.setattr(token_model, "autoencoder_spec", lambda path: spec)
    monkeypatch.setattr(token_model, "check_fits_data", lambda *args: None)
    compiled = []
    monkeypatch.setattr(gamma_arvm, "compile_network", compiled.append)
    eager = gamma_arvm.GammaARVM("blae.ckpt", gamma=2, n_layer=1, n_embd=16, n_head=2)
    assert compiled == [] and eager.hparams["compile"] is False
    model = gamma_arvm.GammaARVM("blae.ckpt", gamma=2, n_layer=1, n_embd=16, n_head=2, compile=True)
    assert compiled == [model.net] and model.hparams["compile"] is True
    # the attention switch reaches the network (what --model.init_args.attention flex does)
    assert eager.net.config.attention == "auto"
    flex = gamma_arvm.GammaARVM("blae.ckpt", gamma=2, n_layer=1, n_embd=16, n_head=2, attention="flex")
    assert flex.net.config.attention == "flex" and flex.hparams["attention"] == "flex"


@pytest.mark.slow
@needs_cpp_compiler
@pytest.mark.parametrize("gamma,attention", [(2, "windowed"), (None, "dense")])
def test_compiled_logits_gradients_and_samples_equal_eager(gamma, attention):
    eager = network(gamma, attention)
    compiled = compile_network(copy.deepcopy(eager))
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints keep their keys
    tokens = grids()
    logits = eager(tokens)
    compiled_logits = compiled(tokens)
    assert (compiled_logits - logits).abs().max().item() < LOGIT_TOLERANCE
    eager.loss(logits, tokens).backward()
    compiled.loss(compiled_logits, tokens).backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        scale = p.grad.abs().max().item() + 1e-12
        assert (q.grad - p.grad).abs().max().item() < GRAD_TOLERANCE * scale, name
    seeds = [0, 1, 2]
    with torch._dynamo.config.patch(error_on_recompile=False):
        compiled.sample(3, generator=seeds)  # the first call compiles the step and the cache write
    with torch._dynamo.config.patch(error_on_recompile=True):  # one shape for every t: no recompile per position
        samples = compiled.sample(3, generator=seeds)
    assert torch.equal(samples, eager.sample(3, generator=seeds))

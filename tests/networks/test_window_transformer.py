import pytest
import torch
import torch.nn.functional as F

from networks.bits import token_bits
from networks.gamma_mask import gamma_window_mask
from networks.sampling import draw_uniforms, log_flip_kernel
from networks.window_transformer import WindowedARConfig, WindowedARTransformer, attention_plan

HEIGHT, WIDTH, BITS = 5, 5, 4


def make_model(gamma, head="histogram", n_layer=3, seed=0, **overrides):
    torch.manual_seed(seed)
    config = WindowedARConfig(
        height=HEIGHT, width=WIDTH, num_bits=BITS, gamma=gamma, n_layer=n_layer, n_head=2, n_embd=32, head=head, **overrides
    )
    return WindowedARTransformer(config).eval()


def random_tokens(batch, seed=1):
    return torch.randint(0, 2**BITS, (batch, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(seed))


def test_config_validation():
    assert WindowedARConfig(gamma="global").gamma is None
    assert WindowedARConfig(gamma="3").gamma == 3
    with pytest.raises(ValueError, match="gamma"):
        WindowedARConfig(gamma=0)
    with pytest.raises(ValueError, match="head='bits'"):
        WindowedARConfig(num_bits=20, head="histogram")
    with pytest.raises(ValueError, match="head"):
        WindowedARConfig(head="softmax")


@pytest.mark.parametrize("head,out_dim", [("histogram", 2**BITS), ("bits", BITS)])
def test_forward_shapes(head, out_dim):
    model = make_model(2, head)
    grids = random_tokens(3)
    logits = model(grids)
    assert logits.shape == (3, HEIGHT * WIDTH, out_dim)
    assert torch.equal(logits, model(grids.view(3, -1)))  # (B, h, w) and (B, T) inputs agree
    with pytest.raises(ValueError, match="tokens"):
        model(torch.zeros(3, 7, dtype=torch.long))


@pytest.mark.parametrize("attention", ["dense", "windowed"])
@pytest.mark.parametrize("head", ["histogram", "bits"])
@pytest.mark.parametrize("gamma", [1, 2])
def test_prediction_depends_only_on_the_window(gamma, head, attention):
    """The γ guarantee: with several layers, a token outside t's window must not move t's logits."""
    model = make_model(gamma, head, n_layer=4, attention=attention)
    assert model.windowed == (attention == "windowed")
    mask = gamma_window_mask(HEIGHT, WIDTH, gamma)  # (T, T)
    grids = random_tokens(2).view(2, -1)
    base = model(grids)
    for s in range(HEIGHT * WIDTH):
        perturbed = grids.clone()
        perturbed[:, s] = (perturbed[:, s] + 1 + torch.arange(2)) % 2**BITS  # a different value
        delta = (model(perturbed) - base).abs().amax(dim=(0, 2))  # (T,) largest change per position
        outside = ~mask[:, s]
        assert delta[outside].max() <= 1e-6, f"token {s} leaks into positions outside its window"
        assert torch.all(delta[mask[:, s]] > 1e-5), f"token {s} does not reach its window"


def test_global_sees_every_earlier_token():
    model = make_model(None, n_layer=2)
    grids = random_tokens(1).view(1, -1)
    last = HEIGHT * WIDTH - 1
    perturbed = grids.clone()
    perturbed[:, 0] = (perturbed[:, 0] + 1) % 2**BITS
    assert (model(perturbed)[:, last] - model(grids)[:, last]).abs().max() > 1e-5
    # ... but never itself
    perturbed = grids.clone()
    perturbed[:, last] = (perturbed[:, last] + 1) % 2**BITS
    assert torch.equal(model(perturbed), model(grids))


@pytest.mark.parametrize("head", ["histogram", "bits"])
@pytest.mark.parametrize("gamma,attention", [(1, "dense"), (1, "windowed"), (2, "windowed"), (None, "auto")])
def test_cached_sampling_equals_full_recompute(gamma, head, attention):
    model = make_model(gamma, head, attention=attention)
    cached = model.sample(6, temperature=1.3, generator=torch.Generator().manual_seed(5))
    full = model.sample(6, temperature=1.3, generator=torch.Generator().manual_seed(5), use_cache=False)
    assert cached.shape == (6, HEIGHT, WIDTH) and cached.dtype == torch.long
    assert torch.equal(cached, full)
    assert cached.min() >= 0 and cached.max() < 2**BITS


def test_step_logits_match_forward():
    model = make_model(2)
    grids = random_tokens(3).view(3, -1)
    cache = model.empty_cache(3)
    for t in range(HEIGHT * WIDTH):
        model.write_cache(cache, grids[:, t], t)
    logits = model(grids)
    for t in range(HEIGHT * WIDTH):
        torch.testing.assert_close(model.step_logits(cache, t), logits[:, t], atol=1e-5, rtol=1e-5)


def test_per_sample_seeds_are_batch_independent():
    model = make_model(1)
    both = model.sample(2, generator=[11, 12])
    alone = model.sample(1, generator=[12])
    assert torch.equal(both[1:], alone)
    with pytest.raises(ValueError, match="seeds"):
        draw_uniforms(3, 4, 1, [1, 2])


def test_sample_restores_training_mode():
    model = make_model(1, dropout=0.1).train()
    model.sample(1)
    assert model.training


def test_loss_without_flips_is_cross_entropy():
    model = make_model(2)
    grids = random_tokens(4)
    logits = model(grids)
    expected = F.cross_entropy(logits.reshape(-1, 2**BITS), grids.reshape(-1))
    torch.testing.assert_close(model.loss(logits, grids), expected)
    torch.testing.assert_close(model.nll_bits(logits, grids).mean(), expected / torch.log(torch.tensor(2.0)))


def test_soft_target_is_the_flip_kernel():
    kernel = log_flip_kernel(BITS, 0.05).exp()  # (V, V)
    torch.testing.assert_close(kernel.sum(0), torch.ones(2**BITS, dtype=torch.float64))
    torch.testing.assert_close(kernel.sum(1), torch.ones(2**BITS, dtype=torch.float64))
    assert kernel[3, 3] == pytest.approx(0.95**BITS) and kernel[0, 1] == pytest.approx(0.05 * 0.95 ** (BITS - 1))
    # the soft loss equals cross-entropy against those rows
    model = make_model(1)
    grids = random_tokens(2)
    logits = model(grids)
    log_probs = logits.log_softmax(-1)  # (B, T, V)
    expected = -(kernel.float()[grids.view(2, -1)] * log_probs).sum(-1).mean()
    torch.testing.assert_close(model.loss(logits, grids, flip_prob=0.05), expected)


def test_bits_head_loss_and_nll():
    model = make_model(2, head="bits")
    grids = random_tokens(3)
    logits = model(grids)  # (B, T, C)
    bits = token_bits(grids.view(3, -1), BITS).float()
    expected = F.binary_cross_entropy_with_logits(logits, bits, reduction="none").sum(-1).mean()
    torch.testing.assert_close(model.loss(logits, grids), expected)
    soft = bits * 0.98 + 0.01
    expected_soft = F.binary_cross_entropy_with_logits(logits, soft, reduction="none").sum(-1).mean()
    torch.testing.assert_close(model.loss(logits, grids, flip_prob=0.01), expected_soft)
    assert model.nll_bits(logits, grids).shape == (3, HEIGHT * WIDTH)


def test_large_codebook_bits_head_samples():
    torch.manual_seed(0)
    config = WindowedARConfig(height=3, width=3, num_bits=24, gamma=1, n_layer=2, n_head=2, n_embd=16, head="bits")
    model = WindowedARTransformer(config)
    grids = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert grids.shape == (2, 3, 3) and grids.max() < 2**24
    assert torch.equal(grids, model.sample(2, generator=torch.Generator().manual_seed(0), use_cache=False))


def test_overfits_two_grids():
    model = make_model(None, n_layer=2).train()
    grids = random_tokens(2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = model.loss(model(grids), grids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # the floor is the first token's ambiguity between the two grids: ln 2 / T nats per token
    assert losses[-1] < 0.15 * losses[0], losses[::25]


@pytest.mark.parametrize("head", ["histogram", "bits"])
@pytest.mark.parametrize("gamma", [1, 2, 3])
def test_windowed_and_dense_paths_give_the_same_logits_loss_and_gradients(gamma, head):
    models = {attention: make_model(gamma, head, attention=attention).train() for attention in ("dense", "windowed")}
    assert not models["dense"].windowed and models["windowed"].windowed
    grids = random_tokens(3)
    results = {}
    for attention, model in models.items():
        logits = model(grids)
        loss = model.loss(logits, grids, flip_prob=0.01)
        loss.backward()
        results[attention] = (logits, loss, {name: p.grad for name, p in model.named_parameters()})
    (dense_logits, dense_loss, dense_grads), (logits, loss, grads) = results["dense"], results["windowed"]
    torch.testing.assert_close(logits, dense_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, dense_loss)
    assert dense_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, dense_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_attention_plan_rule():
    assert attention_plan(32, 32, None) is None  # global: dense
    assert attention_plan(8, 8, 2) is None  # 64 tokens: the dense kernel wins (bench/bench_window.py)
    tiles = attention_plan(32, 32, 5)  # the CIFAR latent grid, 1024 tokens
    assert tiles is not None and tiles.tile_len == 16 and tiles.keys.shape[1] == 128  # 128 slots per query, not 1025
    assert attention_plan(32, 32, 5, "dense") is None
    assert attention_plan(32, 32, 1).tile_len >= 8  # tiny tiles (2 queries over 8 slots) never run at speed
    assert attention_plan(16, 16, 5) is not None  # measured 1.2x faster windowed (bench_window rule row, issue 23)
    assert attention_plan(8, 8, 2, "windowed") is not None
    with pytest.raises(ValueError, match="finite gamma"):
        WindowedARConfig(gamma=None, attention="windowed")
    with pytest.raises(ValueError, match="attention"):
        WindowedARConfig(attention="sparse")
    # the network picks by itself: GammaARVM never has to choose
    model = WindowedARTransformer(WindowedARConfig(height=32, width=32, num_bits=7, gamma=5, n_layer=1, n_head=2, n_embd=16))
    assert model.windowed and not hasattr(model, "attn_mask")

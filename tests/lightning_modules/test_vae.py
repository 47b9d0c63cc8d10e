"""GaussianVAE: the KL of its posterior, β scaling of the loss, reparameterised draws, shapes."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from lightning_modules.vae import GaussianVAE, Posterior
from networks.autoencoder import PatchMLPDecoder, PatchMLPEncoder

LATENT = 3


def tiny_vae(kl_weight=1.0):
    torch.manual_seed(0)
    return GaussianVAE(
        PatchMLPEncoder(1, 2 * LATENT, width=16, num_blocks=1),
        PatchMLPDecoder(1, LATENT, width=16, num_blocks=1),
        kl_weight=kl_weight,
        image_size=8,
        channels=1,
    )


def batch(n=4):
    return {"image": torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1, "index": torch.arange(n)}


def test_kl_matches_torch_distributions_and_is_zero_only_at_the_prior():
    mean, logvar = torch.randn(2, LATENT, 4, 4), torch.randn(2, LATENT, 4, 4)
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    torch.testing.assert_close(Posterior(mean, logvar).kl_to_standard_normal(), expected)
    assert Posterior(torch.zeros(3), torch.zeros(3)).kl_to_standard_normal().abs().max() < 1e-7
    assert (Posterior(mean, logvar).kl_to_standard_normal() >= 0).all()


def test_a_kl_with_the_wrong_sign_would_be_caught():
    """The check above can fail: the KL with the log-variance term's sign flipped differs from torch's."""
    mean, logvar = torch.zeros(5), torch.full((5,), 1.5)
    wrong = 0.5 * (mean.pow(2) + logvar.exp() - 1 + logvar)
    right = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    assert not torch.allclose(wrong, right)
    torch.testing.assert_close(Posterior(mean, logvar).kl_to_standard_normal(), right)


@pytest.mark.parametrize("kl_weight", [0.0, 0.5, 4.0])
def test_the_loss_is_mse_plus_beta_times_the_mean_kl(kl_weight, monkeypatch):
    model = tiny_vae(kl_weight)
    logged = {}
    monkeypatch.setattr(model, "log_dict", lambda values, **kwargs: logged.update(values))
    torch.manual_seed(2)
    loss = model.training_step(batch(), 0)
    torch.testing.assert_close(loss, logged["train/mse"] + kl_weight * logged["train/kl"])
    posterior = model.encode(batch()["image"])
    torch.testing.assert_close(logged["train/kl"], posterior.kl_to_standard_normal().mean())
    assert logged["train/kl"] > 0  # an untrained encoder is not the prior


def test_beta_scales_the_gradient_of_the_kl_term():
    grads = []
    for kl_weight in (1.0, 3.0):
        model = tiny_vae(kl_weight)
        model.encode(batch()["image"]).kl_to_standard_normal().mean().mul(kl_weight).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.encoder.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], 3.0 * grads[0])


def test_reparameterised_draws_have_the_posterior_shape_moments_and_gradients():
    mean = torch.full((20_000,), 0.7, requires_grad=True)
    logvar = torch.full((20_000,), math.log(0.25), requires_grad=True)
    torch.manual_seed(3)
    z = Posterior(mean, logvar).sample()
    assert z.shape == mean.shape
    assert z.mean().item() == pytest.approx(0.7, abs=0.02) and z.std().item() == pytest.approx(0.5, rel=0.03)
    z.sum().backward()  # gradients flow to both parameters through the draw
    assert torch.all(mean.grad == 1) and logvar.grad.abs().sum() > 0


def test_shapes_of_encode_decode_generate_and_the_latent_law():
    model = tiny_vae().eval()
    x = batch()["image"]
    posterior = model.encode(x)
    assert posterior.mean.shape == posterior.logvar.shape == (4, LATENT, 8, 8)
    assert model(x).shape == x.shape
    assert model.generate([1, 2]).images.shape == (2, 1, 8, 8)
    assert torch.equal(model.generate([1]).images, model.generate([1]).images)  # a sample depends only on its seed
    law = model.latent_distribution(x)
    assert law.kind == "diag_gaussian"


def test_mismatched_latent_channels_are_refused():
    with pytest.raises(ValueError, match="2 x decoder latent_channels"):
        GaussianVAE(PatchMLPEncoder(1, LATENT, width=8, num_blocks=1), PatchMLPDecoder(1, LATENT, width=8, num_blocks=1))

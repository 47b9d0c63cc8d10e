"""GaussianVAE: its loss is the negative ELBO of N(x̂, σ² I) at β = 1 (checked against torch.distributions), the KL of
its posterior, β scaling, the settings it refuses and logs, reparameterised draws, shapes."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from lightning_modules.vae import GaussianVAE, Posterior
from networks.autoencoder import PatchMLPDecoder, PatchMLPEncoder

LATENT = 3


def tiny_vae(kl_weight=1.0, likelihood_sigma=0.1):
    torch.manual_seed(0)
    return GaussianVAE(
        PatchMLPEncoder(1, 2 * LATENT, width=16, num_blocks=1),
        PatchMLPDecoder(1, LATENT, width=16, num_blocks=1),
        kl_weight=kl_weight,
        likelihood_sigma=likelihood_sigma,
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


def independent_negative_elbo(model: GaussianVAE, x: torch.Tensor, seed: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(−log p(x|z) per image, KL(q ‖ N(0, I)) per image) from torch.distributions, at the draw z the training step makes
    from `seed`: Normal(decoder(z), σ).log_prob summed over pixels, kl_divergence of the Normal posteriors summed."""
    mean, logvar = model.encoder(x).chunk(2, dim=1)
    std = (0.5 * logvar.clamp(-30, 20)).exp()
    torch.manual_seed(seed)
    z = mean + torch.randn_like(mean) * std
    nll = -Normal(model.decoder(z), sigma).log_prob(x).sum(dim=(1, 2, 3))
    kl = kl_divergence(Normal(mean, std), Normal(0.0, 1.0)).sum(dim=(1, 2, 3))
    return nll, kl


@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.7])
def test_at_beta_1_the_loss_is_the_negative_elbo_of_the_stated_gaussian_likelihood(sigma, monkeypatch):
    model = tiny_vae(1.0, sigma)
    x = batch()["image"]
    logged = {}
    monkeypatch.setattr(model, "log_dict", lambda values, **kwargs: logged.update(values))
    torch.manual_seed(2)
    loss = model.training_step(batch(), 0)
    nll, kl = independent_negative_elbo(model, x, 2, sigma)
    constant = x[0].numel() * math.log(sigma * math.sqrt(2 * math.pi))  # D log(σ √(2π)): moves no parameter
    torch.testing.assert_close(loss, (nll - constant + kl).mean())
    torch.testing.assert_close(logged["train/elbo"], -(nll + kl).mean())
    torch.testing.assert_close(logged["train/nll_nats"], nll.mean())
    torch.testing.assert_close(logged["train/kl"], kl.mean())
    assert logged["train/kl"] > 0  # an untrained encoder is not the prior


@pytest.mark.parametrize("kl_weight", [0.0, 0.5, 4.0])
def test_beta_weighs_the_summed_kl_against_the_summed_likelihood(kl_weight, monkeypatch):
    model = tiny_vae(kl_weight, 0.1)
    x = batch()["image"]
    monkeypatch.setattr(model, "log_dict", lambda values, **kwargs: None)
    torch.manual_seed(5)
    loss = model.training_step(batch(), 0)
    nll, kl = independent_negative_elbo(model, x, 5, 0.1)
    constant = x[0].numel() * math.log(0.1 * math.sqrt(2 * math.pi))
    torch.testing.assert_close(loss, (nll - constant + kl_weight * kl).mean())


def test_the_former_per_element_loss_is_not_the_elbo(monkeypatch):
    """The check above can fail: MSE + β · mean KL (per-element means, the former loss) differs from −ELBO at β = 1."""
    model = tiny_vae(1.0, 0.1)
    x = batch()["image"]
    monkeypatch.setattr(model, "log_dict", lambda values, **kwargs: None)
    torch.manual_seed(2)
    loss = model.training_step(batch(), 0)
    nll, kl = independent_negative_elbo(model, x, 2, 0.1)
    posterior = model.encode(x)
    torch.manual_seed(2)
    former = torch.nn.functional.mse_loss(model.decode(posterior.sample()), x) + posterior.kl_to_standard_normal().mean()
    elbo_loss = (nll - x[0].numel() * math.log(0.1 * math.sqrt(2 * math.pi)) + kl).mean()
    assert not torch.allclose(former, elbo_loss, rtol=0.1) and torch.allclose(loss, elbo_loss)


@pytest.mark.parametrize(
    "settings, flag",
    [
        ({"likelihood_sigma": 0.0}, "--model.init_args.likelihood_sigma must be > 0"),
        ({"likelihood_sigma": -0.1}, "--model.init_args.likelihood_sigma must be > 0"),
        ({"likelihood_sigma": float("nan")}, "--model.init_args.likelihood_sigma must be > 0"),
        ({"kl_weight": -1.0}, "--model.init_args.kl_weight must be >= 0"),
        ({"kl_weight": float("nan")}, "--model.init_args.kl_weight must be >= 0"),
    ],
)
def test_a_sigma_that_is_no_noise_or_a_negative_beta_is_refused_in_one_line(settings, flag):
    with pytest.raises(ValueError, match=f"^{flag}") as refused:
        GaussianVAE(PatchMLPEncoder(1, 2 * LATENT, width=8, num_blocks=1), PatchMLPDecoder(1, LATENT, width=8, num_blocks=1), **settings)
    assert "\n" not in str(refused.value)


def test_beta_0_and_a_large_sigma_are_accepted_and_validation_logs_both_settings(monkeypatch):
    model = tiny_vae(0.0, 2.5)
    logged = {}
    monkeypatch.setattr(model, "log_dict", lambda values, **kwargs: logged.update(values))
    model.on_validation_epoch_end()
    assert logged == {"vae/beta": 0.0, "vae/likelihood_sigma": 2.5}


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

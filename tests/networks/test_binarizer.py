import pytest
import torch

from networks.binarizer import NoiseInjectionBinarizer, hard_sign, straight_through_sign, triangular_noise, unit_noise


def test_eval_mode_gives_hard_signs_and_train_mode_adds_noise():
    binarizer = NoiseInjectionBinarizer("gaussian", 0.3)
    z = torch.tanh(torch.randn(4, 6, 8, 8))
    binarizer.eval()
    codes = binarizer(z)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(codes, hard_sign(z))
    binarizer.train()
    noisy = binarizer(z)
    assert not torch.equal(noisy, z)
    assert (noisy - z).std().item() == pytest.approx(0.3, rel=0.1)


def test_hard_sign_of_zero_is_plus_one():
    assert hard_sign(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("kappa", [1.0, 2.0, 3.0])
def test_triangular_noise_has_bounded_support_and_expected_variance(kappa):
    e = triangular_noise((200_000,), kappa, generator=torch.Generator().manual_seed(0))
    assert e.abs().max() <= 1
    assert e.var().item() == pytest.approx(2 / ((kappa + 1) * (kappa + 2)), rel=0.03)


@pytest.mark.parametrize("kind", ["gaussian", "triangular", "uniform"])
def test_noise_std_matches_samples(kind):
    binarizer = NoiseInjectionBinarizer(kind, 0.4)
    samples = 0.4 * unit_noise(kind, (200_000,), 2.0)
    assert samples.std().item() == pytest.approx(binarizer.noise_std, rel=0.03)


def test_straight_through_passes_gradient_and_forwards_signs():
    z = torch.tensor([-0.3, 0.2, 0.9], requires_grad=True)
    out = straight_through_sign(z)
    assert out.tolist() == [-1.0, 1.0, 1.0]
    out.sum().backward()
    assert z.grad.tolist() == [1.0, 1.0, 1.0]


def test_unknown_noise_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown noise kind 'salt'"):
        NoiseInjectionBinarizer("salt")

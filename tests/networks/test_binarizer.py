import pytest
import torch

from networks.binarizer import TanhBinarizer, hard_sign, straight_through_sign, triangular_noise, unit_noise
from networks.bits import pack_bits, popcount_table, token_hamming, unpack_bits


@pytest.mark.parametrize("num_bits", [1, 6, 7, 12])
def test_pack_unpack_round_trip(num_bits):
    signs = torch.randint(0, 2, (3, num_bits, 4, 5)).float() * 2 - 1
    ids = pack_bits(signs)
    assert ids.shape == (3, 4, 5) and ids.min() >= 0 and ids.max() < 2**num_bits
    assert torch.equal(unpack_bits(ids, num_bits), signs)
    assert torch.equal(pack_bits(unpack_bits(ids, num_bits)), ids)


def test_channel_zero_is_most_significant():
    signs = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
    assert pack_bits(signs).item() == 4


def test_hamming_of_ids_counts_differing_bits():
    assert popcount_table(3).tolist() == [0, 1, 1, 2, 1, 2, 2, 3]
    assert token_hamming(torch.tensor([0, 7, 5]), torch.tensor([7, 7, 2]), 3).tolist() == [3, 0, 3]


def test_eval_mode_gives_hard_signs_and_train_mode_adds_noise():
    binarizer = TanhBinarizer("gaussian", 0.3)
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
    binarizer = TanhBinarizer(kind, 0.4)
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
        TanhBinarizer("salt")

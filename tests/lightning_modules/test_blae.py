import pytest
import torch

from lightning_modules.blae import BinaryLatentAutoencoder
from metrics.reconstruction import BinRate, BitUsage
from networks.autoencoder import ConvResNetDecoder, ConvResNetEncoder, PatchMLPDecoder, PatchMLPEncoder
from networks.binarizer import NoiseInjectionBinarizer


def tiny_blae(channels=1, image_size=8, bits=4, **kwargs):
    return BinaryLatentAutoencoder(
        PatchMLPEncoder(channels, bits, width=16, num_blocks=1),
        PatchMLPDecoder(channels, bits, width=16, num_blocks=1),
        NoiseInjectionBinarizer("gaussian", 0.3),
        image_size=image_size,
        channels=channels,
        **kwargs,
    )


@pytest.mark.parametrize("family", ["patch_mlp", "conv_resnet"])
def test_network_shapes(family):
    if family == "patch_mlp":
        enc, dec, size, grid = PatchMLPEncoder(3, 7, 32, 2, 7), PatchMLPDecoder(3, 7, 32, 2, 7), 16, 16
    else:
        enc, dec, size, grid = ConvResNetEncoder(3, 16, 32, levels=2), ConvResNetDecoder(3, 16, 32, levels=2), 32, 8
    x = torch.randn(2, 3, size, size)
    z = enc(x)
    assert z.shape == (2, enc.latent_channels, grid, grid)
    assert dec(z).shape == x.shape


def test_tokens_and_hard_sign_reconstruction_at_eval():
    model = tiny_blae().eval()
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    tokens = model.tokens(x)
    assert tokens.shape == (5, 8, 8) and tokens.dtype == torch.long
    assert 0 <= tokens.min() and tokens.max() < 2**4
    images = model.log_images({"image": x})
    assert set(images) == {"inputs", "recon_hard", "recon_soft"}
    assert all(v.min() >= -1 and v.max() <= 1 for v in images.values())
    assert torch.equal(model(x), model.decode(model.binarize(model.encode(x))))


def test_training_step_returns_finite_loss_with_latent_penalty():
    model = tiny_blae(latent_penalty=0.1).train()
    loss = model.training_step({"image": torch.rand(4, 1, 8, 8) * 2 - 1}, 0)
    assert torch.isfinite(loss) and loss.requires_grad


def test_channel_mismatch_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"image_channels=1 does not match data.channels=3"):
        BinaryLatentAutoencoder(PatchMLPEncoder(1, 4, 16, 1), PatchMLPDecoder(1, 4, 16, 1), channels=3)


def test_bin_rate_and_bit_usage_values():
    rate = BinRate()
    rate.update(torch.tensor([0.95, -0.99, 0.5, 0.0]))
    assert rate.compute().item() == pytest.approx(0.5)
    usage = BitUsage(2)
    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0]]).view(2, 2, 1, 1)  # bit 0 always +1 (dead), bit 1 balanced
    usage.update(codes)
    summary = usage.compute()
    assert summary.p_one.tolist() == [1.0, 0.5]
    assert summary.dead_bits.item() == 1
    assert summary.mean_entropy.item() == pytest.approx(0.5)

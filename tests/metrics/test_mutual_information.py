"""TokenMutualInformation: independent tokens show no excess over the permutation null (whatever
their marginals), dependent tokens show their true MI, and the raw plug-in value does neither; the
bootstrap interval covers the true excess about 95 % of the time (closed-form Markov rows,
independent tokens, sparse tables) without being needlessly wide; the dependence radius."""

import math

import pytest
import torch

from metrics.mutual_information import (
    TokenMutualInformation,
    bootstrap_draws,
    cyclic_derangements,
    dependence_radius,
    draw_counts,
    miller_madow_mi_bias_bits,
    plugin_mi_bits,
)
from networks.autoencoder import PatchMLPEncoder
from networks.bits import pack_bits

NUM_BITS = 4
V = 2**NUM_BITS


def entropy_bits(counts):
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return -(p * p.log2()).sum().item()


def measure(tokens, num_bits=NUM_BITS, max_distance=3, **kwargs):
    metric = TokenMutualInformation(num_bits, max_distance=max_distance, **kwargs)
    metric.update(tokens, torch.arange(len(tokens)))
    return metric.compute()


def position_dependent_independent_tokens(num, height, width, seed):
    """Every cell draws its token independently, from a skewed law of its own; the top row and the
    left column are mostly token 0 (like a background border)."""
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(height, width, V, generator=generator) ** 4  # (h, w, V) far from uniform
    probs[0, :, 0] += 20
    probs[:, 0, 0] += 20
    flat = torch.multinomial(probs.view(-1, V), num, replacement=True, generator=generator)  # (h w, num)
    return flat.T.reshape(num, height, width)


def test_independent_tokens_with_position_dependent_marginals_show_no_excess():
    tokens = position_dependent_independent_tokens(600, 8, 8, seed=0)
    values = measure(tokens)
    assert values["distances"].tolist() == [1, 2, 3] and values["token_mi_by_axis"].shape == (2, 3)
    # pooling positions makes independent cells look dependent: far above the Miller-Madow floor
    assert (values["token_mi"] > 3 * values["token_mi_bias"]).all() and (values["token_mi"] > 0.05).all()
    assert values["token_mi_excess"].abs().max() < 0.005  # the null at the same positions cancels it
    assert (values["token_mi_excess_lo"] < 0.002).all() and (values["token_mi_excess_hi"] > -0.002).all()
    assert (values["token_mi_excess_lo"] <= values["token_mi_excess"]).all()
    assert (values["token_mi_excess"] <= values["token_mi_excess_hi"]).all()
    assert values["bit_mi_excess"].abs().max() < 0.002


def markov_rows(num, height, width, copy_prob, marginal, seed):
    """Rows are Markov chains: each cell copies its left neighbour with probability copy_prob, else
    draws from `marginal` (stationary for the chain); rows are independent of each other."""
    generator = torch.Generator().manual_seed(seed)
    fresh = torch.multinomial(marginal, num * height * width, replacement=True, generator=generator).view(num, height, width)
    copy = torch.rand(num, height, width, generator=generator) < copy_prob
    tokens = fresh.clone()
    for col in range(1, width):
        tokens[:, :, col] = torch.where(copy[:, :, col], tokens[:, :, col - 1], fresh[:, :, col])
    return tokens


def test_dependent_tokens_with_a_skewed_marginal_show_their_true_mi():
    marginal = torch.tensor([0.4, 0.2, 0.1, 0.1] + [0.2 / 12] * 12, dtype=torch.float64)
    copy_prob, width = 0.5, 8
    tokens = markov_rows(2000, 8, width, copy_prob, marginal, seed=1)
    values = measure(tokens, max_distance=2, num_permutations=20)
    for d in (1, 2):
        stay = copy_prob**d  # P(the cell d to the right repeats this one)
        horizontal = stay * torch.diag(marginal) + (1 - stay) * torch.outer(marginal, marginal)  # exact joint law
        vertical = torch.outer(marginal, marginal)
        pairs = width - d  # per row and per column: horizontal and vertical pairs are equally many
        expected = plugin_mi_bits((horizontal + vertical) * pairs)  # the MI of the pooled joint law
        assert values["token_mi_excess"][d - 1].item() == pytest.approx(expected.item(), abs=0.01)
        assert values["token_mi_excess_lo"][d - 1] > 0.5 * expected
        horizontal_only = plugin_mi_bits(horizontal).item()
        assert values["token_mi_by_axis"][0, d - 1].item() == pytest.approx(horizontal_only, abs=0.02)
    assert values["token_mi_excess"][0] > values["token_mi_excess"][1] > 0.02


def encoded(images, seed=0):
    """Tokens of a 3x3 patch encoder (the digits BL-AE's, untrained): a cell sees only its 3x3 patch."""
    torch.manual_seed(seed)
    encoder = PatchMLPEncoder(1, 6, 128, 2, patch_size=3)
    with torch.no_grad():
        return pack_bits(encoder(images))


def test_cells_whose_patches_share_no_pixel_show_no_excess_on_iid_pixel_images():
    """800 images of independent uniform pixels: cells 3 or more apart read disjoint 3x3 patches, so
    their tokens are independent; closer cells share pixels."""
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (800, 1, 8, 8), generator=generator).float() / 127.5 - 1
    values = measure(encoded(images), num_bits=6, max_distance=4, num_permutations=40)
    assert values["token_mi"][2:].min() > 0.005  # the raw plug-in value is not zero there
    assert values["token_mi_excess"][2:].abs().max() <= 0.02
    assert (values["token_mi_excess_lo"][2:] <= 0.002).all()
    assert (values["token_mi_excess_lo"][:2] > 0.02).all()  # shared pixels: dependence the null cannot explain


def test_digits_tokens_depend_on_their_neighbours(digits_images):
    values = measure(encoded(digits_images[:800]), num_bits=6, max_distance=4, num_permutations=40)
    assert values["token_mi_excess"][0] > 0.05 and values["token_mi_excess_lo"][0] > 0.05
    assert values["token_mi_excess"][0] > values["token_mi_excess"][3]


@pytest.fixture(scope="module")
def digits_images():
    from sklearn.datasets import load_digits

    pixels = torch.from_numpy(load_digits().images).float()  # (1797, 8, 8) in 0..16
    return (pixels / 8 - 1)[:, None]  # (N, 1, 8, 8) in [-1, 1]


def test_constant_grids_reach_the_token_entropy():
    generator = torch.Generator().manual_seed(1)
    per_grid = torch.randint(0, V, (200,), generator=generator)
    tokens = per_grid[:, None, None].expand(-1, 6, 6)  # every cell a copy of its neighbours
    values = measure(tokens, max_distance=4)
    entropy = entropy_bits(torch.bincount(per_grid, minlength=V))
    assert torch.allclose(values["token_mi"], torch.full((4,), entropy, dtype=torch.float64))
    # 200 images make 200 distinct pairs however many cells repeat them: the null's bias is that of n = 200
    assert (values["token_mi_null"] > 5 * values["token_mi_bias"]).all()
    assert (values["token_mi_excess_lo"] > 0.7 * entropy).all()
    bit_entropies = [entropy_bits(torch.bincount((per_grid >> (NUM_BITS - 1 - c)) & 1, minlength=2)) for c in range(NUM_BITS)]
    assert torch.allclose(values["bit_mi"], torch.full((4,), sum(bit_entropies) / NUM_BITS, dtype=torch.float64))


def test_tokens_constant_along_rows_copy_horizontally_only():
    generator = torch.Generator().manual_seed(2)
    per_row = torch.randint(0, V, (400, 8), generator=generator)
    tokens = per_row[:, :, None].expand(-1, -1, 8)  # (B, h, w): constant along each row
    horizontal, vertical = measure(tokens, max_distance=2)["token_mi_by_axis"]
    entropy = entropy_bits(torch.bincount(per_row.flatten(), minlength=V))
    assert horizontal.tolist() == pytest.approx([entropy, entropy], rel=1e-9)
    # independent rows: only the bias floor, of 400 (8 - d) independent row pairs (each repeated 8 times)
    effective_bias = torch.tensor([15**2 / (2 * 400 * (8 - d) * math.log(2)) for d in (1, 2)], dtype=torch.float64)
    assert (vertical < 2 * effective_bias).all()


def test_the_null_pairs_images_by_global_index_not_by_update_order():
    tokens = position_dependent_independent_tokens(50, 5, 5, seed=3)
    in_order = measure(tokens)
    shuffled = torch.randperm(50, generator=torch.Generator().manual_seed(4))
    metric = TokenMutualInformation(NUM_BITS, max_distance=3)
    metric.update(tokens[shuffled[:20]], shuffled[:20])
    metric.update(tokens[shuffled[20:]], shuffled[20:])
    torch.testing.assert_close(metric.compute(), in_order, rtol=0, atol=0)
    other_seed = measure(tokens, seed=9)
    assert not torch.equal(other_seed["token_mi_null"], in_order["token_mi_null"])
    assert torch.equal(other_seed["token_mi"], in_order["token_mi"])


def test_cyclic_derangements_pair_every_image_with_another_once():
    orders = cyclic_derangements(7, 20, seed=0)
    assert orders.shape == (20, 7)
    for order in orders:
        assert sorted(order.tolist()) == list(range(7)) and (order != torch.arange(7)).all()
        seen, image = set(), 0
        while image not in seen:  # one cycle through all images
            seen.add(image)
            image = int(order[image])
        assert len(seen) == 7
    assert torch.equal(orders, cyclic_derangements(7, 20, seed=0))


def test_large_vocabularies_keep_only_bit_statistics():
    tokens = torch.randint(0, 2**9, (30, 5, 5), generator=torch.Generator().manual_seed(5))
    values = measure(tokens, num_bits=9, max_distance=2, num_permutations=10)
    assert set(values) == {
        "distances",
        "bit_mi",
        "bit_mi_by_axis",
        "bit_mi_null",
        "bit_mi_excess",
        "bit_mi_excess_lo",
        "bit_mi_excess_hi",
        "bit_dependence_radius",
        "dependence_radius",
    }
    small = measure(tokens % 16, num_bits=4, max_distance=2, num_permutations=10)  # bits through the token tables
    low_bits = TokenMutualInformation(4, max_distance=2, num_permutations=10)
    low_bits.with_tokens = False  # the same bits counted directly
    low_bits.update(tokens % 16, torch.arange(30))
    direct = low_bits.compute()
    for key in ("bit_mi", "bit_mi_by_axis", "bit_mi_null", "bit_mi_excess_lo", "bit_mi_excess_hi", "bit_dependence_radius"):
        torch.testing.assert_close(direct[key], small[key], rtol=0, atol=1e-15)


def test_plugin_mi_and_bias_helpers():
    diagonal = torch.diag(torch.tensor([5, 5, 5, 5]))
    assert plugin_mi_bits(diagonal).item() == pytest.approx(2.0)
    independent = torch.full((4, 4), 7)
    assert plugin_mi_bits(independent).item() == pytest.approx(0.0, abs=1e-12)
    assert miller_madow_mi_bias_bits(independent).item() == pytest.approx(9 / (2 * 112 * math.log(2)))
    assert math.isnan(plugin_mi_bits(torch.zeros(2, 2, dtype=torch.long)).item())


def test_grids_smaller_than_the_offset_have_no_pairs():
    values = measure(torch.randint(0, 16, (3, 2, 2)), max_distance=4)
    assert not torch.isnan(values["token_mi"][0]) and torch.isnan(values["token_mi"][1:]).all()


def test_bad_input_is_named():
    metric = TokenMutualInformation(NUM_BITS)
    with pytest.raises(ValueError, match="grids"):
        metric.update(torch.zeros(4, 4, dtype=torch.long))
    metric.update(torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="width"):
        metric.update(torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="num_permutations"):
        TokenMutualInformation(NUM_BITS, num_permutations=0)
    with pytest.raises(ValueError, match="num_bootstrap"):
        TokenMutualInformation(NUM_BITS, num_bootstrap=1)


SKEWED = torch.tensor([0.4, 0.2, 0.1, 0.1] + [0.2 / 12] * 12, dtype=torch.float64)


def markov_excess(copy_prob, width, distances):
    """The exact excess of `markov_rows` (height = width, SKEWED marginal at every cell): the MI of the
    pooled joint law (horizontal pairs copy with probability copy_prob^d, vertical ones are
    independent, as many of each); the null law is SKEWED x SKEWED (MI 0)."""
    independent = torch.outer(SKEWED, SKEWED)
    curve = []
    for d in distances:
        stay = copy_prob**d
        horizontal = stay * torch.diag(SKEWED) + (1 - stay) * independent
        curve.append(plugin_mi_bits((horizontal + independent) * (width - d)))
    return torch.stack(curve)


def coverage_and_width(make, truth, repeats, num_bits, max_distance):
    """Over `repeats` data sets: how often the interval holds the truth (D,), its mean width (D,), and
    the spread (sd over data sets) of the excess estimate (D,)."""
    hits, widths, estimates = [], [], []
    for repeat in range(repeats):
        values = measure(make(repeat), num_bits=num_bits, max_distance=max_distance, num_permutations=20)
        low, high = values["token_mi_excess_lo"], values["token_mi_excess_hi"]
        hits.append(((low <= truth) & (truth <= high)).double())
        widths.append(high - low)
        estimates.append(values["token_mi_excess"])
    return torch.stack(hits).mean(0), torch.stack(widths).mean(0), torch.stack(estimates).std(0)


@pytest.mark.parametrize("num", [100, 400])
def test_the_interval_covers_the_closed_form_excess_of_markov_rows(num):
    """Markov rows with a skewed marginal (the excess has a closed form): coverage near 95 % at every
    d, and the interval no wider than twice the ±1.96 sd the estimate actually spreads over."""
    truth = markov_excess(0.5, 8, [1, 2, 3])
    coverage, width, spread = coverage_and_width(
        lambda r: markov_rows(num, 8, 8, 0.5, SKEWED, seed=1000 + r), truth, repeats=40, num_bits=4, max_distance=3
    )
    assert (coverage >= 0.85).all(), coverage
    assert (width <= 2 * 3.92 * spread).all(), (width, spread)


@pytest.mark.parametrize(("num_bits", "num", "expected_null_budget"), [(4, 200, 2**23), (4, 200, 0), (6, 200, 2**23)])
def test_the_interval_of_independent_tokens_covers_zero(num_bits, num, expected_null_budget, monkeypatch):
    """Independent tokens with position-dependent marginals (V = 16; also without recomputing the
    expected null per resample, the large-grid path) and with a skewed marginal over V = 64 (sparse
    tables: 5 pairs per cell at n = 200, where a plain bootstrap of the plug-in MI is several times
    too wide, and a bootstrap centred on its own replicates misses 0 entirely)."""
    monkeypatch.setattr("metrics.mutual_information.EXPECTED_NULL_BUDGET", expected_null_budget)

    def make(repeat):
        if num_bits == 4:
            return position_dependent_independent_tokens(num, 8, 8, seed=2000 + repeat)
        generator = torch.Generator().manual_seed(4000 + repeat)
        probs = torch.rand(2**num_bits, generator=generator) ** 3
        return torch.multinomial(probs, num * 64, replacement=True, generator=generator).view(num, 8, 8)

    coverage, width, spread = coverage_and_width(make, torch.zeros(2, dtype=torch.float64), repeats=30, num_bits=num_bits, max_distance=2)
    assert (coverage >= 0.85).all(), coverage
    assert (width <= 2 * 3.92 * spread).all(), (width, spread)


def test_bootstrap_draws_are_resamples_with_replacement_and_seeded():
    draws = bootstrap_draws(50, 200, seed=3)
    assert draws.shape == (200, 50) and draws.min() >= 0 and draws.max() < 50
    counts = draw_counts(draws)
    assert (counts.sum(1) == 50).all()
    assert counts.mean().item() == pytest.approx(1.0) and counts.var().item() == pytest.approx(1 - 1 / 50, abs=0.05)  # multinomial
    assert torch.equal(draws, bootstrap_draws(50, 200, seed=3)) and not torch.equal(draws, bootstrap_draws(50, 200, seed=4))
    assert bootstrap_draws(0, 5, seed=0).shape == (5, 0)


def test_dependence_radius_is_the_first_distance_not_significantly_above_zero():
    assert dependence_radius(torch.tensor([0.3, 0.1, -0.01, 0.2])).item() == 3.0  # a later significant d does not count
    assert dependence_radius(torch.tensor([0.0, 0.1])).item() == 1.0  # an interval touching 0 is not significant
    assert dependence_radius(torch.tensor([0.3, float("nan")])).item() == 2.0  # no pairs at d = 2
    assert dependence_radius(torch.tensor([0.3, 0.2, 0.1])).item() == 4.0  # every d significant: beyond the grid


def test_the_metric_reports_a_radius_inside_the_grid_for_markov_rows_and_beyond_it_for_constant_grids():
    markov = measure(markov_rows(400, 8, 8, 0.3, SKEWED, seed=5), max_distance=4, num_permutations=20)
    assert markov["token_mi_excess_lo"][0] > 0 and markov["dependence_radius"].item() <= 4
    assert markov["dependence_radius"].item() == dependence_radius(markov["token_mi_excess_lo"]).item()
    per_grid = torch.randint(0, V, (200,), generator=torch.Generator().manual_seed(6))
    constant = measure(per_grid[:, None, None].expand(-1, 6, 6), max_distance=4, num_permutations=20)
    assert constant["dependence_radius"].item() == 5.0 and constant["bit_dependence_radius"].item() == 5.0


def test_no_images_give_nan_curves_and_radius_one():
    metric = TokenMutualInformation(NUM_BITS, max_distance=2, num_permutations=5)
    metric.height.fill_(4)  # the grid shape a synced rank learns from the others
    metric.width.fill_(4)
    values = metric.compute()
    assert torch.isnan(values["token_mi_excess"]).all() and torch.isnan(values["token_mi_excess_lo"]).all()
    assert values["dependence_radius"].item() == 1.0

"""ProbesCallback's two probes on models whose answer is known (toy grids, lossless decoder: probe_toys.py)."""

import pytest
import torch

from callbacks.measurements.probes import ProbesCallback, level_name, prefix_rows_of
from tests.callbacks.probe_toys import ToyData, iid_grids, kernel_model, neural_model, toy_trainer

C, H, W = 6, 8, 8


def probes(**kwargs) -> ProbesCallback:
    return ProbesCallback(**{"num_sources": 40, "num_control": 40, "fb_sources": 40, **kwargs})


def test_a_copier_extracts_everything_from_any_prefix_and_its_control_stays_at_the_floor():
    train, held_out = iid_grids(1, H, W, C, 0), iid_grids(30, H, W, C, 1)
    data = ToyData({"train": train, "val": held_out}, C)
    for gamma in (1, None):
        model = kernel_model(train, C, gamma, flip_prob=1e-4)  # one training image: it can only copy
        values = probes(prefix_fractions=[0.125, 0.5, 0.875]).extraction(toy_trainer(data), model)
        for k in (1, 4, 7):
            assert values[f"rate_rows{k}"] == 1 and values[f"control_rate_rows{k}"] == 0, (gamma, k, values)
            assert values[f"hamming_median_rows{k}"] == 0 and values[f"control_hamming_median_rows{k}"] > 0
        assert values["ceiling_rate"] == 1 and values["control_ceiling_rate"] == 1  # the toy decoder is lossless


def test_a_global_memorizer_extracts_its_training_grids_but_not_held_out_ones():
    train, held_out = iid_grids(40, H, W, C, 0), iid_grids(40, H, W, C, 1)
    data = ToyData({"train": train, "val": held_out}, C)
    values = probes().extraction(toy_trainer(data), kernel_model(train, C, None, flip_prob=1e-4))
    for k in prefix_rows_of([0.25, 0.5, 0.75], H):
        assert values[f"rate_rows{k}"] >= 0.95 and values[f"control_rate_rows{k}"] == 0


def test_an_independent_token_model_changes_cells_without_correlation_and_a_global_memorizer_jumps_in_chunks():
    """γ = 1 on iid binary tokens, smoothed (ρ = 0.3): its conditionals hardly depend on the window, so
    restored cells change independently (correlation length ≈ 0). The global memorizer jumps to another
    training grid as a whole: its changes are coherent across the grid (correlation length ≈ D = 7)."""
    iid = iid_grids(200, H, W, 1, 0)
    independent = kernel_model(iid, 1, 1, flip_prob=0.3)
    values = probes(fb_sources=200, noise_levels=[0.3, 0.6]).forward_backward(toy_trainer(ToyData({"train": iid}, 1)), independent)
    for p in ("0_3", "0_6"):
        assert 0.3 <= values[f"corrupted_changed_fraction_p{p}"] <= 0.7
        assert abs(values[f"correlation_length_p{p}"]) < 0.25, values

    # every cell erased: the memorizer redraws a whole training grid, its own (no change) or another one
    train = iid_grids(8, H, W, C, 0)
    memorizer = kernel_model(train, C, None, flip_prob=1e-3)
    values = probes(noise_levels=[1.0]).forward_backward(toy_trainer(ToyData({"train": train}, C)), memorizer)
    assert values["correlation_length_p1"] > 6.0 and 0.5 < values["changed_fraction_p1"] < 1.0


@pytest.mark.parametrize("model_name", ["kernel", "neural"])
def test_no_noise_changes_nothing(model_name):
    train = iid_grids(20, H, W, C, 0)
    model = kernel_model(train, C, 2) if model_name == "kernel" else neural_model(H, W, C, 2)
    values = probes(noise_levels=[0.0, 0.3]).forward_backward(toy_trainer(ToyData({"train": train}, C)), model)
    assert values["changed_fraction_p0"] == 0 and values["exact_rate_p0"] == 1 and values["correlation_length_p0"] == 0
    assert values["changed_fraction_p0_3"] > 0  # the same models do change cells once some are erased
    assert values["window_conditioning"] == (1.0 if model_name == "kernel" else 0.0)


def test_global_context_restores_its_own_training_grids_exactly_at_small_noise_and_local_context_does_not_always():
    train = iid_grids(40, H, W, C, 0)
    data = ToyData({"train": train}, C)
    values = probes(noise_levels=[0.05, 0.1]).forward_backward(toy_trainer(data), kernel_model(train, C, None, flip_prob=1e-4))
    assert values["exact_rate_p0_05"] == 1 and values["exact_rate_p0_1"] >= 0.95
    causal = probes(noise_levels=[0.1], conditioning="causal").forward_backward(
        toy_trainer(data), kernel_model(train, C, None, flip_prob=1e-4)
    )
    assert causal["exact_rate_p0_1"] < values["exact_rate_p0_1"]  # an erased early cell has no past to recall its grid from


def test_the_neural_model_refuses_window_conditioning_and_bad_settings_are_named():
    model = neural_model(H, W, C, 2)
    data = ToyData({"train": iid_grids(4, H, W, C, 0)}, C)
    with pytest.raises(ValueError, match="window"):
        probes(conditioning="window").forward_backward(toy_trainer(data), model)
    with pytest.raises(ValueError, match="noise_levels"):
        ProbesCallback(noise_levels=[1.5])
    with pytest.raises(ValueError, match="prefix_fractions"):
        ProbesCallback(prefix_fractions=[1.0])
    assert level_name(0.05) == "0_05" and prefix_rows_of([0.25, 0.5, 0.75], 8) == [2, 4, 6]


def test_seeds_are_per_sample_so_a_split_of_the_sources_gives_the_same_completions():
    """Rank shares are contiguous slices of the sources: the completions of sources 0..n-1 do not depend
    on how they are batched (the 2-process run of tests/metrics/test_probes_ddp.py checks the synced metrics)."""
    train = iid_grids(12, H, W, C, 0)
    data = ToyData({"train": train, "val": iid_grids(12, H, W, C, 1)}, C)
    model = kernel_model(train, C, 1, flip_prob=0.05)
    whole = probes(num_sources=12, num_control=12, fb_sources=12, batch_size=12)
    pieces = probes(num_sources=12, num_control=12, fb_sources=12, batch_size=5)
    for probe in ("extraction", "forward_backward"):
        one, other = (getattr(c, probe)(toy_trainer(data), model) for c in (whole, pieces))
        torch.testing.assert_close(one, other, rtol=0, atol=0, equal_nan=True)

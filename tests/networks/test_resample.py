"""`resample`: both γ-ARVM networks redraw chosen cells; the kernel one also from the full window around them."""

import pytest
import torch

from networks.gamma_mask import neighbourhood_indices, window_indices
from networks.kernel_estimator import KernelARVM
from networks.window_transformer import WindowedARConfig, WindowedARTransformer

C, H, W = 3, 5, 5


def grids(count, seed):
    return torch.randint(0, 2**C, (count, H, W), generator=torch.Generator().manual_seed(seed))


def neural(gamma):
    torch.manual_seed(0)
    return WindowedARTransformer(WindowedARConfig(height=H, width=W, num_bits=C, gamma=gamma, n_layer=1, n_head=2, n_embd=16)).eval()


def kernel(gamma, train=None):
    return KernelARVM(grids(30, 1) if train is None else train, C, gamma, flip_prob=0.05)


def models():
    return [("neural-2", neural(2)), ("neural-global", neural(None)), ("kernel-1", kernel(1)), ("kernel-global", kernel(None))]


@pytest.mark.parametrize("name,model", models())
def test_completing_a_samples_own_prefix_with_its_seeds_gives_the_sample_back(name, model):
    seeds = list(range(10, 16))
    sampled = model.sample(6, generator=seeds)
    for rows in (1, 3):
        redraw = torch.zeros_like(sampled, dtype=torch.bool)
        redraw[:, rows:] = True
        assert torch.equal(model.resample(sampled, redraw, generator=seeds), sampled), (name, rows)


@pytest.mark.parametrize("name,model", models())
def test_kept_cells_stay_and_redrawn_cells_are_drawn(name, model):
    clean = grids(8, 2)
    redraw = torch.rand(clean.shape, generator=torch.Generator().manual_seed(3)) < 0.5
    restored = model.resample(clean, redraw, generator=list(range(8)))
    assert torch.equal(restored[~redraw], clean[~redraw])
    assert (restored[redraw] != clean[redraw]).any()  # it did draw (a random clean grid is not what it recalls)
    assert torch.equal(model.resample(clean, torch.zeros_like(redraw), generator=list(range(8))), clean)


def test_the_full_window_reads_later_cells_and_the_causal_one_cannot():
    """Two training grids that differ at cell 0 and in the last row: erase cell 0 of the first one.
    The causal conditional of cell 0 sees nothing (a coin flip between the two values); the window one
    sees the last row and restores the first grid's value (up to the kernel's own bit flips, ρ = 1 %)."""
    first = torch.zeros(1, H, W, dtype=torch.long)
    second = first.clone()
    second[0, 0, 0], second[0, -1, :] = 5, 7
    model = KernelARVM(torch.cat([first, second]), C, None, flip_prob=0.01)
    clean = first.expand(40, H, W)
    redraw = torch.zeros_like(clean, dtype=torch.bool)
    redraw[:, 0, 0] = True
    seeds = list(range(40))
    window = model.resample(clean, redraw, generator=seeds, full_window=True)
    causal = model.resample(clean, redraw, generator=seeds)
    assert (window[:, 0, 0] == 5).sum() == 0 and (window[:, 0, 0] == 0).sum() >= 36
    assert 5 <= (causal[:, 0, 0] == 5).sum() <= 35


@pytest.mark.parametrize("gamma", [1, 2, None])
def test_the_neighbourhood_is_the_full_square_and_its_part_before_a_cell_is_the_causal_window(gamma):
    around, window = neighbourhood_indices(H, W, gamma), window_indices(H, W, gamma)
    for t in range(H * W):
        cells = around.index[t, : around.length[t]].tolist()
        reach = gamma or H
        expected = [s for s in range(H * W) if s != t and max(abs(s // W - t // W), abs(s % W - t % W)) <= reach]
        assert cells == expected
        assert [s for s in cells if s < t] == window.index[t, : window.length[t]].tolist()

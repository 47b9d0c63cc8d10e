import pytest
import torch

from networks.gamma_mask import check_gamma, gamma_name, gamma_window_mask, parse_gamma, window_indices, window_offsets

GRIDS = [(1, 1), (1, 5), (4, 4), (5, 3), (6, 7)]


def within_grid(gammas):
    """(height, width, gamma) of GRIDS x gammas where gamma fits the grid (a larger one is refused)."""
    return [(h, w, g) for h, w in GRIDS for g in gammas if g is None or g <= max(h, w) - 1]


def brute_force_mask(height, width, gamma):
    """(T, T) reference built cell by cell from the definition."""
    num_tokens = height * width
    mask = torch.zeros(num_tokens, num_tokens, dtype=torch.bool)
    for t in range(num_tokens):
        for s in range(t):
            distance = max(abs(s // width - t // width), abs(s % width - t % width))
            mask[t, s] = gamma is None or distance <= gamma
    return mask


@pytest.mark.parametrize("height,width,gamma", within_grid([1, 2, 3, None]))
def test_mask_matches_definition(height, width, gamma):
    mask = gamma_window_mask(height, width, gamma)
    assert mask.dtype == torch.bool and mask.shape == (height * width,) * 2
    assert torch.equal(mask, brute_force_mask(height, width, gamma))


@pytest.mark.parametrize("gamma", [1, 2, None])
def test_mask_is_strictly_causal(gamma):
    mask = gamma_window_mask(5, 6, gamma)
    assert not mask.diagonal().any(), "a token must not see itself"
    assert not mask.triu().any(), "a token must not see the future"


def test_global_is_plain_causal_and_large_gamma_saturates():
    causal = torch.tril(torch.ones(20, 20, dtype=torch.bool), -1)
    assert torch.equal(gamma_window_mask(4, 5, None), causal)
    assert torch.equal(gamma_window_mask(4, 5, 4), causal)  # γ >= max(h, w) - 1 sees everything


@pytest.mark.parametrize("build", [gamma_window_mask, window_indices])
def test_gamma_larger_than_the_grid_is_refused(build):
    """γ = 50 on an 8x8 grid would silently be the global model under another name."""
    with pytest.raises(ValueError) as excinfo:
        build(8, 8, 50)
    message = str(excinfo.value)
    assert "gamma=50 is larger than the 8x8 token grid" in message and "gamma=global" in message and "\n" not in message
    build(8, 8, 7)  # the largest γ that fits: every earlier token, same as global
    build(8, 8, None)


def test_nothing_beyond_gamma():
    height, width, gamma = 7, 7, 2
    mask = gamma_window_mask(height, width, gamma)
    t = 3 * width + 3  # the centre cell: its full causal half-window lies inside the grid
    rows, cols = torch.nonzero(mask[t].view(height, width), as_tuple=True)
    assert (rows - 3).abs().max() == gamma and (cols - 3).abs().max() == gamma
    assert mask[t].sum() == 2 * gamma * (gamma + 1)


@pytest.mark.parametrize("gamma", [1, 2, 3])
def test_window_offsets(gamma):
    offsets = window_offsets(gamma)
    assert offsets.shape == (2 * gamma * (gamma + 1), 2)
    raster = offsets[:, 0] * 100 + offsets[:, 1]
    assert torch.all(raster[1:] > raster[:-1]) and torch.all(raster < 0)  # raster order, all before
    assert offsets.abs().max() == gamma


@pytest.mark.parametrize("height,width,gamma", within_grid([1, 2, None]))
def test_window_indices_list_the_mask(height, width, gamma):
    mask = gamma_window_mask(height, width, gamma)
    window = window_indices(height, width, gamma)
    assert window.index.shape == window.valid.shape
    assert torch.equal(window.length, mask.sum(1))
    for t in range(height * width):
        listed = window.index[t, : window.length[t]]
        assert torch.equal(listed, torch.nonzero(mask[t]).view(-1))  # sorted raster order
        assert window.valid[t, : window.length[t]].all() and not window.valid[t, window.length[t] :].any()
    assert torch.all(window.index[~window.valid] == 0)


def test_parse_gamma():
    assert parse_gamma(3) == 3
    assert parse_gamma("4") == 4
    assert parse_gamma(" Global ") is None
    assert parse_gamma("none") is None and parse_gamma(None) is None
    assert gamma_name(None) == "global" and gamma_name(2) == "2"
    for bad in [0, -1, "0", "x", "1.5", 2.0, True]:
        with pytest.raises(ValueError, match=repr(bad).strip("'")):
            parse_gamma(bad)
    with pytest.raises(ValueError, match="gamma"):
        check_gamma(0)
    with pytest.raises(ValueError, match="finite"):
        window_offsets(None)
    with pytest.raises(ValueError):
        gamma_window_mask(3, 3, 0)

"""The γ observation window of γ-ARVM on a 2-D token grid (docs/models.md).

Tokens are visited in raster order (row by row, left to right); position t = row * width + col.
The window of t holds the positions s that are (a) strictly before t in raster order and (b) within
Chebyshev distance γ: max(|row_s - row_t|, |col_s - col_t|) <= γ, i.e. the causal half of a
(2γ+1)×(2γ+1) square (the authors' follow-up code uses the same square). γ = None means "global":
every earlier position, a plain causal mask.

One representation everywhere: γ is an int >= 1, or None for global. `parse_gamma` turns config
values ("global", "3", 3) into it; `check_gamma` guards every entry point, and the mask builders refuse a
γ larger than the grid (`check_gamma_fits`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

# torch is imported by the functions that build tensors: parse_gamma and gamma_name (a sweep's argument checks) need none
if TYPE_CHECKING:
    from torch import Tensor

GLOBAL_NAMES = ("global", "none", "inf")


def check_gamma(gamma: int | None) -> int | None:
    """Return gamma unchanged if it is an int >= 1 or None (global); raise ValueError otherwise."""
    # bool is an int subclass: gamma=True is almost certainly a config mistake, so refuse it
    if gamma is None or (isinstance(gamma, int) and not isinstance(gamma, bool) and gamma >= 1):
        return gamma
    raise ValueError(f"gamma must be an int >= 1 or None (global), got {gamma!r}")


def check_gamma_fits(gamma: int | None, height: int, width: int) -> int | None:
    """Refuse a γ larger than the grid: it would run as a "γ = 50" model that really is global.

    The farthest earlier position is max(height, width) - 1 cells away (Chebyshev), so that γ already
    sees every earlier token; anything larger only mislabels the global model.
    """
    gamma = check_gamma(gamma)
    reach = max(height, width) - 1
    if gamma is not None and gamma > reach:
        raise ValueError(
            f"gamma={gamma} is larger than the {height}x{width} token grid: gamma={reach} already sees every earlier"
            f" token (the global window); use gamma=global or a gamma <= {reach}"
        )
    return gamma


def parse_gamma(value: int | str | None) -> int | None:
    """Config value -> gamma: ints, numeric strings ("3") or "global" (also "none"/"inf") -> None."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in GLOBAL_NAMES:
            return None
        if not text.lstrip("+").isdigit():
            raise ValueError(f"cannot parse gamma {value!r}: expected a positive integer or 'global'")
        value = int(text)
    return check_gamma(value)


def gamma_name(gamma: int | None) -> str:
    """Inverse of parse_gamma, for run names and logs: 3 -> '3', None -> 'global'."""
    return "global" if check_gamma(gamma) is None else str(gamma)


def grid_coords(height: int, width: int, device=None) -> tuple[Tensor, Tensor]:
    """(T,) row and (T,) column of every raster position."""
    import torch

    pos = torch.arange(height * width, device=device)
    return pos // width, pos % width


def gamma_window_mask(height: int, width: int, gamma: int | None, device=None) -> Tensor:
    """(T, T) bool, T = height*width: [t, s] is True where query t may see key s.

    s must be strictly before t (a token never sees itself) and, unless gamma is None, within
    Chebyshev distance gamma on the grid.
    """
    import torch

    gamma = check_gamma_fits(gamma, height, width)
    rows, cols = grid_coords(height, width, device)
    pos = torch.arange(height * width, device=device)
    mask = pos.view(1, -1) < pos.view(-1, 1)  # (T, T) strictly causal: s < t
    if gamma is None:
        return mask
    chebyshev = torch.maximum((rows.view(-1, 1) - rows.view(1, -1)).abs(), (cols.view(-1, 1) - cols.view(1, -1)).abs())  # (T, T)
    return mask & (chebyshev <= gamma)


def window_offsets(gamma: int) -> Tensor:
    """(K, 2) long (Δrow, Δcol) of the causal half-window, raster order; K = 2γ(γ+1).

    Rows -γ..-1 contribute full rows of 2γ+1 cells, row 0 the γ cells to the left. Global γ has no
    finite offset list: use window_indices(height, width, None) instead.
    """
    import torch

    if check_gamma(gamma) is None:
        raise ValueError("window_offsets needs a finite gamma; the global window is every earlier position")
    span = torch.arange(-gamma, gamma + 1)
    d_row, d_col = torch.meshgrid(torch.arange(-gamma, 1), span, indexing="ij")  # (γ+1, 2γ+1) each
    offsets = torch.stack([d_row.reshape(-1), d_col.reshape(-1)], dim=1)  # (K', 2)
    before = (offsets[:, 0] < 0) | (offsets[:, 1] < 0)  # drop the current cell and its right side
    return offsets[before]


class Window(NamedTuple):
    """Causal window of every position, padded to a common width K.

    index: (T, K) long raster positions, the valid ones first and in raster order, padding = 0.
    valid: (T, K) bool, True on real entries (valid[t] is a prefix of length length[t]).
    length: (T,) long number of positions in each window.
    """

    index: Tensor  # type: ignore[assignment]  # field deliberately shadows tuple.index
    valid: Tensor
    length: Tensor


def window_indices(height: int, width: int, gamma: int | None, device=None) -> Window:
    """Previous positions in the γ window of every position (global: all earlier positions).

    Cells falling outside the grid are simply absent, so windows near the top/left edges are short.
    """
    import torch

    num_tokens = height * width
    gamma = check_gamma_fits(gamma, height, width)  # gamma itself, or an error
    if gamma is None:
        width_k = max(num_tokens - 1, 0)
        index = torch.arange(width_k, device=device).expand(num_tokens, width_k)  # (T, K)
        valid = index < torch.arange(num_tokens, device=device).view(-1, 1)  # (T, K) k < t
        return Window(torch.where(valid, index, 0), valid, valid.sum(1))
    offsets = window_offsets(gamma).to(device)  # (K, 2)
    rows, cols = grid_coords(height, width, device)
    key_rows = rows.view(-1, 1) + offsets[:, 0]  # (T, K)
    key_cols = cols.view(-1, 1) + offsets[:, 1]  # (T, K)
    inside = (key_rows >= 0) & (key_cols >= 0) & (key_cols < width)  # rows never exceed: Δrow <= 0
    # stable sort on "outside" moves the valid entries to the front, keeping their raster order
    order = torch.sort((~inside).to(torch.uint8), dim=1, stable=True).indices  # (T, K)
    valid = inside.gather(1, order)  # (T, K)
    index = (key_rows * width + key_cols).gather(1, order)  # (T, K)
    return Window(torch.where(valid, index, 0), valid, valid.sum(1))


def neighbourhood_indices(height: int, width: int, gamma: int | None, device=None) -> Window:
    """The full (non-causal) γ neighbourhood of every position: every other cell within Chebyshev
    distance γ, before or after it in raster order (global: every other cell). Same layout as
    `window_indices` (valid entries first, raster order, padding = 0); the causal window is its
    part before the position. What a conditional given any visible cells reads (docs/probes.md).
    """
    import torch

    gamma = check_gamma_fits(gamma, height, width)
    rows, cols = grid_coords(height, width, device)
    chebyshev = torch.maximum((rows.view(-1, 1) - rows.view(1, -1)).abs(), (cols.view(-1, 1) - cols.view(1, -1)).abs())  # (T, T)
    inside = chebyshev > 0 if gamma is None else (chebyshev > 0) & (chebyshev <= gamma)  # (T, T)
    order = torch.sort((~inside).to(torch.uint8), dim=1, stable=True).indices  # (T, T): members first, raster order
    length = inside.sum(1)  # (T,)
    width_k = int(length.max()) if len(length) else 0
    valid = inside.gather(1, order)[:, :width_k]  # (T, K)
    return Window(torch.where(valid, order[:, :width_k], 0), valid, length)


class WindowTiles(NamedTuple):
    """The γ windows of a raster grid cut into tiles, for exact attention in O(T·γ²) (training path).

    Tile i holds the tile_len consecutive query positions i·tile_len .. (i+1)·tile_len - 1 and the
    union of their windows as its key list; every query of the tile is scored against that list
    only, and `visible` masks each query down to exactly its own window. Key *slots* count from
    the null slot: slot 0 is the always-visible null key, slot 1 + s is position s.

    keys: (n_tiles, L) long key slots; column 0 is the null slot, then the union in raster
        order, then padding (slot 0 again, never visible) up to a common length L.
    visible: (n_tiles, tile_len, L) bool, True where that query may attend to that slot.
    """

    keys: Tensor
    visible: Tensor

    @property
    def tile_len(self) -> int:
        return self.visible.shape[1]


def window_tiles(
    height: int, width: int, gamma: int | None, tile_len: int, align: int = 8, device=None, window: Window | None = None
) -> WindowTiles:
    """WindowTiles of a height×width grid; tile_len must divide T, L is rounded up to `align`
    (fused attention kernels want aligned key lengths; padding slots are masked). `window`:
    window_indices(height, width, gamma) if already at hand (it is the same for every tile_len)."""
    import torch

    num_tokens = height * width
    if tile_len < 1 or num_tokens % tile_len:
        raise ValueError(f"tile_len {tile_len} does not divide the {num_tokens} positions of a {height}x{width} grid")
    num_tiles = num_tokens // tile_len
    window = window if window is not None else window_indices(height, width, gamma, device)  # (T, K)
    # union of each tile's windows: sort the tile's window entries, blank repeats, sort the blanks last
    absent = num_tokens  # sentinel, sorts after every position
    entries = torch.where(window.valid, window.index, absent).view(num_tiles, -1).sort(dim=1).values  # (n_tiles, Q·K)
    repeat = torch.cat([torch.zeros_like(entries[:, :1], dtype=torch.bool), entries[:, 1:] == entries[:, :-1]], dim=1)
    union = torch.where(repeat, absent, entries).sort(dim=1).values  # (n_tiles, Q·K) members first, raster order
    width_k = -(-(1 + int((union < absent).sum(1).max())) // align) * align  # null + the largest union, aligned
    union = torch.cat([union, union.new_full((num_tiles, max(0, width_k - 1 - union.shape[1])), absent)], dim=1)[:, : width_k - 1]
    in_union = torch.cat([torch.zeros_like(union[:, :1], dtype=torch.bool), union < absent], dim=1)  # (n_tiles, L)
    keys = torch.cat([union.new_zeros(num_tiles, 1), torch.where(union < absent, union + 1, 0)], dim=1)  # (n_tiles, L)

    # visibility from the definition: key position p is seen by query t iff p < t and within γ
    queries = torch.arange(num_tokens, device=device).view(num_tiles, tile_len, 1)  # (n_tiles, Q, 1)
    positions = (keys - 1).view(num_tiles, 1, width_k)  # (n_tiles, 1, L)
    visible = in_union.view(num_tiles, 1, width_k) & (positions < queries)  # (n_tiles, Q, L)
    if gamma is not None:
        chebyshev = torch.maximum((positions // width - queries // width).abs(), (positions % width - queries % width).abs())
        visible &= chebyshev <= gamma
    visible[:, :, 0] = True  # the null slot
    return WindowTiles(keys, visible)

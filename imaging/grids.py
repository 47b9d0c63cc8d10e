"""Image tensors -> uint8 grids and PNG files (no torchvision; W&B logs uint8 images as they are, see the `wandb.Image` docs)."""

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from imaging.pixels import signed_unit_to_uint8


def to_uint8(images: Tensor) -> Tensor:
    """Float images in [-1, 1] -> uint8 in [0, 255], same shape (the memorization metric's quantization)."""
    return signed_unit_to_uint8(images.detach())


def make_grid(images: Tensor, ncols: int | None = None, padding: int = 1) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] -> (rows*H', cols*W', 3) uint8 array, one image per tile."""
    tiles = to_uint8(images).cpu()
    if tiles.shape[1] == 1:
        tiles = tiles.expand(-1, 3, -1, -1)  # grey -> RGB so every grid has the same layout
    n, c, h, w = tiles.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = torch.full((c, nrows * (h + padding) + padding, ncols * (w + padding) + padding), 255, dtype=torch.uint8)
    for i in range(n):
        top, left = padding + (i // ncols) * (h + padding), padding + (i % ncols) * (w + padding)
        grid[:, top : top + h, left : left + w] = tiles[i]
    return grid.permute(1, 2, 0).numpy()


def save_png(array: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write a uint8 (H, W, 3) array; `scale` enlarges tiny (8×8) images with nearest neighbours."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    image.save(path)
    return path

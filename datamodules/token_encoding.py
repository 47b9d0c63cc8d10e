"""Images -> token grids through a frozen BL-AE encoder, in strict FP32 (a hard sign flips on rounding near 0)."""
from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from datamodules.rows import IndexedSplit, ordered_loader
from networks.precision import strict_fp32


@torch.no_grad()
def encode_tokens(
    autoencoder, images: Dataset | torch.utils.data.Dataset, batch_size: int, num_workers: int, device: torch.device
) -> np.ndarray:
    """Hard-sign token ids (N, h, w) of every image of a split, in row order (``autoencoder.tokens``).

    ``images``: a transformed ``datasets`` split, or what ``HFImageDataModule`` serves for it
    (``DecodedImages``/``IndexedSplit``: rows ``{"image", "index"}``).
    """
    rows = IndexedSplit(images) if isinstance(images, Dataset) else images
    grids = []
    with strict_fp32(), torch.autocast(device.type, enabled=False):
        for batch in ordered_loader(rows, batch_size, num_workers):
            grids.append(autoencoder.tokens(batch["image"].to(device)).cpu())
    return torch.cat(grids).numpy()

"""Reading a fixed-shape Arrow column as one NumPy array, without a Python object per row."""
from __future__ import annotations

import numpy as np
from datasets import Dataset


def tokens_as_numpy(tokens: Dataset) -> np.ndarray:
    """The whole ``tokens`` column as one (N, h, w) array, straight from Arrow (no per-row Python)."""
    if tokens._indices is not None:
        tokens = tokens.flatten_indices()
    height, width = tokens.features["tokens"].shape
    chunks = [chunk.storage if hasattr(chunk, "storage") else chunk for chunk in tokens.data.column("tokens").chunks]
    flat = [chunk.flatten().flatten().to_numpy(zero_copy_only=False) for chunk in chunks]
    dtype = np.dtype(tokens.features["tokens"].dtype)
    return (np.concatenate(flat) if flat else np.zeros(0, dtype)).reshape(-1, height, width)

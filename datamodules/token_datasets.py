"""The map-style datasets a token model's DataLoaders iterate: stored token grids, and sample requests."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


class IndexedTokens(torch.utils.data.Dataset):
    """Token grids of one split in memory: ``{"tokens": int64 (h, w), "index": row}`` per example.

    The grids are small (uint8 CIFAR-10: 50 MB), so they are read from the Arrow cache once and
    batches are tensor indexing; ``__getitems__`` returns a whole batch, ``{"tokens": (B, h, w),
    "index": (B,)}``, from one gather (``collate_rows`` passes it on).
    """

    def __init__(self, tokens: torch.Tensor) -> None:
        self.tokens = tokens
        self._grids = tokens.numpy()  # the same memory; NumPy gathers single-threaded (see ``DecodedImages``)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"tokens": self.tokens[index].long(), "index": index}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows = np.asarray(indices, dtype=np.int64)
        return {"tokens": torch.from_numpy(self._grids[rows].astype(np.int64)), "index": torch.from_numpy(rows)}

    def __getstate__(self) -> dict[str, Any]:
        return {"tokens": self.tokens}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tokens"])


class SampleRequests(torch.utils.data.Dataset):
    """`predict` on a generative model: row i asks for global sample i (drawn with seed base + i).

    Lightning's predict sampler hands each rank disjoint rows, so ranks never draw the same sample.
    """

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, int]:
        return {"index": index}

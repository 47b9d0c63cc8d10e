"""Rows that know their index: selecting rows of a split, the row datasets the loaders iterate, their collate.

Every dataset this project serves returns ``{"image" or "tokens": ..., "index": row}``; the index
lets memorization metrics compare a sample with the training row it might copy. Here: the lazy
image split (``IndexedSplit``), the token grids (``IndexedTokens``), a generative model's sample
requests (``SampleRequests``); the decoded image split is ``DecodedImages`` (``decoded_images.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

if TYPE_CHECKING:
    from datasets import Dataset


def select_rows(dataset: Dataset, rows: Sequence[int] | np.ndarray, purpose: str) -> Dataset:
    """``dataset.select(rows)`` with the indices kept in memory and a cheap deterministic fingerprint.

    In memory: the indices of a split are small, and ``select`` would otherwise write an indices
    file next to the data (inside a ``save_to_disk`` folder, possibly read-only). The fingerprint is
    derived from the parent's and the rows, so it is identical on every rank and every run.
    """
    digest = hashlib.sha256(f"{dataset._fingerprint}|{purpose}|".encode())
    digest.update(np.asarray(rows, dtype=np.int64).tobytes())
    return dataset.select(rows, keep_in_memory=True, new_fingerprint=digest.hexdigest()[:16])


def collate_rows(data: Any) -> Any:
    """The DataLoaders' ``collate_fn``: a batch that ``__getitems__`` already built passes through.

    ``DecodedImages``/``IndexedTokens`` return one dict of batched tensors; any other dataset
    (``IndexedSplit``, a wrapper that only has ``__getitem__``) returns a list of examples, which
    gets PyTorch's ``default_collate``.
    """
    return data if isinstance(data, Mapping) else default_collate(data)


class IndexedSplit(torch.utils.data.Dataset):
    """The lazy path: a transformed split that also returns each example's row index (``"index"``).

    A wrapper, because a ``datasets`` transform never sees row numbers and adding an index column
    would rewrite a held-out split's data on disk. It implements ``__getitems__`` so the DataLoader
    still fetches a whole batch with one Arrow read and one call of the batched transform.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "index": index}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        batch = self.dataset[list(indices)]
        return [{**{key: values[i] for key, values in batch.items()}, "index": index} for i, index in enumerate(indices)]


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
        type(self).__init__(self, state["tokens"])


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


def ordered_loader(rows: torch.utils.data.Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """A DataLoader over ``rows`` in row order that never draws from the global random generator.

    A DataLoader draws its workers' base seed from torch's global generator on every ``iter()``
    unless it has a generator of its own: reading a split (decoding, encoding) would then shift the
    random stream of a training run that reads it. Row order needs no randomness, so a private one.
    """
    return DataLoader(
        rows,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_rows,
        generator=torch.Generator().manual_seed(0),
    )

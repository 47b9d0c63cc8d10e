"""Rows that know their index: the lazy image split and the DataLoaders' collate function.

Every dataset this project serves returns ``{"image" or "tokens": ..., "index": row}``; the index
lets memorization metrics compare a sample with the training row it might copy.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import DataLoader, default_collate


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


def ordered_loader(rows: torch.utils.data.Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """A DataLoader over ``rows`` in row order that never draws from the global random generator.

    A DataLoader draws its workers' base seed from torch's global generator on every ``iter()``
    unless it has a generator of its own: reading a split (decoding, encoding) would then shift the
    random stream of a training run that reads it. Row order needs no randomness, so a private one.
    """
    return DataLoader(rows, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_rows,
                      generator=torch.Generator().manual_seed(0))

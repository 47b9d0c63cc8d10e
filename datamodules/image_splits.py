"""Step 2 of the image path: the checked source splits -> "train"/"val"/"test", their fingerprint and transform.

Splits are "train", "val" and "test". "val"/"test" come from the source when it has them
(``source_splits.py``); otherwise ``val_fraction``/``test_fraction`` of the training split is held
out with a fixed seed, so every rank and every run gets the same rows. ``max_train_samples`` then
keeps a seeded random subset of the training rows. Each split keeps its rows in source order.

The fingerprint (``splits_fingerprint``) is the key of every cache derived from these images: the
decoded pixels (``decoded_images.py``) and the token grids (``token_cache.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from lightning.pytorch.utilities import rank_zero_warn

from datamodules.bundled_images import DIGITS_SOURCE
from datamodules.image_transforms import ImageBatchTransform, ImageToUint8
from datamodules.rows import select_rows
from datamodules.source_splits import SPLITS, SourceSplits, where

if TYPE_CHECKING:
    from datasets import Dataset


class BuiltSplits(NamedTuple):
    """What ``build_splits`` returns: the resolved image column, the splits and their fingerprint."""

    image_column: str
    splits: dict[str, Dataset]
    fingerprint: str


def build_splits(
    source: SourceSplits,
    path: str,
    train_split: str,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    max_train_samples: int | None,
    pixels: ImageToUint8,
) -> BuiltSplits:
    """Hold out the "val"/"test" the source lacks, limit "train", fingerprint the splits and attach the transform.

    ``path`` and ``train_split`` name the source in errors and in the fingerprint; ``pixels`` is
    the pixel pipeline the splits are served through.
    """
    splits = dict(source.splits)
    train_where = where(path, train_split)
    fractions = {"val": val_fraction, "test": test_fraction}
    missing = set(SPLITS) - set(source.splits)
    splits.update(hold_out_missing_splits(splits.pop("train"), fractions, missing, split_seed, train_where))
    splits["train"] = limit_train_samples(splits["train"], max_train_samples, split_seed, train_where)
    fingerprint = splits_fingerprint(path, source.image_column, pixels, splits)
    transform = ImageBatchTransform(source.image_column, pixels.image_size, pixels.channels)
    for split in splits.values():
        split.set_transform(transform, columns=[source.image_column])
    return BuiltSplits(source.image_column, {role: splits[role] for role in SPLITS if role in splits}, fingerprint)


def held_out_count(num_rows: int, fraction: float) -> int:
    """Rows to hold out for a ``fraction``: none for 0, otherwise at least one."""
    return 0 if fraction == 0 else max(1, round(num_rows * fraction))


def seeded_order(num_rows: int, seed: int, purpose: int) -> np.ndarray:
    """A permutation that depends only on (seed, purpose): identical on every rank, run and platform."""
    return np.random.default_rng([seed, purpose]).permutation(num_rows)


def hold_out(train: Dataset, counts: dict[str, int], seed: int) -> dict[str, Dataset]:
    """Split ``counts[role]`` random rows off ``train`` for each role; the rest stays "train".

    Each split keeps its rows in source order (sorted), which reads the Arrow file sequentially.
    """
    order = seeded_order(len(train), seed, purpose=0)
    splits, start = {}, 0
    for role, count in counts.items():
        splits[role] = select_rows(train, np.sort(order[start : start + count]), f"hold_out_{role}_{seed}")
        start += count
    splits["train"] = select_rows(train, np.sort(order[start:]), f"hold_out_train_{seed}")
    return splits


def hold_out_missing_splits(
    train: Dataset, fractions: dict[str, float], missing: set[str], seed: int, train_where: str
) -> dict[str, Dataset]:
    """Carve "val"/"test" that the source lacks out of ``train`` by their ``fractions``."""
    counts = {role: held_out_count(len(train), fractions[role]) for role in fractions if role in missing}
    counts = {role: count for role, count in counts.items() if count > 0}
    if not counts:
        return {"train": train}
    if sum(counts.values()) >= len(train):
        raise ValueError(f"{train_where} has {len(train)} images: too few to hold out {counts} and keep any for training")
    return hold_out(train, counts, seed)


def limit_train_samples(train: Dataset, limit: int | None, seed: int, train_where: str) -> Dataset:
    """A seeded random subset of ``limit`` training rows (all of them, with a warning, when there are fewer)."""
    if limit is not None and limit > len(train):
        rank_zero_warn(
            f"max_train_samples={limit} but {train_where} has {len(train)}"
            f" training images (after holding out val/test): training on all {len(train)}"
        )
    if limit is None or limit >= len(train):
        return train
    rows = np.sort(seeded_order(len(train), seed, purpose=1)[:limit])
    return select_rows(train, rows, f"max_train_samples_{limit}_{seed}")


def splits_fingerprint(path: str, image_column: str, pixels: ImageToUint8, splits: dict[str, Dataset]) -> str:
    """A stable key for caches derived from these images: source data, split rows and transform.

    Readable prefix, then a hash of the image column, the pixel pipeline (``ImageToUint8.describe``)
    and the ``datasets`` fingerprint of every split (which covers the source content and which
    rows each split holds). Equal across ranks and runs; it changes whenever any pixel or row
    could change. Hub/local sources are fingerprinted from their local cache files, so another
    machine may compute another key (a cache miss, never a wrong hit).
    """
    payload = {
        "image_column": image_column,
        "pixels": pixels.describe(),
        "splits": {role: split._fingerprint for role, split in sorted(splits.items())},
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return f"{_slug(path)}-{pixels.image_size}px-{pixels.channels}ch-{digest}"


def _slug(path: str) -> str:
    """A readable, file-name-safe prefix for the fingerprint: the digits name, a Hub id or a folder name."""
    name = path if path == DIGITS_SOURCE or not path.startswith(("/", ".", "~")) else path.rstrip("/").split("/")[-1]
    return re.sub(r"[^\w.-]+", "--", name).strip("-") or "source"

"""``HFImageDataModule``: the one image DataModule that every model trains on.

Batch contract (train/val/test/predict DataLoaders)::

    {"image": float32 (B, C, H, W) in [-1, 1],   # C = channels, H = W = image_size
     "index": int64 (B,)}                         # row of each image within its split

``index`` is the row in ``dataset(split)`` and in ``images_uint8(split)``, so metrics can
deduplicate the padding that DistributedSampler adds to val/test and can point at the training
image an output copies.

Splits are "train", "val" and "test". "val"/"test" come from the source when it has them
(``val_split``/``test_split``, or automatically a split named validation/valid/val and test);
otherwise ``val_fraction``/``test_fraction`` of the training split is held out with a fixed seed,
so every rank and every run gets the same rows.

Serving. With ``in_memory`` (by default: every split whose uint8 pixels fit in
``IN_MEMORY_MAX_BYTES``, 2 GiB) a split is decoded once per process, on first use, into a uint8
(N, C, H, W) tensor, and a batch is one gather plus one float conversion (``DecodedImages``).
Splits on disk are decoded once per machine: the tensor is cached next to the ``datasets`` cache,
keyed by ``source_fingerprint()``, and memory-mapped by every rank and later run
(``datamodules/decoded.py``). Larger splits, or ``in_memory=False``, are decoded batch by batch
every epoch from the Arrow rows (``IndexedSplit``), in the DataLoader workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from datamodules.decoded import (
    IN_MEMORY_MAX_BYTES,
    DecodedImages,
    decode_split,
    decoded_cache_file,
    load_or_decode,
)
from datamodules.digits import DIGITS_SOURCE
from datamodules.image_sources import (
    drop_undecodable_rows,
    load_image_source,
    resolve_image_column,
    select_rows,
    with_undecoded_images,
)
from datamodules.resumable_loader import EpochShuffle, ResumableLoader
from datamodules.rows import IndexedSplit, collate_rows
from datamodules.transforms import ImageBatchTransform, ImageToUint8


SPLITS = ("train", "val", "test")
SOURCE_SPLIT_ALIASES = {"val": ("validation", "valid", "val"), "test": ("test",)}
"""Source split names used automatically for "val" and "test" when ``val_split``/``test_split`` are unset."""


class BuiltSplits(NamedTuple):
    """What ``_build_splits`` returns: the resolved image column, the splits and their fingerprint."""

    image_column: str
    splits: dict[str, Dataset]
    fingerprint: str


def per_device_batch_size(global_batch_size: int, world_size: int) -> int:
    """``batch_size`` is global (what the optimizer sees per step), so each rank loads its share of it."""
    if global_batch_size % world_size:
        raise ValueError(
            f"batch_size={global_batch_size} is the global batch and must be divisible by world_size={world_size}"
        )
    return global_batch_size // world_size


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


def _slug(path: str) -> str:
    """A readable, file-name-safe prefix for the fingerprint: the digits name, a Hub id or a folder name."""
    name = path if path == DIGITS_SOURCE or not path.startswith(("/", ".", "~")) else path.rstrip("/").split("/")[-1]
    return re.sub(r"[^\w.-]+", "--", name).strip("-") or "source"


class HFImageDataModule(LightningDataModule):
    """Images from any Hugging Face-loadable source, resized, cropped and scaled to [-1, 1].

    Args:
        path: image source; see ``datamodules/image_sources.py`` (digits, parquet/arrow file or
            folder, ``save_to_disk`` folder, image folder, Hub id).
        image_column: column holding the images; ``None`` picks the first image column.
        image_size: output height and width (shorter side resized, then center-cropped).
        channels: 1 (grayscale) or 3 (RGB); alpha is composited on white.
        batch_size: GLOBAL batch size; each of the ``world_size`` ranks loads ``batch_size // world_size``.
        num_workers: DataLoader workers per rank (persistent when > 0).
        val_fraction: share of the training split held out as "val" when the source has no val split.
        test_fraction: share of the training split held out as "test" when the source has no test split.
        split_seed: seed of the held-out rows and of the ``max_train_samples`` subset.
        train_split: source split used for training.
        val_split: source split used as "val"; ``None`` = a split named validation/valid/val if any.
        test_split: source split used as "test"; ``None`` = a split named test if any.
        predict_split: which of "train"/"val"/"test" ``predict_dataloader`` iterates.
        cache_dir: Hugging Face cache folder (Arrow files, downloads, decodability checks); shared by
            the ranks of a node. ``None`` = ``HF_DATASETS_CACHE``.
        skip_corrupt: drop images that fail to decode (count is warned) instead of raising.
        max_train_samples: keep a seeded random subset of this many training images.
        in_memory: serve the splits decoded once into uint8 tensors (``True``), or decode every batch
            from the Arrow rows every epoch (``False``). ``None`` = in memory for each split whose
            decoded pixels take at most ``IN_MEMORY_MAX_BYTES`` (2 GiB), lazily otherwise. The
            batches are identical either way. Splits on disk are decoded once per machine and cached
            under ``<cache_dir>/meps_ldh/decoded`` (see ``datamodules/decoded.py``).

    After ``setup``: ``image_column`` (the resolved column), ``per_device_batch_size``,
    ``split_names``, ``dataset(split)``, ``images_uint8(split)``, ``source_fingerprint()``.
    """

    def __init__(
        self,
        path: str = DIGITS_SOURCE,
        image_column: str | None = None,
        image_size: int = 8,
        channels: int = 1,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        split_seed: int = 0,
        train_split: str = "train",
        val_split: str | None = None,
        test_split: str | None = None,
        predict_split: str = "val",
        cache_dir: str | None = None,
        skip_corrupt: bool = False,
        max_train_samples: int | None = None,
        in_memory: bool | None = None,
    ) -> None:
        super().__init__()
        _validate_arguments(batch_size, num_workers, val_fraction, test_fraction, predict_split, max_train_samples)
        self.save_hyperparameters(logger=False)
        self._pixels = ImageToUint8(image_size, channels)  # also validates image_size and channels
        self.image_size = image_size
        self.channels = channels
        self.per_device_batch_size = batch_size
        self.image_column: str | None = None
        self._splits: dict[str, Dataset] | None = None
        self._fingerprint: str | None = None
        self._built: BuiltSplits | None = None
        self._decoded: dict[str, DecodedImages] = {}

    # ---------------------------------------------------------------- Lightning hooks

    def prepare_data(self) -> None:
        """Build the Arrow cache (download, parquet/imagefolder conversion), the decodability check and
        the decoded-pixel cache of every in-memory split on disk.

        Runs on one process per node before ``setup``. Other ranks never see this process's
        state: their ``setup`` loads everything from these caches. This process keeps what it
        built, so that its own ``setup`` does not load the source a second time.
        """
        built = self._memoized_splits()
        for split in built.splits:
            if self._serves_decoded(built, split) and self._decoded_cache_file(built, split) is not None:
                self._image_rows(split)

    def setup(self, stage: str | None = None) -> None:
        """Load the splits (cache hits) once, and size each rank's batch for the current world size.

        In-memory splits are decoded (or mapped from their cache) on first use, once per process.
        """
        self.per_device_batch_size = per_device_batch_size(self.hparams.batch_size, self._world_size())
        if self._splits is None:
            self.image_column, self._splits, self._fingerprint = self._memoized_splits()

    def check_world_size(self, world_size: int) -> None:
        """Fail before any process, W&B run or folder exists when the global batch cannot be split over ``world_size``."""
        per_device_batch_size(self.hparams.batch_size, world_size)

    def train_dataloader(self) -> ResumableLoader:
        """This rank's share of a seeded order per epoch, resumable mid-epoch (``datamodules/resumable_loader.py``).

        The order depends on the run's seed (``seed_everything``) and the epoch only, never on the global
        random stream, and is the same whatever the number of ranks.
        """
        train = self._served("train")
        trainer = self.trainer
        sampler = EpochShuffle(train, num_replicas=self._world_size(), rank=getattr(trainer, "global_rank", 0),
                               seed=int(os.environ.get("PL_GLOBAL_SEED", 0)))
        # drop_last keeps batch statistics even, but a split smaller than one global batch would give no step
        return self._loader(train, sampler=sampler, drop_last=len(train) >= self.hparams.batch_size, loader=ResumableLoader)

    def val_dataloader(self) -> DataLoader | list:
        """The "val" loader; an empty list (Lightning then skips validation) when there is no "val" split."""
        self._require_setup("val_dataloader")
        return self._loader(self._served("val")) if "val" in self._splits else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._served("test"))

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._served(self.hparams.predict_split))

    # ---------------------------------------------------------------- public helpers

    @property
    def split_names(self) -> list[str]:
        """The splits this datamodule has after ``setup``: "train" and any of "val", "test"."""
        self._require_setup("split_names")
        return list(self._splits)

    def dataset(self, split: str = "train") -> Dataset:
        """The split as a ``datasets.Dataset`` whose rows are ``{"image": float32 (C, H, W) in [-1, 1]}``."""
        return self._split(split)

    def images_uint8(self, split: str = "train") -> torch.Tensor:
        """Every image of ``split`` as uint8 (N, C, H, W), row i = ``index`` i: the memorization reference set.

        Same pixels as the DataLoaders (``x / 127.5 - 1`` of these gives their batches exactly).
        An in-memory split returns the very tensor the DataLoaders serve (no copy, no second
        decode): read it, never modify it in place. A lazy split is decoded here, in full, on
        every call, so call it once and keep the result.
        """
        dataset = self._split(split)
        if self._serves_decoded(self._memoized_splits(), split):
            return self._image_rows(split).images
        return decode_split(dataset, self.image_column, self.image_size, self.channels, self.hparams.num_workers)

    def source_fingerprint(self) -> str:
        """A stable key for caches derived from these images: source data, split rows and transform.

        Readable prefix, then a hash of the image column, the pixel pipeline (``ImageToUint8.describe``)
        and the ``datasets`` fingerprint of every split (which covers the source content and which
        rows each split holds). Equal across ranks and runs; it changes whenever any pixel or row
        could change. Hub/local sources are fingerprinted from their local cache files, so another
        machine may compute another key (a cache miss, never a wrong hit).
        """
        self._require_setup("source_fingerprint")
        return self._fingerprint

    # ---------------------------------------------------------------- internals

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def _require_setup(self, caller: str) -> None:
        if self._splits is None:
            raise RuntimeError(f"{type(self).__name__}.{caller} needs the data: call prepare_data() and setup() first")

    def _split(self, split: str) -> Dataset:
        self._require_setup(f"dataset({split!r})")
        if split not in self._splits:
            how_to_get_it = f"; set {split}_split or {split}_fraction to get one" if split in SPLITS else ""
            raise ValueError(f"no {split!r} split: this datamodule has {list(self._splits)}{how_to_get_it}")
        return self._splits[split]

    def _served(self, split: str) -> torch.utils.data.Dataset:
        """What the DataLoaders iterate for ``split``: its rows with their ``"index"``.

        Here the images; a subclass serves another view of the same rows (latent tokens).
        """
        self._split(split)  # names a missing split
        return self._image_rows(split)

    def _image_rows(self, split: str) -> DecodedImages | IndexedSplit:
        """The images of ``split`` as a map-style dataset: decoded once (memoized) or lazy (``in_memory``).

        Works before ``setup`` too (``prepare_data`` of this class and of the token datamodule).
        """
        built = self._memoized_splits()
        if not self._serves_decoded(built, split):
            return IndexedSplit(built.splits[split])
        if split not in self._decoded:
            self._decoded[split] = load_or_decode(
                built.splits[split], built.image_column, self.image_size, self.channels, self.hparams.num_workers,
                self._decoded_cache_file(built, split),
            )
        return self._decoded[split]

    def _serves_decoded(self, built: BuiltSplits, split: str) -> bool:
        if self.hparams.in_memory is not None:
            return self.hparams.in_memory
        return len(built.splits[split]) * self.channels * self.image_size**2 <= IN_MEMORY_MAX_BYTES

    def _decoded_cache_file(self, built: BuiltSplits, split: str) -> Path | None:
        return decoded_cache_file(built.splits[split], built.fingerprint, split, self.hparams.cache_dir)

    def _loader(self, dataset: torch.utils.data.Dataset, sampler: torch.utils.data.Sampler | None = None,
                drop_last: bool = False, loader: type[DataLoader] = DataLoader) -> DataLoader:
        """One DataLoader recipe for every stage; for evaluation, Lightning injects its DistributedSampler itself.

        A DataLoader with ``batch_size``, so Lightning can rebuild it around its DistributedSampler;
        ``collate_rows`` passes on the batches that ``__getitems__`` builds.
        """
        return loader(
            dataset,
            batch_size=self.per_device_batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_rows,
        )

    def _memoized_splits(self) -> BuiltSplits:
        """``_build_splits()``, once per process: ``prepare_data`` and ``setup`` share one build."""
        if self._built is None:
            self._built = self._build_splits()
        return self._built

    def _build_splits(self) -> BuiltSplits:
        """Load the source, check its images, assign "train"/"val"/"test", attach the transform.

        Returns the image column, the splits and their fingerprint. Pure (no ``self.x =``); use
        ``_memoized_splits`` for the memoized result.
        """
        hp = self.hparams
        source = load_image_source(hp.path, hp.cache_dir)
        source_names = self._source_split_names(source)
        image_column = resolve_image_column(source[hp.train_split], hp.image_column, self._where(hp.train_split))
        splits = {role: self._checked_source_split(source, name, image_column) for role, name in source_names.items()}
        splits.update(self._hold_out_missing_splits(splits.pop("train"), missing=set(SPLITS) - set(source_names)))
        splits["train"] = self._limit_train_samples(splits["train"])
        fingerprint = self._fingerprint_of(image_column, splits)
        transform = ImageBatchTransform(image_column, self.image_size, self.channels)
        for split in splits.values():
            split.set_transform(transform, columns=[image_column])
        return BuiltSplits(image_column, {role: splits[role] for role in SPLITS if role in splits}, fingerprint)

    def _where(self, source_split: str) -> str:
        return f"split {source_split!r} of {self.hparams.path}"

    def _source_split_names(self, source: DatasetDict) -> dict[str, str]:
        """Map roles to source split names: "train" always, "val"/"test" when given or found by alias."""
        hp = self.hparams
        names = {"train": self._require_source_split(source, hp.train_split, "train_split")}
        for role, requested in (("val", hp.val_split), ("test", hp.test_split)):
            if requested is not None:
                names[role] = self._require_source_split(source, requested, f"{role}_split")
            else:
                found = [alias for alias in SOURCE_SPLIT_ALIASES[role] if alias in source and alias != hp.train_split]
                names.update({role: found[0]} if found else {})
        return names

    def _require_source_split(self, source: DatasetDict, name: str, argument: str) -> str:
        if name not in source:
            raise ValueError(f"{argument}={name!r} is not a split of {self.hparams.path}; it has {list(source)}")
        return name

    def _checked_source_split(self, source: DatasetDict, name: str, image_column: str) -> Dataset:
        """One source split with its image column validated, undecoded, and its broken images handled."""
        where = self._where(name)
        split = with_undecoded_images(source[name], resolve_image_column(source[name], image_column, where))
        split = drop_undecodable_rows(split, image_column, where, self.hparams.skip_corrupt, self.hparams.cache_dir)
        if len(split) == 0:
            raise ValueError(f"{where} is empty after dropping undecodable images")
        return split

    def _hold_out_missing_splits(self, train: Dataset, missing: set[str]) -> dict[str, Dataset]:
        """Carve "val"/"test" that the source lacks out of ``train`` by ``val_fraction``/``test_fraction``."""
        hp = self.hparams
        fractions = {"val": hp.val_fraction, "test": hp.test_fraction}
        counts = {role: held_out_count(len(train), fractions[role]) for role in fractions if role in missing}
        counts = {role: count for role, count in counts.items() if count > 0}
        if not counts:
            return {"train": train}
        if sum(counts.values()) >= len(train):
            raise ValueError(
                f"{self._where(hp.train_split)} has {len(train)} images: too few to hold out {counts} and keep any for training"
            )
        return hold_out(train, counts, hp.split_seed)

    def _limit_train_samples(self, train: Dataset) -> Dataset:
        limit = self.hparams.max_train_samples
        if limit is not None and limit > len(train):
            rank_zero_warn(f"max_train_samples={limit} but {self._where(self.hparams.train_split)} has {len(train)}"
                           f" training images (after holding out val/test): training on all {len(train)}")
        if limit is None or limit >= len(train):
            return train
        rows = np.sort(seeded_order(len(train), self.hparams.split_seed, purpose=1)[:limit])
        return select_rows(train, rows, f"max_train_samples_{limit}_{self.hparams.split_seed}")

    def _fingerprint_of(self, image_column: str, splits: dict[str, Dataset]) -> str:
        payload = {
            "image_column": image_column,
            "pixels": self._pixels.describe(),
            "splits": {role: split._fingerprint for role, split in sorted(splits.items())},
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
        return f"{_slug(self.hparams.path)}-{self.image_size}px-{self.channels}ch-{digest}"


def _validate_arguments(
    batch_size: int,
    num_workers: int,
    val_fraction: float,
    test_fraction: float,
    predict_split: str,
    max_train_samples: int | None,
) -> None:
    """Reject bad settings at construction, one line each, before any data is touched."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    if predict_split not in SPLITS:
        raise ValueError(f"predict_split must be one of {SPLITS}, got {predict_split!r}")
    if max_train_samples is not None and max_train_samples < 1:
        raise ValueError(f"max_train_samples must be >= 1 or None, got {max_train_samples}")

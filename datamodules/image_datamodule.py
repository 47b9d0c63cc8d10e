"""``HFImageDataModule``: the one image DataModule that every model trains on.

Batch contract (train/val/test/predict DataLoaders)::

    {"image": float32 (B, C, H, W) in [-1, 1],   # C = channels, H = W = image_size
     "index": int64 (B,)}                         # row of each image within its split

``index`` is the row in ``dataset(split)`` and in ``images_uint8(split)``, so metrics can
deduplicate the padding that DistributedSampler adds to val/test and can point at the training
image an output copies.

The image path, in the order this class calls it: ``source_splits.py`` (path string -> the
source's splits, every image checked to decode), ``image_splits.py`` ("train"/"val"/"test", their
fingerprint and pixel transform), ``decoded_images.py`` (each split decoded once into uint8, or
served lazily from the Arrow rows), then the loaders here (``resumable_loader.py`` for training).
"""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import cast

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import AttributeDict
from torch.utils.data import DataLoader

import datamodules.hf_types as hf_types
from datamodules.bundled_images import DIGITS_SOURCE
from datamodules.decoded_images import SplitImages
from datamodules.image_splits import BuiltSplits, build_splits
from datamodules.image_transforms import ImageToUint8
from datamodules.resumable_loader import EpochShuffle, ResumableLoader
from datamodules.rows import collate_rows
from datamodules.source_splits import SPLITS, load_source_splits


def per_device_batch_size(global_batch_size: int, world_size: int) -> int:
    """``batch_size`` is global (what the optimizer sees per step), so each rank loads its share of it."""
    if global_batch_size % world_size:
        raise ValueError(f"batch_size={global_batch_size} is the global batch and must be divisible by world_size={world_size}")
    return global_batch_size // world_size


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
            under ``<cache_dir>/meps_ldh/decoded`` (see ``datamodules/decoded_images.py``).

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
        self._splits: dict[str, hf_types.Dataset] | None = None
        self._fingerprint: str | None = None
        self._built: BuiltSplits | None = None
        self._images: SplitImages | None = None

    # ---------------------------------------------------------------- Lightning hooks

    def prepare_data(self) -> None:
        """Build the Arrow cache (download, parquet/imagefolder conversion), the decodability check and
        the decoded-pixel cache of every in-memory split on disk.

        Runs on one process per node before ``setup``. Other ranks never see this process's
        state: their ``setup`` loads everything from these caches. This process keeps what it
        built, so that its own ``setup`` does not load the source a second time.
        """
        self._split_images().decode_cached_splits()

    def setup(self, stage: str | None = None) -> None:
        """Load the splits (cache hits) once, and size each rank's batch for the current world size.

        In-memory splits are decoded (or mapped from their cache) on first use, once per process.
        """
        self.per_device_batch_size = per_device_batch_size(self._hp.batch_size, self._world_size())
        if self._splits is None:
            self.image_column, self._splits, self._fingerprint = self._memoized_splits()

    def check_world_size(self, world_size: int) -> None:
        """Fail before any process, W&B run or folder exists when the global batch cannot be split over ``world_size``."""
        per_device_batch_size(self._hp.batch_size, world_size)

    def train_dataloader(self) -> ResumableLoader:
        """This rank's share of a seeded order per epoch, resumable mid-epoch (``datamodules/resumable_loader.py``).

        The order depends on the run's seed (``seed_everything``) and the epoch only, never on the global
        random stream, and is the same whatever the number of ranks.
        """
        train = self._served("train")
        trainer = self.trainer
        sampler = EpochShuffle(
            train, num_replicas=self._world_size(), rank=getattr(trainer, "global_rank", 0), seed=int(os.environ.get("PL_GLOBAL_SEED", 0))
        )
        # drop_last keeps batch statistics even, but a split smaller than one global batch would give no step
        loader = self._loader(train, sampler=sampler, drop_last=len(cast(Sized, train)) >= self._hp.batch_size, loader=ResumableLoader)
        return cast(ResumableLoader, loader)  # built by loader=ResumableLoader

    def val_dataloader(self) -> DataLoader | list:
        """The "val" loader; an empty list (Lightning then skips validation) when there is no "val" split."""
        self._require_setup("val_dataloader")
        assert self._splits is not None  # _require_setup raised otherwise
        return self._loader(self._served("val")) if "val" in self._splits else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._served("test"))

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._served(self._hp.predict_split))

    # ---------------------------------------------------------------- public helpers

    @property
    def split_names(self) -> list[str]:
        """The splits this datamodule has after ``setup``: "train" and any of "val", "test"."""
        self._require_setup("split_names")
        assert self._splits is not None  # _require_setup raised otherwise
        return list(self._splits)

    def dataset(self, split: str = "train") -> hf_types.Dataset:
        """The split as a ``datasets.Dataset`` whose rows are ``{"image": float32 (C, H, W) in [-1, 1]}``."""
        return self._split(split)

    def images_uint8(self, split: str = "train") -> torch.Tensor:
        """Every image of ``split`` as uint8 (N, C, H, W), row i = ``index`` i: the memorization reference set.

        Same pixels as the DataLoaders (``x / 127.5 - 1`` of these gives their batches exactly).
        An in-memory split returns the very tensor the DataLoaders serve (no copy, no second
        decode): read it, never modify it in place. A lazy split is decoded here, in full, on
        every call, so call it once and keep the result.
        """
        self._split(split)  # names a missing split
        return self._split_images().uint8(split)

    def source_fingerprint(self) -> str:
        """A stable key for caches derived from these images: source data, split rows and transform.

        Equal across ranks and runs; it changes whenever any pixel or row could change (see
        ``image_splits.splits_fingerprint``).
        """
        self._require_setup("source_fingerprint")
        assert self._fingerprint is not None  # setup() sets it with _splits; _require_setup raised otherwise
        return self._fingerprint

    # ---------------------------------------------------------------- internals

    @property
    def _hp(self) -> AttributeDict:
        """``hparams`` as ``save_hyperparameters`` keeps them: an ``AttributeDict`` (attribute access typed as such)."""
        return cast(AttributeDict, self.hparams)

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def _require_setup(self, caller: str) -> None:
        if self._splits is None:
            raise RuntimeError(f"{type(self).__name__}.{caller} needs the data: call prepare_data() and setup() first")

    def _split(self, split: str) -> hf_types.Dataset:
        self._require_setup(f"dataset({split!r})")
        assert self._splits is not None  # _require_setup raised otherwise
        if split not in self._splits:
            how_to_get_it = f"; set {split}_split or {split}_fraction to get one" if split in SPLITS else ""
            raise ValueError(f"no {split!r} split: this datamodule has {list(self._splits)}{how_to_get_it}")
        return self._splits[split]

    def _served(self, split: str) -> torch.utils.data.Dataset:
        """What the DataLoaders iterate for ``split``: its rows with their ``"index"``.

        Here the images; a subclass serves another view of the same rows (latent tokens).
        """
        self._split(split)  # names a missing split
        return self._split_images().rows(split)

    def _loader(
        self,
        dataset: torch.utils.data.Dataset,
        sampler: torch.utils.data.Sampler | None = None,
        drop_last: bool = False,
        loader: type[DataLoader] = DataLoader,
    ) -> DataLoader:
        """One DataLoader recipe for every stage; for evaluation, Lightning injects its DistributedSampler itself.

        A DataLoader with ``batch_size``, so Lightning can rebuild it around its DistributedSampler;
        ``collate_rows`` passes on the batches that ``__getitems__`` builds.
        """
        return loader(
            dataset,
            batch_size=self.per_device_batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self._hp.num_workers,
            persistent_workers=self._hp.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_rows,
        )

    def _memoized_splits(self) -> BuiltSplits:
        """``_build_splits()``, once per process: ``prepare_data`` and ``setup`` share one build."""
        if self._built is None:
            self._built = self._build_splits()
        return self._built

    def _build_splits(self) -> BuiltSplits:
        """Load and check the source (step 1), then assign "train"/"val"/"test" and attach the transform (step 2).

        Returns the image column, the splits and their fingerprint. Pure (no ``self.x =``); use
        ``_memoized_splits`` for the memoized result.
        """
        hp = self._hp
        source = load_source_splits(hp.path, hp.cache_dir, hp.image_column, hp.train_split, hp.val_split, hp.test_split, hp.skip_corrupt)
        return build_splits(
            source, hp.path, hp.train_split, hp.val_fraction, hp.test_fraction, hp.split_seed, hp.max_train_samples, self._pixels
        )

    def _split_images(self) -> SplitImages:
        """The images of the built splits as the loaders serve them (step 3), once per process; works before ``setup``."""
        if self._images is None:
            hp = self._hp
            self._images = SplitImages(self._memoized_splits(), self.image_size, self.channels, hp.num_workers, hp.in_memory, hp.cache_dir)
        return self._images


def _validate_arguments(
    batch_size: int, num_workers: int, val_fraction: float, test_fraction: float, predict_split: str, max_train_samples: int | None
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

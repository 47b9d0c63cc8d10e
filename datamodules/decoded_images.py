"""Step 3 of the image path: splits decoded once into a uint8 (N, C, H, W) tensor, served a whole batch per gather.

Which splits. With ``in_memory`` (by default: every split whose uint8 pixels fit in
``IN_MEMORY_MAX_BYTES``, 2 GiB; ``SplitImages``) a split is decoded once per process, on first
use. Larger splits, or ``in_memory=False``, are decoded batch by batch every epoch from the Arrow
rows (``IndexedSplit``), in the DataLoader workers. The batches are identical either way.

Decoding a PNG and converting it costs ~100 µs of Python per image, every epoch, on the lazy
path (``IndexedSplit`` over a ``datasets`` split with ``ImageBatchTransform``). ``DecodedImages``
pays it once: the DataLoader's ``__getitems__`` call becomes one index gather and one float
conversion per batch, and ``collate_rows`` passes the batch through.

Disk cache. A split whose rows live in Arrow files on disk (every source but in-memory data such
as the bundled digits) is decoded once per machine, not once per process: the tensor is saved
as ``<cache_dir or HF_DATASETS_CACHE>/meps_ldh/decoded/<source_fingerprint>/<split>.npy`` and
memory-mapped by every process that serves it. The DDP ranks of a node then share one copy in the
page cache, and a later run with the same images, rows and pixel pipeline skips decoding.

A file is written under a temporary name, fsynced and then published under its final name,
so no reader ever sees half a file. Because processes map it, a published file is never
rewritten in place nor replaced by a concurrent writer (the first one published wins, even across
nodes on a shared file system); only a file found unusable is replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

from datamodules.image_splits import BuiltSplits
from datamodules.image_transforms import ImageBatchTransform
from datamodules.rows import IndexedSplit, ordered_loader
from imaging.pixels import uint8_to_signed_unit
from runtime.atomic_files import PARTIAL_PREFIX, atomic_write, remove_dead_partials

if TYPE_CHECKING:
    from datasets import Dataset

IN_MEMORY_MAX_BYTES = 2 * 1024**3
"""``in_memory=None`` decodes a split when its uint8 pixels take at most this much (2 GiB per split)."""

DECODE_BATCH = 512
_DECODED_SUBDIR = Path("meps_ldh") / "decoded"


_SIGNED_UNIT = uint8_to_signed_unit(torch.arange(256, dtype=torch.uint8)).numpy()
"""``x / 127.5 - 1`` of every uint8 value, computed by the lazy path's own function: a lookup gives its exact floats."""


class SplitImages:
    """The images of each built split as the map-style dataset its loaders iterate: decoded or lazy.

    A split is decoded once per process (memoized here) when it is served in memory, otherwise
    wrapped as ``IndexedSplit``; works before ``setup`` too (``prepare_data`` of both DataModules).
    """

    def __init__(
        self, built: BuiltSplits, image_size: int, channels: int, num_workers: int, in_memory: bool | None, cache_dir: str | None
    ) -> None:
        self.built = built
        self.image_size = image_size
        self.channels = channels
        self.num_workers = num_workers
        self.in_memory = in_memory
        self.cache_dir = cache_dir
        self._decoded: dict[str, DecodedImages] = {}

    def serves_decoded(self, split: str) -> bool:
        """As ``in_memory`` says, or (``None``) when the split's uint8 pixels fit in ``IN_MEMORY_MAX_BYTES``."""
        if self.in_memory is not None:
            return self.in_memory
        return len(self.built.splits[split]) * self.channels * self.image_size**2 <= IN_MEMORY_MAX_BYTES

    def cache_file(self, split: str) -> Path | None:
        return decoded_cache_file(self.built.splits[split], self.built.fingerprint, split, self.cache_dir)

    def rows(self, split: str) -> DecodedImages | IndexedSplit:
        """What the loaders of ``split`` iterate: ``{"image", "index"}`` rows."""
        if not self.serves_decoded(split):
            return IndexedSplit(self.built.splits[split])
        if split not in self._decoded:
            self._decoded[split] = load_or_decode(
                self.built.splits[split], self.built.image_column, self.image_size, self.channels, self.num_workers, self.cache_file(split)
            )
        return self._decoded[split]

    def uint8(self, split: str) -> torch.Tensor:
        """Every image of ``split`` as uint8 (N, C, H, W): the served tensor itself, or decoded in full now (lazy)."""
        if self.serves_decoded(split):
            return cast(DecodedImages, self.rows(split)).images  # rows() decodes a split it serves decoded
        return decode_split(self.built.splits[split], self.built.image_column, self.image_size, self.channels, self.num_workers)

    def decode_cached_splits(self) -> None:
        """Decode (or find in its cache) every in-memory split on disk, so the other ranks map the cache file."""
        for split in self.built.splits:
            if self.serves_decoded(split) and self.cache_file(split) is not None:
                self.rows(split)


class DecodedImages(torch.utils.data.Dataset):
    """One split as uint8 (N, C, H, W) in memory: ``{"image": float32 in [-1, 1], "index": row}``.

    ``__getitems__`` returns the whole batch at once, ``{"image": (B, C, H, W), "index": long (B,)}``,
    with exactly the pixels of the lazy path (``x / 127.5 - 1`` of the same uint8 values). The
    gather and the conversion (a 256-entry lookup table) run in NumPy, single-threaded: as torch
    ops, a batch is big enough for the intra-op thread pool, whose barrier stalls for milliseconds
    per op when other processes keep the cores busy (measured: 48 ms instead of 0.25 ms per batch
    of 128 32x32 RGB images on a loaded 2-core machine). A memory-mapped split pickles as its file
    path (a spawned DataLoader worker maps the file again instead of receiving the pixels).
    """

    def __init__(self, images: torch.Tensor, path: Path | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"DecodedImages needs uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.path = path
        self._pixels = images.numpy()  # the same memory

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        return {"image": torch.from_numpy(np.take(_SIGNED_UNIT, self._pixels[index])), "index": index}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        rows = np.asarray(indices, dtype=np.int64)
        return {"image": torch.from_numpy(np.take(_SIGNED_UNIT, self._pixels[rows])), "index": torch.from_numpy(rows)}

    def __getstate__(self) -> dict[str, Any]:
        if self.path is None:
            return {"images": self.images, "path": None}
        return {"images": None, "path": self.path, "shape": tuple(self.images.shape)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        path = state["path"]
        type(self).__init__(self, state["images"] if path is None else _map_file(path, state["shape"]), path)


def decode_split(dataset: Dataset, image_column: str, image_size: int, channels: int, num_workers: int = 0) -> torch.Tensor:
    """Every image of ``dataset`` as uint8 (N, C, H, W), row i = row i, decoded by ``num_workers`` DataLoader workers."""
    rows = dataset.with_transform(ImageBatchTransform(image_column, image_size, channels, as_uint8=True), columns=[image_column])
    images = torch.empty((len(rows), channels, image_size, image_size), dtype=torch.uint8)
    for batch in ordered_loader(IndexedSplit(rows), DECODE_BATCH, num_workers):
        images[batch["index"]] = batch["image"]
    return images


def decoded_cache_file(dataset: Dataset, fingerprint: str, split: str, cache_dir: str | None) -> Path | None:
    """Where the decoded ``split`` is kept; ``None`` for in-memory data (no stable identity, cheap anyway)."""
    if not dataset.cache_files:
        return None
    import datasets  # here: importing the module must not import `datasets` (start-up of every command)

    return Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / _DECODED_SUBDIR / fingerprint / f"{split}.npy"


def load_or_decode(
    dataset: Dataset, image_column: str, image_size: int, channels: int, num_workers: int, cache_file: Path | None
) -> DecodedImages:
    """The split decoded: memory-mapped from ``cache_file`` when it holds it, else decoded (and saved there).

    A cache file of the wrong shape (not ours, or of another row count) is replaced with a
    warning. When saving fails (read-only or full disk) the split is served from memory anyway.
    """
    shape = (len(dataset), channels, image_size, image_size)
    if cache_file is not None and cache_file.is_file():
        try:
            return DecodedImages(_map_file(cache_file, shape), cache_file)
        except (OSError, ValueError) as err:
            rank_zero_warn(f"decoding again: the decoded image cache {cache_file} is not usable ({err})")
    unusable = cache_file is not None and cache_file.is_file()
    images = decode_split(dataset, image_column, image_size, channels, num_workers)
    if cache_file is None:
        return DecodedImages(images)
    try:
        _save_atomically(images, cache_file, replace=unusable)
    except OSError as err:
        rank_zero_warn(f"serving the decoded images from memory: cannot save them to {cache_file} ({err})")
        return DecodedImages(images)
    return DecodedImages(_map_file(cache_file, shape), cache_file)  # share the page cache with the other ranks


def _map_file(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """The ``.npy`` at ``path`` memory-mapped copy-on-write (writable for torch, never written back)."""
    array = np.load(path, mmap_mode="c", allow_pickle=False)
    if array.dtype != np.uint8 or tuple(array.shape) != tuple(shape):
        raise ValueError(f"it holds {array.dtype} {tuple(array.shape)}, expected uint8 {tuple(shape)}")
    return torch.from_numpy(array)


def _save_atomically(images: torch.Tensor, path: Path, replace: bool = False) -> None:
    """``np.save`` through ``runtime/atomic_files``: ``path`` is complete or absent.

    Published with a hard link, which keeps a file that another process published meanwhile (same
    pixels): it may be mapped. ``replace`` renames over it.
    """
    prefix = f"{PARTIAL_PREFIX}{path.name}-"
    remove_dead_partials(path.parent, prefix)
    atomic_write(path, lambda file: np.save(file, images.numpy(), allow_pickle=False), prefix=prefix, replace=replace)

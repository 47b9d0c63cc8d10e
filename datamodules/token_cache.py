"""The token cache: every image split encoded once by a frozen BL-AE, kept on disk as one folder per (images, checkpoint).

A cache folder holds a ``DatasetDict`` with a ``tokens`` column (``Array2D (h, w)``, uint8 for
C <= 8 bits, else int32) and a ``meta.json``; ``LatentTokenDataModule.cache_folder`` names it
``<token_cache_dir>/<source fingerprint>--ae-<checkpoint sha256[:16]>-v<TOKEN_CACHE_VERSION>``.

``prepare_data`` (one process per node) reuses a folder only when it is complete and its
``meta.json`` matches what the data module expects (``cache_problem`` says why not otherwise);
else it encodes every split (``encode_tokens``, strict FP32) and writes the folder through
``runtime/atomic_files``: under a temporary name, renamed when complete, so a crash or a full disk
never leaves a folder that a later run would take for a cache; temporary folders of dead
processes are removed. ``setup`` (every rank) only reads it (``read_token_cache``).

A cache whose files were damaged afterwards (a truncated file, one overwritten with what is not Arrow or JSON, a
split that lost rows) is found by ``prepare_data`` (it opens every split and counts its rows) and rebuilt with a
warning; where ``setup`` meets one, the error names the folder and says to delete it: it is only a cache, rebuilt by
the next run. Token values overwritten in place, the file's length and format intact, are not detected. An OS error
that says nothing of the files (too many open files, an I/O or NFS fault) is raised as it is: the cache is kept.
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from datamodules.rows import IndexedSplit, ordered_loader
from networks.precision import strict_fp32
from runtime.atomic_files import PARTIAL_PREFIX, atomic_folder, remove_dead_partials
from runtime.errors import BadInput, squeeze

if TYPE_CHECKING:
    from datasets import Dataset

TOKEN_CACHE_VERSION = 1
"""Bump when the stored tokens change for the same checkpoint and images (packing, precision, layout)."""

META_FILE = "meta.json"


def token_storage_dtype(num_bits: int) -> str:
    """The smallest stored dtype for ids in [0, 2^C): uint8 up to 8 bits, int32 up to 31, else int64."""
    return "uint8" if num_bits <= 8 else "int32" if num_bits <= 31 else "int64"


def cache_problem(folder: Path, expected: dict[str, Any]) -> str | None:
    """Why ``folder`` is not a complete cache matching ``expected`` (``None`` when it is one)."""
    if not folder.is_dir():
        return "no cache yet"
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return f"no readable {META_FILE}"
    for key, value in expected.items():
        if key != "autoencoder_path" and meta.get(key) != value:
            return f"{META_FILE} has {key}={meta.get(key)!r}, expected {value!r}"
    if not (folder / "dataset_dict.json").is_file():
        return "no dataset_dict.json"
    missing = [split for split in expected["split_sizes"] if not (folder / split / "state.json").is_file()]
    return f"split folder(s) {missing} incomplete" if missing else None


DAMAGE_ERRORS = (OSError, ValueError, KeyError, IndexError, TypeError)
"""What reading damaged cache files raises: Arrow's errors are ``OSError`` (a truncated file) and ``ValueError``
(``ArrowInvalid``), a broken JSON file ``ValueError``, a missing split ``KeyError``."""
NOT_DAMAGE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.EIO, errno.ESTALE, errno.EACCES, errno.EPERM, errno.ENOMEM, errno.EINTR}
"""OS errors that say nothing about the files (too many open files, an I/O or NFS fault, permissions): such a
cache may be whole, and other processes may be reading it, so it is neither removed nor called damaged."""


def not_damage(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in NOT_DAMAGE_ERRNOS


def unreadable_because(folder: Path, split_sizes: dict[str, int]) -> str | None:
    """Why the stored splits of the cache ``folder`` cannot be read back whole (damaged files), or None."""
    from datasets import load_from_disk  # here: importing this module must not import `datasets` (start-up)

    try:
        tokens = load_from_disk(str(folder))
        counts = {split: len(tokens[split]) for split in split_sizes}
    except DAMAGE_ERRORS as err:
        if not_damage(err):
            raise
        return f"its files are damaged ({squeeze(err)[:200]})"
    wrong = {split: count for split, count in counts.items() if count != split_sizes[split]}
    return f"its splits hold {wrong} rows, expected {split_sizes}" if wrong else None


def reusable_cache(folder: Path, expected: dict[str, Any]) -> bool:
    """Whether ``folder`` is a usable cache; a stale or damaged one is removed (with a warning) so that it is rebuilt."""
    remove_dead_cache_partials(folder)
    problem = cache_problem(folder, expected) or unreadable_because(folder, expected["split_sizes"])
    if problem is None:
        return True
    if folder.exists():
        rank_zero_warn(f"rebuilding the token cache {folder}: {problem}")
        shutil.rmtree(folder, ignore_errors=True)  # another process may be removing it too
    return False


def _partial_prefix(folder: Path) -> str:
    return f"{PARTIAL_PREFIX}{folder.name}-"


def remove_dead_cache_partials(folder: Path) -> None:
    """Temporary folders that this host's crashed processes left for this cache (never read anyway)."""
    remove_dead_partials(folder.parent, _partial_prefix(folder))


# -------------------------------------------------------------------------------------------- building


@torch.no_grad()
def encode_tokens(
    autoencoder, images: Dataset | torch.utils.data.Dataset, batch_size: int, num_workers: int, device: torch.device
) -> np.ndarray:
    """Hard-sign token ids (N, h, w) of every image of a split, in row order (``autoencoder.tokens``).

    Strict FP32: a hard sign flips on rounding near 0. ``images``: a transformed ``datasets`` split,
    or what ``HFImageDataModule`` serves for it (``DecodedImages``/``IndexedSplit``: rows ``{"image", "index"}``).
    """
    from datasets import Dataset

    rows = IndexedSplit(images) if isinstance(images, Dataset) else images
    grids = []
    with strict_fp32(), torch.autocast(device.type, enabled=False):
        for batch in ordered_loader(rows, batch_size, num_workers):
            grids.append(autoencoder.tokens(batch["image"].to(device)).cpu())
    return torch.cat(grids).numpy()


def build_token_cache(
    folder: Path,
    meta: dict[str, Any],
    encoder: Any,
    image_rows: Callable[[str], torch.utils.data.Dataset],
    batch_size: int,
    num_workers: int,
    device: torch.device,
    autoencoder: str,
) -> None:
    """Encode the images of every split of ``meta["split_sizes"]`` (``image_rows(split)``) and write the cache."""
    height, width = meta["grid_height"], meta["grid_width"]
    rank_zero_info(f"encoding {meta['split_sizes']} images into tokens with {autoencoder} on {device}")
    grids = {}
    for split in meta["split_sizes"]:
        grids[split] = encode_tokens(encoder, image_rows(split), batch_size, num_workers, device)
        if grids[split].shape[1:] != (height, width):
            raise RuntimeError(f"the autoencoder made {grids[split].shape[1:]} grids, its checkpoint says {(height, width)}")
    if not write_token_cache(folder, grids, meta):
        rank_zero_info(f"token cache {folder} was written meanwhile by another process; using it")


def write_token_cache(folder: Path, grids: dict[str, np.ndarray], meta: dict[str, Any]) -> bool:
    """Save the (N, h, w) grids of every split and ``meta`` as the cache ``folder``, atomically.

    Returns False when another process published a usable cache there meanwhile; raises when the one
    it published is not usable.
    """
    from datasets import Array2D, Dataset, DatasetDict, Features

    height, width = meta["grid_height"], meta["grid_width"]
    features = Features({"tokens": Array2D((height, width), meta["token_dtype"])})
    encoded = {split: Dataset.from_dict({"tokens": g.astype(meta["token_dtype"])}, features=features) for split, g in grids.items()}

    def fill(partial: Path) -> None:
        DatasetDict(encoded).save_to_disk(str(partial))
        (partial / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))

    published = atomic_folder(folder, fill, prefix=_partial_prefix(folder))
    if not published and (problem := cache_problem(folder, meta)) is not None:
        raise RuntimeError(f"token cache {folder} was written meanwhile by another process and is not usable: {problem}")
    return published


# -------------------------------------------------------------------------------------------- reading


def read_token_cache(folder: Path, splits: Iterable[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The stored (N, h, w) grids of ``splits`` (in their stored dtype) and the ``meta.json`` of the cache ``folder``.

    Damaged files are one line naming the folder (``prepare_data`` rebuilds such a cache; this is what a rank
    that only reads meets)."""
    from datasets import load_from_disk

    try:
        tokens = load_from_disk(str(folder))
        grids = {split: torch.from_numpy(tokens_as_numpy(tokens[split])) for split in splits}
        return grids, json.loads((folder / META_FILE).read_text())
    except DAMAGE_ERRORS as err:
        if not_damage(err):
            raise
        raise BadInput(
            f"token cache {folder} is damaged ({squeeze(err)[:200]}): it is only a cache; delete that folder"
            f" (rm -r {folder}) and run again, which rebuilds it"
        ) from err


def tokens_as_numpy(tokens: Dataset) -> np.ndarray:
    """The whole ``tokens`` column as one (N, h, w) array, straight from Arrow (no per-row Python)."""
    if tokens._indices is not None:
        tokens = tokens.flatten_indices()
    height, width = tokens.features["tokens"].shape
    chunks = [chunk.storage if hasattr(chunk, "storage") else chunk for chunk in tokens.data.column("tokens").chunks]
    flat = [chunk.flatten().flatten().to_numpy(zero_copy_only=False) for chunk in chunks]
    dtype = np.dtype(tokens.features["tokens"].dtype)
    return (np.concatenate(flat) if flat else np.zeros(0, dtype)).reshape(-1, height, width)

"""The token cache on disk: one ``DatasetDict`` folder with a ``meta.json`` per (images, checkpoint).

A folder is a cache only when it is complete and its ``meta.json`` matches what the data module
expects (``cache_problem`` says why not otherwise). It is written through ``runtime/atomic_files``:
under a temporary name, renamed when complete, so a crash or a full disk never leaves a folder
that a later run would take for a cache.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Array2D, Dataset, DatasetDict, Features

from runtime.atomic_files import PARTIAL_PREFIX, atomic_folder, remove_dead_partials

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


def _partial_prefix(folder: Path) -> str:
    return f"{PARTIAL_PREFIX}{folder.name}-"


def remove_dead_cache_partials(folder: Path) -> None:
    """Temporary folders that this host's crashed processes left for this cache (never read anyway)."""
    remove_dead_partials(folder.parent, _partial_prefix(folder))


def write_token_cache(folder: Path, grids: dict[str, np.ndarray], meta: dict[str, Any]) -> bool:
    """Save the (N, h, w) grids of every split and ``meta`` as the cache ``folder``, atomically.

    Returns False when another process published a usable cache there meanwhile; raises when the one
    it published is not usable.
    """
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

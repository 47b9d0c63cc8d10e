"""A ``path`` string -> the source's splits as a Hugging Face ``DatasetDict``, by what the path is.

``path`` may be, in the order they are tried:

- ``"sklearn-digits"``: the bundled digits (``bundled_images.py``), no network;
- ``"sample-photos-32"``: 32×32 RGB crops of photographs that installed packages ship, split by
  region into train/validation (``bundled_images.py``), no network;
- a ``.parquet`` / ``.arrow`` file, or a folder of them (split names come from the file names,
  e.g. ``train-00000-of-00001.parquet`` and ``test-*.parquet``; otherwise everything is "train");
- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
- a folder of image files, searched recursively (``imagefolder`` without labels; ``train/`` and
  ``test/`` sub-folders become splits, as do file names with a split word, e.g. ``test_001.png``);
- a Hugging Face Hub dataset id (``name`` or ``owner/name``), downloaded into ``cache_dir``.

Loaders that build an Arrow cache (parquet, imagefolder, hub) are meant to run first in
``prepare_data`` and again, as a cache hit, in ``setup`` on every rank. ``source_splits.py`` calls
this module and checks what it loaded.

Every failure is one line naming the culprit: the path or the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from datasets.exceptions import DatasetNotFoundError
from datasets.packaged_modules.imagefolder.imagefolder import IMAGE_EXTENSIONS

from datamodules.bundled_images import DIGITS_SOURCE, PHOTO_CROPS_SOURCE, load_digits_dataset, load_photo_crops_dataset
from datamodules.image_transforms import one_line

TABLE_FORMATS = {".parquet": "parquet", ".arrow": "arrow"}
"""File suffix -> ``datasets`` packaged builder, for single table files and folders of them."""

_IMAGE_SUFFIXES = frozenset(IMAGE_EXTENSIONS)
_SAVED_DATASET_MARKERS = ("dataset_dict.json", "state.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")

try:  # the split words ``datasets`` looks for in folder and file names when it infers splits
    from datasets.data_files import SPLIT_KEYWORDS as _HF_SPLIT_KEYWORDS

    _SPLIT_WORDS = sorted({str(word) for words in _HF_SPLIT_KEYWORDS.values() for word in words}, key=len, reverse=True)
except ImportError:  # pragma: no cover - moved in some release; this is the list of datasets 2.x-5.x
    _SPLIT_WORDS = ["validation", "evaluation", "training", "testing", "train", "valid", "test", "eval", "dev", "val"]
_SPLIT_WORD_IN_NAME = re.compile(rf"(?:^|[-._ 0-9])(?:{'|'.join(_SPLIT_WORDS)})(?:[-._ 0-9]|$)", re.IGNORECASE)
_SHARD_NAME = re.compile(r"-[0-9]{5}-of-[0-9]{5}")


def load_image_source(path: str, cache_dir: str | None = None) -> DatasetDict:
    """Load ``path`` (see the module docstring) as a ``DatasetDict``; a bare ``Dataset`` becomes split "train"."""
    if path == DIGITS_SOURCE:
        return DatasetDict({"train": load_digits_dataset()})
    if path == PHOTO_CROPS_SOURCE:
        return load_photo_crops_dataset()
    local = Path(path).expanduser()
    if local.exists():
        loaded = _load_local(local, cache_dir)
    elif _is_plausible_hub_id(path):
        loaded = _load_from_hub(path, cache_dir)
    else:
        raise FileNotFoundError(f"image source path {path!r} does not exist (and is not a Hub dataset id)")
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})


def _is_plausible_hub_id(path: str) -> bool:
    """``name`` or ``owner/name``, and not a typo of a local path (an existing first folder, a file suffix)."""
    if not _HUB_ID.match(path) or Path(path).suffix.lower() in TABLE_FORMATS.keys() | _IMAGE_SUFFIXES:
        return False
    owner = path.split("/")[0]
    return "/" not in path or not Path(owner).exists()


def _load_local(local: Path, cache_dir: str | None) -> Dataset | DatasetDict:
    """Dispatch on what is at ``local``: a table file, a saved dataset, a folder of tables or of images."""
    if local.is_file():
        table_format = TABLE_FORMATS.get(local.suffix.lower())
        if table_format is None:
            raise ValueError(f"image source file {local} is not a {'/'.join(TABLE_FORMATS)} file; pass its folder")
        return load_dataset(table_format, data_files=str(local), cache_dir=cache_dir)
    if any((local / marker).is_file() for marker in _SAVED_DATASET_MARKERS):
        return load_from_disk(str(local))
    suffix = _first_data_file_suffix(local)
    if suffix in TABLE_FORMATS:
        return load_dataset(TABLE_FORMATS[suffix], data_dir=str(local), cache_dir=cache_dir)
    if suffix in _IMAGE_SUFFIXES:
        # Without split names in it, ``datasets`` would glob ~66 split patterns over the whole tree
        # (seconds per 1000 files, on every setup) only to end at "train": **. Say so up front.
        data_files = None if names_a_split(local) else {"train": "**"}
        return load_dataset("imagefolder", data_dir=str(local), data_files=data_files, drop_labels=True, cache_dir=cache_dir)
    raise ValueError(f"image source folder {local} has no images, parquet/arrow files or save_to_disk dataset")


def _first_data_file_suffix(folder: Path) -> str | None:
    """Suffix of the first table or image file under ``folder`` (recursive, stops at the first hit)."""
    for _root, _dirs, files in os.walk(folder):
        for name in sorted(files):
            suffix = Path(name).suffix.lower()
            if suffix in TABLE_FORMATS or suffix in _IMAGE_SUFFIXES:
                return suffix
    return None


def names_a_split(folder: Path) -> bool:
    """Whether ``datasets`` could infer any split but "train" from the names under ``folder`` (one walk).

    A superset of its rules (``datasets.data_files``): a split word (train, val, test, ...) between
    separators in any folder or file name, a ``-00000-of-00001`` shard name, or a ``.eval`` file. Only when
    none occurs is the folder loaded as ``{"train": "**"}`` directly; otherwise ``datasets`` resolves the splits itself, as before.
    """
    for _root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            if _SPLIT_WORD_IN_NAME.search(name) or _SHARD_NAME.search(name) or name.endswith(".eval"):
                return True
    return False


def _load_from_hub(hub_id: str, cache_dir: str | None) -> DatasetDict:
    """Download (or reuse the cache of) a Hub dataset; a missing id or an offline cache miss is one line."""
    try:
        return load_dataset(hub_id, cache_dir=cache_dir)
    except (ConnectionError, DatasetNotFoundError) as err:
        cache = cache_dir or datasets.config.HF_DATASETS_CACHE
        if datasets.config.HF_HUB_OFFLINE:
            raise FileNotFoundError(
                f"Hub dataset {hub_id!r} is not in the cache {cache} and HF_HUB_OFFLINE=1 forbids downloading it"
            ) from err
        raise FileNotFoundError(f"Hub dataset {hub_id!r} could not be loaded: {one_line(err)}") from err

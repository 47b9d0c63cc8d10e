"""Turn a ``path`` string into Hugging Face image splits, and check that their images decode.

``path`` may be, in the order they are tried:

- ``"sklearn-digits"``: the bundled digits (``digits.py``), no network;
- ``"sample-photos-32"``: 32×32 RGB crops of photographs that installed packages ship, split by
  region into train/validation (``photo_crops.py``), no network;
- a ``.parquet`` / ``.arrow`` file, or a folder of them (split names come from the file names,
  e.g. ``train-00000-of-00001.parquet`` and ``test-*.parquet``; otherwise everything is "train");
- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
- a folder of image files, searched recursively (``imagefolder`` without labels; ``train/`` and
  ``test/`` sub-folders become splits, as do file names with a split word, e.g. ``test_001.png``);
- a Hugging Face Hub dataset id (``name`` or ``owner/name``), downloaded into ``cache_dir``.

Loaders that build an Arrow cache (parquet, imagefolder, hub) are meant to run first in
``prepare_data`` and again, as a cache hit, in ``setup`` on every rank.

Every failure is one line naming the culprit: the path, the split, the column or the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
from datasets import Dataset, DatasetDict, Image, load_dataset, load_from_disk
from datasets.exceptions import DatasetNotFoundError
from datasets.packaged_modules.imagefolder.imagefolder import IMAGE_EXTENSIONS
from lightning.pytorch.utilities import rank_zero_warn

from datamodules.digits import DIGITS_SOURCE, load_digits_dataset
from datamodules.photo_crops import PHOTO_CROPS_SOURCE, load_photo_crops_dataset
from datamodules.transforms import UndecodableImageError, decode_image, describe_image_value, one_line
from runtime.atomic_files import atomic_write

TABLE_FORMATS = {".parquet": "parquet", ".arrow": "arrow"}
"""File suffix -> ``datasets`` packaged builder, for single table files and folders of them."""

_IMAGE_SUFFIXES = frozenset(IMAGE_EXTENSIONS)
_SAVED_DATASET_MARKERS = ("dataset_dict.json", "state.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_SCAN_BATCH_ROWS = 256
_CHECKS_SUBDIR = Path("meps_ldh") / "image_checks"

try:  # the split words ``datasets`` looks for in folder and file names when it infers splits
    from datasets.data_files import SPLIT_KEYWORDS as _HF_SPLIT_KEYWORDS

    _SPLIT_WORDS = sorted({str(word) for words in _HF_SPLIT_KEYWORDS.values() for word in words}, key=len, reverse=True)
except ImportError:  # pragma: no cover - moved in some release; this is the list of datasets 2.x-5.x
    _SPLIT_WORDS = ["validation", "evaluation", "training", "testing", "train", "valid", "test", "eval", "dev", "val"]
_SPLIT_WORD_IN_NAME = re.compile(rf"(?:^|[-._ 0-9])(?:{'|'.join(_SPLIT_WORDS)})(?:[-._ 0-9]|$)", re.IGNORECASE)
_SHARD_NAME = re.compile(r"-[0-9]{5}-of-[0-9]{5}")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


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
    separators in any folder or file name, a ``-00000-of-00001`` shard name, or a ``.eval`` file. Only when none occurs is the folder loaded as
    ``{"train": "**"}`` directly; otherwise ``datasets`` resolves the splits itself, as before.
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


# --------------------------------------------------------------------------------------------
# Image column
# --------------------------------------------------------------------------------------------


def _is_image_struct(feature: object) -> bool:
    """A ``{bytes, path}`` struct without ``datasets`` metadata, e.g. parquet written by pyarrow/pandas."""
    return isinstance(feature, dict) and "bytes" in feature and set(feature) <= {"bytes", "path"}


def _is_image_feature(feature: object) -> bool:
    return isinstance(feature, Image) or _is_image_struct(feature)


def resolve_image_column(dataset: Dataset, image_column: str | None, where: str) -> str:
    """The requested column if it holds images, else the first image column; ``where`` names the split in errors."""
    features = dataset.features
    if image_column is not None:
        if image_column not in features:
            raise ValueError(f"image column {image_column!r} not in {where}; available columns: {list(features)}")
        if not _is_image_feature(features[image_column]):
            raise ValueError(
                f"column {image_column!r} of {where} holds {features[image_column]}, not images"
                " (an Image() feature or {bytes, path} structs)"
            )
        return image_column
    for name, feature in features.items():
        if _is_image_feature(feature):
            return name
    raise ValueError(f"no image column in {where}; columns: {dict(features)}")


def with_undecoded_images(dataset: Dataset, image_column: str) -> Dataset:
    """Cast the image column to ``Image(decode=False)``: our transform decodes, so errors can name the file.

    This also turns metadata-less ``{bytes, path}`` structs into a proper ``Image`` column. The
    cast rewrites only the schema, not the image data.
    """
    if dataset.features[image_column] == Image(decode=False):
        return dataset
    return dataset.cast_column(image_column, Image(decode=False))


# --------------------------------------------------------------------------------------------
# Decodability check (cached)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UndecodableRow:
    """One image that failed to decode: its row in the source split, its file name and the one-line error."""

    row: int
    name: str
    message: str


def scan_undecodable_rows(dataset: Dataset, image_column: str) -> list[UndecodableRow]:
    """Decode every image once and list the failures, so that training never crashes mid-epoch."""
    images = dataset.select_columns([image_column])
    failures = []
    for start in range(0, len(images), _SCAN_BATCH_ROWS):
        for offset, value in enumerate(images[start : start + _SCAN_BATCH_ROWS][image_column]):
            try:
                decode_image(value)
            except UndecodableImageError as err:
                failures.append(UndecodableRow(start + offset, describe_image_value(value), str(err)))
    return failures


def _check_cache_file(dataset: Dataset, image_column: str, cache_dir: str | None) -> Path | None:
    """Where the scan result of an on-disk dataset is kept; ``None`` for in-memory data (no stable identity)."""
    if not dataset.cache_files:
        return None
    root = Path(cache_dir or datasets.config.HF_DATASETS_CACHE)
    return root / _CHECKS_SUBDIR / f"{dataset._fingerprint}-{image_column}.json"


def cached_undecodable_rows(dataset: Dataset, image_column: str, cache_dir: str | None) -> list[UndecodableRow]:
    """``scan_undecodable_rows``, remembered on disk by dataset fingerprint so the pass runs once per dataset.

    ``prepare_data`` pays for the scan; ``setup`` on every rank then reads the file. The file is
    written atomically, so ranks or nodes sharing a cache folder never read half a file.
    """
    cache_file = _check_cache_file(dataset, image_column, cache_dir)
    if cache_file is not None and cache_file.is_file():
        return [UndecodableRow(**row) for row in json.loads(cache_file.read_text())["undecodable"]]
    failures = scan_undecodable_rows(dataset, image_column)
    if cache_file is not None:
        record = {"rows": len(dataset), "undecodable": [asdict(row) for row in failures]}
        atomic_write(cache_file, lambda file: file.write(json.dumps(record).encode()))
    return failures


def select_rows(dataset: Dataset, rows: Sequence[int], purpose: str) -> Dataset:
    """``dataset.select(rows)`` with the indices kept in memory and a cheap deterministic fingerprint.

    In memory: the indices of a split are small, and ``select`` would otherwise write an indices
    file next to the data (inside a ``save_to_disk`` folder, possibly read-only). The fingerprint is
    derived from the parent's and the rows, so it is identical on every rank and every run.
    """
    digest = hashlib.sha256(f"{dataset._fingerprint}|{purpose}|".encode())
    digest.update(np.asarray(rows, dtype=np.int64).tobytes())
    return dataset.select(rows, keep_in_memory=True, new_fingerprint=digest.hexdigest()[:16])


def drop_undecodable_rows(
    dataset: Dataset, image_column: str, where: str, skip_corrupt: bool, cache_dir: str | None
) -> Dataset:
    """Raise on the first undecodable image (naming it), or with ``skip_corrupt`` drop them all and warn with the count."""
    failures = cached_undecodable_rows(dataset, image_column, cache_dir)
    if not failures:
        return dataset
    first = failures[0]
    if not skip_corrupt:
        raise ValueError(
            f"{len(failures)} undecodable image(s) in {where}, first at row {first.row}: {first.message}"
            " (fix the file or set skip_corrupt=True)"
        )
    rank_zero_warn(f"skip_corrupt: dropped {len(failures)} undecodable image(s) from {where}, first: {first.name}")
    bad_rows = {failure.row for failure in failures}
    return select_rows(dataset, [row for row in range(len(dataset)) if row not in bad_rows], "drop_undecodable")

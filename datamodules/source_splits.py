"""Step 1 of the image path: a ``path`` string -> the source splits of "train", "val", "test", every image checked.

``load_source_splits`` loads the source (``image_sources.py``), picks the source split of each
role ("train" always; "val"/"test" when named by ``val_split``/``test_split``, or automatically a
split named validation/valid/val and test), finds the image column, casts it undecoded (our
transform decodes, so errors name the file) and decodes every image once: an undecodable image
stops the run, naming it, or with ``skip_corrupt`` is dropped with a warning. The decodability
check is cached on disk by dataset fingerprint, so it runs once per dataset, in ``prepare_data``.

Every failure is one line naming the culprit: the path, the split, the column or the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from lightning.pytorch.utilities import rank_zero_warn

from datamodules.image_transforms import UndecodableImageError, decode_image, describe_image_value
from datamodules.rows import select_rows
from runtime.atomic_files import atomic_write

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

SPLITS = ("train", "val", "test")
SOURCE_SPLIT_ALIASES = {"val": ("validation", "valid", "val"), "test": ("test",)}
"""Source split names used automatically for "val" and "test" when ``val_split``/``test_split`` are unset."""

_SCAN_BATCH_ROWS = 256
_CHECKS_SUBDIR = Path("meps_ldh") / "image_checks"


class SourceSplits(NamedTuple):
    """What ``load_source_splits`` returns: the image column and the checked source split of each role found."""

    image_column: str
    splits: dict[str, Dataset]


def where(path: str, source_split: str) -> str:
    """How errors and warnings name a source split."""
    return f"split {source_split!r} of {path}"


def load_source_splits(
    path: str,
    cache_dir: str | None,
    image_column: str | None,
    train_split: str,
    val_split: str | None,
    test_split: str | None,
    skip_corrupt: bool,
) -> SourceSplits:
    """Load ``path``, map the roles to its splits, resolve the image column and check every image (module docstring)."""
    from datamodules.image_sources import load_image_source  # here: it imports `datasets` (start-up of every command)

    source = load_image_source(path, cache_dir)
    names = source_split_names(source, path, train_split, val_split, test_split)
    column = resolve_image_column(source[train_split], image_column, where(path, train_split))
    splits = {role: checked_source_split(source[name], column, where(path, name), skip_corrupt, cache_dir) for role, name in names.items()}
    return SourceSplits(column, splits)


def source_split_names(source: DatasetDict, path: str, train_split: str, val_split: str | None, test_split: str | None) -> dict[str, str]:
    """Map roles to source split names: "train" always, "val"/"test" when given or found by alias."""
    names = {"train": _require_source_split(source, path, train_split, "train_split")}
    for role, requested in (("val", val_split), ("test", test_split)):
        if requested is not None:
            names[role] = _require_source_split(source, path, requested, f"{role}_split")
        else:
            found = [alias for alias in SOURCE_SPLIT_ALIASES[role] if alias in source and alias != train_split]
            names.update({role: found[0]} if found else {})
    return names


def _require_source_split(source: DatasetDict, path: str, name: str, argument: str) -> str:
    if name not in source:
        raise ValueError(f"{argument}={name!r} is not a split of {path}; it has {list(source)}")
    return name


def checked_source_split(dataset: Dataset, image_column: str, where: str, skip_corrupt: bool, cache_dir: str | None) -> Dataset:
    """One source split with its image column validated, undecoded, and its broken images handled."""
    split = with_undecoded_images(dataset, resolve_image_column(dataset, image_column, where))
    split = drop_undecodable_rows(split, image_column, where, skip_corrupt, cache_dir)
    if len(split) == 0:
        raise ValueError(f"{where} is empty after dropping undecodable images")
    return split


# -------------------------------------------------------------------------------------------- image column


def _is_image_struct(feature: object) -> bool:
    """A ``{bytes, path}`` struct without ``datasets`` metadata, e.g. parquet written by pyarrow/pandas."""
    return isinstance(feature, dict) and "bytes" in feature and set(feature) <= {"bytes", "path"}


def _is_image_feature(feature: object) -> bool:
    from datasets import Image

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
    from datasets import Image

    if dataset.features[image_column] == Image(decode=False):
        return dataset
    return dataset.cast_column(image_column, Image(decode=False))


# -------------------------------------------------------------------------------------------- decodability check (cached)


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
    import datasets

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

        def write(file: BinaryIO) -> None:
            file.write(json.dumps(record).encode())

        atomic_write(cache_file, write)
    return failures


def drop_undecodable_rows(dataset: Dataset, image_column: str, where: str, skip_corrupt: bool, cache_dir: str | None) -> Dataset:
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

"""Bad input to the image data module: one line naming the path, column, split or argument."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

import datamodules.source_splits as source_splits
from datamodules import HFImageDataModule
from tests.datamodules.images import (
    hf_image_dataset,
    one_line_error,
    private_offline_hf_cache,  # noqa: F401  (autouse: every test reads a private offline cache)
    ready,
    write_image_folder,
)


@pytest.mark.parametrize("path", ["/no/such/folder", "./missing_images", "~/no_such_dir_xyz", "images.parquet"])
def test_missing_local_path_is_a_file_not_found_error(path):
    with pytest.raises(FileNotFoundError) as excinfo:
        ready(path)
    assert repr(path) in one_line_error(excinfo)


def test_path_under_an_existing_folder_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ready("data/cifar")


def test_offline_hub_id_not_in_cache_fails_fast(offline_hf_cache):
    with pytest.raises(FileNotFoundError) as excinfo:
        ready("someone/not-a-cached-dataset")
    message = one_line_error(excinfo)
    assert "'someone/not-a-cached-dataset'" in message and "HF_HUB_OFFLINE=1" in message


def test_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError) as excinfo:
        ready(tmp_path / "empty")
    assert str(tmp_path / "empty") in one_line_error(excinfo) and "no images" in str(excinfo.value)


def test_unknown_image_column_lists_the_columns(tmp_path):
    hf_image_dataset(4).save_to_disk(tmp_path / "saved")
    with pytest.raises(ValueError) as excinfo:
        ready(tmp_path / "saved", image_column="picture")
    message = one_line_error(excinfo)
    assert "'picture'" in message and "['image', 'label']" in message
    with pytest.raises(ValueError, match="'label'.*not images"):
        ready(tmp_path / "saved", image_column="label")


def test_source_without_image_column(tmp_path):
    Dataset.from_dict({"text": ["a", "b"]}).save_to_disk(tmp_path / "saved")
    with pytest.raises(ValueError) as excinfo:
        ready(tmp_path / "saved")
    assert "no image column" in one_line_error(excinfo) and "text" in str(excinfo.value)


def test_unknown_source_split_lists_the_splits(tmp_path):
    DatasetDict({"train": hf_image_dataset(4)}).save_to_disk(tmp_path / "saved")
    with pytest.raises(ValueError) as excinfo:
        ready(tmp_path / "saved", val_split="holdout")
    assert "val_split='holdout'" in one_line_error(excinfo) and "['train']" in str(excinfo.value)


def test_missing_test_split_names_it():
    datamodule = ready("sklearn-digits")
    with pytest.raises(ValueError) as excinfo:
        datamodule.test_dataloader()
    assert "'test'" in one_line_error(excinfo) and "test_fraction" in str(excinfo.value)


def corrupt_folder(folder: Path) -> Path:
    """An image folder in which ``img_03.png`` is a truncated PNG."""
    write_image_folder(folder)
    broken = folder / "nested" / "img_03.png"
    broken.write_bytes(broken.read_bytes()[:60])
    return broken


def test_corrupt_image_is_named(tmp_path):
    broken = corrupt_folder(tmp_path / "images")
    with pytest.raises(ValueError) as excinfo:
        ready(tmp_path / "images")
    assert str(broken) in one_line_error(excinfo) and "skip_corrupt=True" in str(excinfo.value)


def test_corrupt_image_is_skipped_with_a_count_and_the_check_is_cached(tmp_path, monkeypatch):
    corrupt_folder(tmp_path / "images")
    with pytest.warns(UserWarning, match="dropped 1 undecodable image"):
        datamodule = ready(tmp_path / "images", skip_corrupt=True, val_fraction=0.0)
    assert len(datamodule.images_uint8()) == 11

    def scan_again(*args):
        raise AssertionError("the decodability check should come from its cache")

    monkeypatch.setattr(source_splits, "scan_undecodable_rows", scan_again)
    with pytest.warns(UserWarning, match="dropped 1"):
        assert len(ready(tmp_path / "images", skip_corrupt=True, val_fraction=0.0).dataset("train")) == 11


def test_split_left_empty_by_skipping_is_named(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "only.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.warns(UserWarning), pytest.raises(ValueError) as excinfo:
        ready(folder, skip_corrupt=True)
    assert "split 'train'" in one_line_error(excinfo) and "empty" in str(excinfo.value)


@pytest.mark.parametrize(
    "kwargs, culprit",
    [
        ({"channels": 4}, "channels"),
        ({"image_size": 0}, "image_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction + test_fraction"),
        ({"predict_split": "holdout"}, "predict_split"),
        ({"max_train_samples": 0}, "max_train_samples"),
    ],
)
def test_bad_arguments_are_rejected_at_construction(kwargs, culprit):
    with pytest.raises(ValueError) as excinfo:
        HFImageDataModule(**kwargs)
    assert one_line_error(excinfo).startswith(culprit)

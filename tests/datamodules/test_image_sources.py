"""Every image source kind (digits, image folders, parquet, arrow, save_to_disk) and how splits are named."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets import Dataset, DatasetDict, Features, Image
from PIL import Image as PILImage

import datamodules.image_sources as image_sources
from datamodules.bundled_images import digits_to_uint8
from tests.datamodules.images import (
    MIXED_IMAGES,
    assert_batch_contract,
    hf_image_dataset,
    image_structs,
    private_offline_hf_cache,  # noqa: F401  (autouse: every test reads a private offline cache)
    random_image,
    ready,
    write_image_folder,
)


def test_digits_source_has_all_1797_images_scaled_to_uint8():
    datamodule = ready("sklearn-digits", val_fraction=0.1, batch_size=64)
    train, val = datamodule.images_uint8("train"), datamodule.images_uint8("val")
    assert train.shape[1:] == (1, 8, 8) and train.dtype == torch.uint8
    assert len(train) + len(val) == 1797 and len(val) == 180
    assert int(torch.cat([train, val]).max()) == 255 and int(torch.cat([train, val]).min()) == 0
    assert digits_to_uint8(np.array([0, 8, 16])).tolist() == [0, 128, 255]
    assert_batch_contract(next(iter(datamodule.train_dataloader())), channels=1, image_size=8)


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_with_mixed_modes_and_sizes(tmp_path, channels):
    datamodule = ready(write_image_folder(tmp_path / "images"), image_size=6, channels=channels, val_fraction=0.25)
    assert len(datamodule.dataset("train")) == 9 and len(datamodule.dataset("val")) == 3
    assert datamodule.images_uint8().shape == (9, channels, 6, 6)
    assert_batch_contract(next(iter(datamodule.val_dataloader())), channels, 6)


def test_single_parquet_file_without_hf_metadata(tmp_path):
    """A plain pyarrow table: the image column is a bare {bytes, path} struct, found and cast to Image()."""
    table = pa.table({"label": list(range(10)), "pixels": image_structs(10)})
    pq.write_table(table, tmp_path / "images.parquet")
    datamodule = ready(tmp_path / "images.parquet", val_fraction=0.2)
    assert datamodule.image_column == "pixels"
    assert datamodule.images_uint8().shape == (8, 1, 8, 8)


def test_arrow_stream_file(tmp_path):
    table = pa.table({"img": image_structs(5)})
    with pa.OSFile(str(tmp_path / "data.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert len(ready(tmp_path / "data.arrow", val_fraction=0.0).dataset("train")) == 5


def test_parquet_folder_takes_split_names_from_file_names(tmp_path):
    """``train-*.parquet`` / ``test-*.parquet`` (the Hub layout) give the source's own test split."""
    folder = tmp_path / "parquet" / "data"
    folder.mkdir(parents=True)
    for split, count in (("train", 10), ("test", 4)):
        pq.write_table(pa.table({"img": image_structs(count)}), folder / f"{split}-00000-of-00001.parquet")
    datamodule = ready(tmp_path / "parquet", val_fraction=0.2, predict_split="test")
    assert datamodule.split_names == ["train", "val", "test"]
    assert [len(datamodule.dataset(s)) for s in ("train", "val", "test")] == [8, 2, 4]
    assert_batch_contract(next(iter(datamodule.test_dataloader())), 1, 8)
    assert len(datamodule.predict_dataloader().dataset) == 4


def test_save_to_disk_dataset(tmp_path):
    hf_image_dataset(6).save_to_disk(tmp_path / "saved")
    datamodule = ready(tmp_path / "saved", image_size=4, channels=3, val_fraction=0.0)
    assert datamodule.split_names == ["train"] and datamodule.val_dataloader() == []
    assert datamodule.images_uint8().shape == (6, 3, 4, 4)


def test_save_to_disk_dataset_dict_uses_its_validation_split(tmp_path):
    DatasetDict({"train": hf_image_dataset(8), "validation": hf_image_dataset(3)}).save_to_disk(tmp_path / "saved")
    datamodule = ready(tmp_path / "saved", val_fraction=0.5)  # ignored: the source has a val split
    assert [len(datamodule.dataset(s)) for s in datamodule.split_names] == [8, 3]


def test_explicit_image_column_overrides_auto_detection(tmp_path):
    black, white = (PILImage.new("L", (8, 8), value) for value in (0, 255))
    features = Features({"first": Image(), "second": Image()})
    Dataset.from_dict({"first": [black] * 4, "second": [white] * 4}, features=features).save_to_disk(tmp_path / "saved")
    auto = ready(tmp_path / "saved", val_fraction=0.0)
    explicit = ready(tmp_path / "saved", val_fraction=0.0, image_column="second")
    assert auto.image_column == "first" and int(auto.images_uint8().max()) == 0
    assert explicit.image_column == "second" and int(explicit.images_uint8().min()) == 255
    assert auto.source_fingerprint() != explicit.source_fingerprint()


def test_image_folder_split_subfolders_and_file_names_still_become_splits(tmp_path):
    write_image_folder(tmp_path / "by_folder" / "train", MIXED_IMAGES[:8])
    write_image_folder(tmp_path / "by_folder" / "test", MIXED_IMAGES[:4])
    datamodule = ready(tmp_path / "by_folder", val_fraction=0.25, predict_split="test")
    assert [len(datamodule.dataset(s)) for s in datamodule.split_names] == [6, 2, 4]
    by_name = tmp_path / "by_name"
    by_name.mkdir()
    for i in range(6):
        random_image("L", 8, 8).save(by_name / f"{'test' if i < 2 else 'train'}_{i}.png")
    assert [len(ready(by_name, val_fraction=0.0).dataset(s)) for s in ("train", "test")] == [4, 2]


@pytest.mark.parametrize(
    "names, expected",
    [
        (["a.png", "nested/b.png", "contest/x.png", "trains.png", "pretest.png"], False),
        (["train/a.png"], True),
        (["x/Validation/a.png"], True),
        (["test_01.png"], True),
        (["img.val.png"], True),
        (["data/foo-00000-of-00001.png"], True),
    ],
)
def test_names_a_split_is_a_superset_of_the_datasets_split_rules(tmp_path, names, expected):
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert image_sources.names_a_split(tmp_path) is expected


def test_split_free_image_folder_skips_the_split_pattern_search(tmp_path, monkeypatch):
    """Without split names the folder is loaded as {"train": "**"}: one glob instead of ~66 per setup."""
    calls, load_dataset = [], image_sources.load_dataset

    def spying(*args, **kwargs):
        calls.append(kwargs.get("data_files"))
        return load_dataset(*args, **kwargs)

    monkeypatch.setattr(image_sources, "load_dataset", spying)
    folder = write_image_folder(tmp_path / "images")
    datamodule = ready(folder, val_fraction=0.25)
    assert calls == [{"train": "**"}]  # prepare_data and setup share one build
    assert len(datamodule.dataset("train")) + len(datamodule.dataset("val")) == 12
    assert ready(folder, val_fraction=0.25).source_fingerprint() == datamodule.source_fingerprint()

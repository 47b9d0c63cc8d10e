"""HFImageDataModule and its sources/transforms: every source kind, split rules, batch contract, bad input.

Nothing downloads: the Hub is switched off and the ``datasets`` cache points into ``tmp_path``.
Sources are tiny and written by the tests themselves.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets import Dataset, DatasetDict, Features, Image, Value
from lightning.pytorch import LightningModule
from PIL import Image as PILImage

import datamodules.decoded as decoded
import datamodules.hf_images as hf_images
import datamodules.image_sources as image_sources
from datamodules import HFImageDataModule
from datamodules.decoded import DecodedImages
from datamodules.rows import IndexedSplit, collate_rows
from datamodules.digits import digits_to_uint8
from datamodules.hf_images import per_device_batch_size
from datamodules.transforms import (
    ImageBatchTransform,
    ImageToUint8,
    UndecodableImageError,
    convert_channels,
    resize_and_center_crop,
    uint8_to_signed_unit,
)

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture(autouse=True)
def private_offline_hf_cache(offline_hf_cache):
    """Every test here runs offline with its own HF cache (fixture in conftest)."""
    return offline_hf_cache


def random_image(mode: str, width: int, height: int) -> PILImage.Image:
    """A random image in any of L, RGB, RGBA and P (P via quantizing random RGB)."""
    bands = {"L": 1, "RGB": 3, "RGBA": 4, "P": 3}[mode]
    pixels = RNG.integers(0, 256, (height, width, bands), dtype=np.uint8).squeeze(-1 if bands == 1 else None)
    image = PILImage.fromarray(pixels)
    return image.quantize(16) if mode == "P" else image


def png_bytes(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


MIXED_IMAGES = [("L", 10, 12), ("RGB", 16, 9), ("RGBA", 7, 7), ("P", 12, 20)] * 3
"""12 images of mixed modes and sizes (none square at the test size), as in a messy real folder."""


def write_image_folder(folder: Path, specs=MIXED_IMAGES) -> Path:
    for i, (mode, width, height) in enumerate(specs):
        target = folder / ("nested" if i % 2 else "") / f"img_{i:02d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        random_image(mode, width, height).save(target)
    return folder


def image_structs(count: int, size: int = 8) -> list[dict]:
    return [{"bytes": png_bytes(random_image("L", size, size)), "path": None} for _ in range(count)]


def hf_image_dataset(count: int) -> Dataset:
    images = [random_image("RGB", 9, 9) for _ in range(count)]
    return Dataset.from_dict({"image": images, "label": list(range(count))}, features=Features({"image": Image(), "label": Value("int64")}))


def ready(path, cache_dir=None, **kwargs) -> HFImageDataModule:
    """A prepared and set-up datamodule, as Lightning would leave it before the first batch."""
    kwargs.setdefault("batch_size", 4)
    datamodule = HFImageDataModule(path=str(path), cache_dir=str(cache_dir) if cache_dir else None, **kwargs)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def assert_batch_contract(batch: dict, channels: int, image_size: int) -> None:
    assert set(batch) == {"image", "index"}
    images, index = batch["image"], batch["index"]
    assert images.dtype == torch.float32 and images.shape[1:] == (channels, image_size, image_size)
    assert index.dtype == torch.int64 and index.shape == (images.shape[0],)
    assert images.min() >= -1.0 and images.max() <= 1.0


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------ sources


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


# ------------------------------------------------------------------------------------ transforms


def test_alpha_is_composited_on_white_and_16_bit_is_scaled():
    transparent = PILImage.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert np.array(convert_channels(transparent, 3)).tolist() == [[[255] * 3] * 2] * 2
    assert np.array(convert_channels(PILImage.new("LA", (2, 2), (0, 255)), 1)).max() == 0  # opaque black stays
    sixteen_bit = PILImage.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    assert np.array(convert_channels(sixteen_bit, 1)).tolist() == [[0, 255]]
    assert convert_channels(random_image("P", 3, 3), 1).mode == "L"


def test_resize_shorter_side_then_center_crop():
    wide = np.zeros((4, 12), dtype=np.uint8)
    wide[:, 4:8] = 255  # white center third
    cropped = resize_and_center_crop(PILImage.fromarray(wide), 4)
    assert cropped.size == (4, 4) and np.array(cropped).min() == 255
    assert resize_and_center_crop(PILImage.new("L", (3, 5)), 8).size == (8, 8)  # upscales too


def test_transforms_pickle_and_produce_signed_unit_range():
    transform = ImageBatchTransform("image", image_size=5, channels=3)
    restored = pickle.loads(pickle.dumps(transform))
    batch = {"image": [{"bytes": png_bytes(random_image("RGBA", 9, 6)), "path": None}]}
    output, expected = restored(batch)["image"][0], transform(batch)["image"][0]
    assert output.shape == (3, 5, 5) and output.dtype == torch.float32 and torch.equal(output, expected)
    assert pickle.loads(pickle.dumps(ImageToUint8(5, 1))).describe() == ImageToUint8(5, 1).describe()


def test_undecodable_image_error_names_the_file(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(png_bytes(random_image("RGB", 8, 8))[:40])
    with pytest.raises(UndecodableImageError) as excinfo:
        ImageToUint8(8, 3)({"bytes": None, "path": str(broken)})
    assert str(broken) in one_line_error(excinfo)


# ------------------------------------------------------------------------------------ splits and batches


def test_split_is_deterministic_across_instances_and_depends_on_the_seed():
    first, second = ready("sklearn-digits"), ready("sklearn-digits")
    other_seed = ready("sklearn-digits", split_seed=1)
    assert torch.equal(first.images_uint8("val"), second.images_uint8("val"))
    assert first.source_fingerprint() == second.source_fingerprint() != other_seed.source_fingerprint()
    assert not torch.equal(first.images_uint8("val"), other_seed.images_uint8("val"))


def test_max_train_samples_keeps_a_seeded_subset():
    datamodule = ready("sklearn-digits", max_train_samples=50)
    assert len(datamodule.dataset("train")) == 50 and len(datamodule.dataset("val")) == 180


def test_global_batch_is_divided_by_world_size():
    datamodule = HFImageDataModule(batch_size=128)
    datamodule.trainer = SimpleNamespace(world_size=4)  # what setup reads from a real Trainer
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert datamodule.per_device_batch_size == 32 and loader.batch_size == 32 and loader.drop_last
    with pytest.raises(ValueError) as excinfo:
        per_device_batch_size(128, 3)
    assert "batch_size=128" in one_line_error(excinfo) and "world_size=3" in str(excinfo.value)


def test_split_smaller_than_a_batch_keeps_its_last_batch(tmp_path):
    datamodule = ready(write_image_folder(tmp_path / "images"), batch_size=64, val_fraction=0.0)
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 1 and len(batches[0]["index"]) == 12


def test_dataloader_with_two_workers_matches_the_reference_images():
    datamodule = ready("sklearn-digits", batch_size=32, num_workers=2, max_train_samples=96)
    reference = datamodule.images_uint8()
    loader = datamodule.train_dataloader()
    assert loader.persistent_workers
    seen = []
    for batch in loader:
        assert_batch_contract(batch, 1, 8)
        assert torch.equal(batch["image"], reference[batch["index"]].float() / 127.5 - 1)
        seen.extend(batch["index"].tolist())
    assert sorted(seen) == list(range(96))


def test_index_wrapper_pickles_with_its_transform():
    datamodule = ready("sklearn-digits", max_train_samples=10)
    wrapped = pickle.loads(pickle.dumps(IndexedSplit(datamodule.dataset("train"))))
    example = wrapped[3]
    assert example["index"] == 3 and example["image"].shape == (1, 8, 8)


def test_lightning_trainer_runs_on_the_datamodule(tmp_path):
    from lightning.pytorch import LightningModule, Trainer

    class MeanImage(LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            assert batch["image"].shape == (16, 1, 8, 8)
            return ((batch["image"] - self.weight) ** 2).mean()

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", ((batch["image"] - self.weight) ** 2).mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = Trainer(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(MeanImage(), datamodule=HFImageDataModule(batch_size=16))
    assert trainer.global_step == 2 and "val/loss" in trainer.callback_metrics


# ------------------------------------------------------------------------------------ in-memory serving


def all_batches(loader, seed: int = 0) -> list[dict]:
    torch.manual_seed(seed)  # the RandomSampler draws its order from the global generator
    return list(loader)


@pytest.mark.parametrize("source", ["digits", "folder"])
def test_in_memory_batches_equal_the_lazy_batches(tmp_path, source):
    path, kwargs = ("sklearn-digits", {}) if source == "digits" else (write_image_folder(tmp_path / "images"), {"image_size": 6, "channels": 3})
    lazy = ready(path, in_memory=False, val_fraction=0.25, batch_size=4, **kwargs)
    memory = ready(path, in_memory=True, val_fraction=0.25, batch_size=4, **kwargs)
    assert isinstance(lazy.train_dataloader().dataset, IndexedSplit)
    assert isinstance(memory.train_dataloader().dataset, DecodedImages)
    for loader in ("train_dataloader", "val_dataloader"):
        expected, served = all_batches(getattr(lazy, loader)()), all_batches(getattr(memory, loader)())
        assert len(served) == len(expected) > 0
        for ours, theirs in zip(served, expected):
            assert set(ours) == set(theirs) == {"image", "index"}
            assert ours["image"].dtype == theirs["image"].dtype == torch.float32
            assert ours["index"].dtype == theirs["index"].dtype == torch.int64
            assert torch.equal(ours["image"], theirs["image"]) and torch.equal(ours["index"], theirs["index"])
    for split in ("train", "val"):
        assert torch.equal(memory.images_uint8(split), lazy.images_uint8(split))
    single = memory.train_dataloader().dataset[2]  # per-example access, e.g. through a wrapper dataset
    assert single["index"] == 2 and torch.equal(single["image"], lazy.dataset("train")[2]["image"])
    every_value = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    assert torch.equal(DecodedImages(every_value)[0]["image"], uint8_to_signed_unit(every_value[0]))


def test_in_memory_by_default_when_the_split_fits_the_budget(monkeypatch):
    assert isinstance(ready("sklearn-digits").train_dataloader().dataset, DecodedImages)
    monkeypatch.setattr(hf_images, "IN_MEMORY_MAX_BYTES", 50_000)  # val: 180 * 64 bytes fits, train: 1617 * 64 does not
    datamodule = ready("sklearn-digits")
    assert isinstance(datamodule.train_dataloader().dataset, IndexedSplit)
    assert isinstance(datamodule.val_dataloader().dataset, DecodedImages)


def test_split_is_decoded_once_and_images_uint8_is_the_served_tensor(monkeypatch):
    decoded_rows, decode = [], decoded.decode_split

    def counting(dataset, *args):
        decoded_rows.append(len(dataset))
        return decode(dataset, *args)

    monkeypatch.setattr(decoded, "decode_split", counting)
    datamodule = ready("sklearn-digits", batch_size=64)
    assert decoded_rows == []  # in-memory data: decoded on first use, not in prepare_data/setup
    for _ in range(2):
        for _batch in datamodule.train_dataloader():
            pass
    served = datamodule.train_dataloader().dataset
    assert datamodule.images_uint8() is served.images and datamodule.images_uint8() is served.images
    datamodule.val_dataloader()
    assert decoded_rows == [1617, 180]


def decoded_cache_dir(cache: Path, datamodule: HFImageDataModule) -> Path:
    return cache / "meps_ldh" / "decoded" / datamodule.source_fingerprint()


def test_splits_on_disk_are_decoded_once_per_machine_and_reused(tmp_path, monkeypatch):
    folder, cache = write_image_folder(tmp_path / "images"), tmp_path / "cache"
    first = ready(folder, cache, image_size=6, channels=3, val_fraction=0.25)  # prepare_data writes the cache
    files = decoded_cache_dir(cache, first)
    assert sorted(path.name for path in files.iterdir()) == ["train.npy", "val.npy"]  # no partial file left
    assert np.load(files / "train.npy").shape == (9, 3, 6, 6)
    reference = all_batches(first.train_dataloader())

    def no_decoding(*args):
        raise AssertionError("the decoded images should come from their cache")

    monkeypatch.setattr(decoded, "decode_split", no_decoding)
    second = ready(folder, cache, image_size=6, channels=3, val_fraction=0.25)
    served = second.train_dataloader().dataset
    assert served.path == files / "train.npy"
    for ours, theirs in zip(all_batches(second.train_dataloader()), reference, strict=True):
        assert torch.equal(ours["image"], theirs["image"]) and torch.equal(ours["index"], theirs["index"])
    assert torch.equal(second.images_uint8("val"), first.images_uint8("val"))


def test_unusable_decoded_cache_is_decoded_again(tmp_path):
    folder, cache = write_image_folder(tmp_path / "images"), tmp_path / "cache"
    first = ready(folder, cache, val_fraction=0.25)
    train_file = decoded_cache_dir(cache, first) / "train.npy"
    np.save(tmp_path / "other.npy", np.zeros((3, 1, 8, 8), np.uint8))  # another row count, e.g. not written by us
    (tmp_path / "other.npy").replace(train_file)  # never in place: ``first`` maps the file
    with pytest.warns(UserWarning, match="decoding again"):
        second = ready(folder, cache, val_fraction=0.25)
    assert torch.equal(second.images_uint8(), first.images_uint8())
    assert np.load(train_file).shape == (9, 1, 8, 8)


def test_failed_cache_write_leaves_no_file_and_serves_from_memory(tmp_path, monkeypatch):
    folder, cache = write_image_folder(tmp_path / "images"), tmp_path / "cache"
    save = np.save

    def disk_full(file, array, **kwargs):
        save(file, array[: len(array) // 2], **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decoded.np, "save", disk_full)
    with pytest.warns(UserWarning, match="from memory.*No space left"):
        datamodule = ready(folder, cache, val_fraction=0.0)
    assert list(decoded_cache_dir(cache, datamodule).iterdir()) == []
    served = datamodule.train_dataloader().dataset
    assert served.path is None and len(served) == 12
    monkeypatch.setattr(decoded.np, "save", save)
    lazy = ready(folder, cache, val_fraction=0.0, in_memory=False)
    assert torch.equal(served.images, lazy.images_uint8())


def test_decoded_images_pickle_as_tensor_or_as_file(tmp_path):
    in_memory = ready("sklearn-digits").train_dataloader().dataset
    restored = pickle.loads(pickle.dumps(in_memory))
    assert restored.path is None and torch.equal(restored.images, in_memory.images)
    on_disk = ready(write_image_folder(tmp_path / "images"), tmp_path / "cache").train_dataloader().dataset
    payload = pickle.dumps(on_disk)
    assert on_disk.path is not None and len(payload) < 1000  # the path, not the pixels
    restored = pickle.loads(payload)
    assert torch.equal(restored.images, on_disk.images) and restored.__getitems__([1, 0])["index"].tolist() == [1, 0]
    assert collate_rows([{"index": 1}, {"index": 0}])["index"].tolist() == [1, 0]


@pytest.mark.slow
def test_spawned_workers_map_the_decoded_cache(tmp_path):
    datamodule = ready(write_image_folder(tmp_path / "images"), tmp_path / "cache", batch_size=4, val_fraction=0.0)
    served = datamodule.train_dataloader()
    loader = torch.utils.data.DataLoader(
        served.dataset, batch_size=4, num_workers=1, collate_fn=served.collate_fn, multiprocessing_context="spawn"
    )
    batches = list(loader)
    reference = datamodule.images_uint8()
    assert torch.equal(torch.cat([b["index"] for b in batches]), torch.arange(12))
    assert torch.equal(torch.cat([b["image"] for b in batches]), reference.float() / 127.5 - 1)


def test_lightning_rebuilds_the_loader_around_its_distributed_sampler():
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import DistributedSampler

    datamodule = ready("sklearn-digits", batch_size=64, max_train_samples=128)
    loader = datamodule.train_dataloader()
    shards = []
    for rank in range(2):
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sharded = _update_dataloader(loader, sampler, mode=RunningStage.TRAINING)
        assert sharded.collate_fn is collate_rows and sharded.batch_size == 64 and sharded.sampler is sampler
        shards.append(torch.cat([batch["index"] for batch in sharded]))
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    assert sorted(shards[0].tolist() + shards[1].tolist()) == list(range(128))


class RecordRows(LightningModule):
    """Records the rows each rank trains and validates on (a module-level class: ddp_spawn pickles it)."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.rows = {"train": [], "val": []}

    def _record(self, split: str, batch: dict) -> torch.Tensor:
        reference = self.trainer.datamodule.images_uint8(split)
        assert torch.equal(batch["image"], reference[batch["index"]].float() / 127.5 - 1)
        self.rows[split] += batch["index"].tolist()
        return ((batch["image"] - self.weight) ** 2).mean()

    def training_step(self, batch, batch_idx):
        return self._record("train", batch)

    def validation_step(self, batch, batch_idx):
        self._record("val", batch)

    def on_fit_end(self) -> None:
        served = self.trainer.datamodule.train_dataloader().dataset
        record = {**self.rows, "mapped": isinstance(served, DecodedImages) and served.path is not None}
        Path(self.out_dir, f"rank{self.global_rank}.json").write_text(json.dumps(record))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_ddp_ranks_get_disjoint_shards_of_the_decoded_splits(tmp_path):
    from lightning.pytorch import Trainer

    folder = write_image_folder(tmp_path / "images", MIXED_IMAGES * 4)  # 48 images: 32 train, 16 val
    datamodule = HFImageDataModule(path=str(folder), cache_dir=str(tmp_path / "cache"), image_size=6, channels=3,
                                   batch_size=8, val_fraction=1 / 3)
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(RecordRows(str(tmp_path)), datamodule=datamodule)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for split, rows in (("train", 32), ("val", 16)):
        first, second = ranks[0][split], ranks[1][split]
        assert len(first) == len(second) == rows // 2 and not set(first) & set(second), split
        assert sorted(first + second) == list(range(rows)), split
    assert ranks[0]["mapped"] and ranks[1]["mapped"]  # both ranks map the cache that rank 0 wrote


# ------------------------------------------------------------------------------------ bad input


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

    monkeypatch.setattr(image_sources, "scan_undecodable_rows", scan_again)
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

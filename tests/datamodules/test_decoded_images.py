"""In-memory serving: splits decoded once (per machine on disk), the same batches as the lazy path, caches that fail."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule

import datamodules.decoded_images as decoded
from datamodules import HFImageDataModule
from datamodules.decoded_images import DecodedImages
from datamodules.rows import IndexedSplit, collate_rows
from imaging.pixels import uint8_to_signed_unit
from tests.datamodules.images import (
    MIXED_IMAGES,
    private_offline_hf_cache,  # noqa: F401  (autouse: every test reads a private offline cache)
    ready,
    write_image_folder,
)


def all_batches(loader, seed: int = 0) -> list[dict]:
    torch.manual_seed(seed)  # the RandomSampler draws its order from the global generator
    return list(loader)


@pytest.mark.parametrize("source", ["digits", "folder"])
def test_in_memory_batches_equal_the_lazy_batches(tmp_path, source):
    path, kwargs = (
        ("sklearn-digits", {}) if source == "digits" else (write_image_folder(tmp_path / "images"), {"image_size": 6, "channels": 3})
    )
    lazy = ready(path, in_memory=False, val_fraction=0.25, batch_size=4, **kwargs)
    memory = ready(path, in_memory=True, val_fraction=0.25, batch_size=4, **kwargs)
    assert isinstance(lazy.train_dataloader().dataset, IndexedSplit)
    assert isinstance(memory.train_dataloader().dataset, DecodedImages)
    for loader in ("train_dataloader", "val_dataloader"):
        expected, served = all_batches(getattr(lazy, loader)()), all_batches(getattr(memory, loader)())
        assert len(served) == len(expected) > 0
        for ours, theirs in zip(served, expected, strict=True):
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
    monkeypatch.setattr(decoded, "IN_MEMORY_MAX_BYTES", 50_000)  # val: 180 * 64 bytes fits, train: 1617 * 64 does not
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
    datamodule = HFImageDataModule(
        path=str(folder), cache_dir=str(tmp_path / "cache"), image_size=6, channels=3, batch_size=8, val_fraction=1 / 3
    )
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(RecordRows(str(tmp_path)), datamodule=datamodule)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for split, rows in (("train", 32), ("val", 16)):
        first, second = ranks[0][split], ranks[1][split]
        assert len(first) == len(second) == rows // 2 and not set(first) & set(second), split
        assert sorted(first + second) == list(range(rows)), split
    assert ranks[0]["mapped"] and ranks[1]["mapped"]  # both ranks map the cache that rank 0 wrote

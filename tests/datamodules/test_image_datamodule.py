"""HFImageDataModule: seeded splits, the global batch, loaders under Lightning and DDP samplers."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
import torch

from datamodules import HFImageDataModule
from datamodules.image_datamodule import per_device_batch_size
from datamodules.rows import IndexedSplit
from tests.datamodules.images import (
    assert_batch_contract,
    one_line_error,
    private_offline_hf_cache,  # noqa: F401  (autouse: every test reads a private offline cache)
    ready,
    write_image_folder,
)


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
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(MeanImage(), datamodule=HFImageDataModule(batch_size=16))
    assert trainer.global_step == 2 and "val/loss" in trainer.callback_metrics


@pytest.mark.parametrize("in_memory", [False, True])
def test_reading_a_split_leaves_the_global_random_generator_alone(tmp_path, in_memory):
    """A training run that reads its reference images (the measurement callbacks do) keeps its random stream."""
    datamodule = ready(write_image_folder(tmp_path / "images"), image_size=6, channels=3, val_fraction=0.25, in_memory=in_memory)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    images = datamodule.images_uint8("val")
    assert len(images) == 3 and torch.equal(torch.get_rng_state(), before)
    torch.utils.data.DataLoader(range(4), num_workers=0).__iter__()  # a plain DataLoader draws: the check can fail
    assert not torch.equal(torch.get_rng_state(), before)

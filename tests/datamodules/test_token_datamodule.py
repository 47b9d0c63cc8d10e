"""LatentTokenDataModule and BL-AE checkpoint reading: tokens, the cache, and every way a checkpoint can be wrong.

One tiny BL-AE (4 bits, width 16) is trained for one step on the digits and saved by the
Trainer; ``write_run`` stores it as ``<run>/checkpoints/blae.ckpt`` with its networks recorded the
way LightningCLI does (configs in the hparams), as module objects (built in Python), or only in
``<run>/config.yaml``. Other checkpoints are edits of it. Nothing downloads; caches live in ``tmp_path``.
"""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
import yaml
from datasets import Dataset
from lightning.pytorch import LightningModule, Trainer

import datamodules.decoded_images as decoded
import datamodules.token_cache as token_cache
from autoencoder_checkpoint.reader import NotAnAutoencoderCheckpointError, read_checkpoint
from autoencoder_checkpoint.tokens import autoencoder_spec, load_token_encoder
from datamodules import HFImageDataModule, LatentTokenDataModule
from lightning_modules.blae import BinaryLatentAutoencoder
from lightning_modules.frozen_autoencoder import load_autoencoder
from networks.autoencoder import PatchMLPDecoder, PatchMLPEncoder
from networks.binarizer import NoiseInjectionBinarizer
from runtime.errors import BadInput

NUM_BITS = 4
NET_ARGS = {"image_channels": 1, "latent_channels": NUM_BITS, "width": 16, "num_blocks": 1, "patch_size": 3}
NETWORKS = {
    "encoder": {"class_path": "networks.autoencoder.PatchMLPEncoder", "init_args": NET_ARGS},
    "decoder": {"class_path": "networks.autoencoder.PatchMLPDecoder", "init_args": NET_ARGS},
    "binarizer": {"class_path": "networks.binarizer.NoiseInjectionBinarizer", "init_args": {"noise": "gaussian", "noise_rate": 0.5}},
}
"""The networks as LightningCLI records them (``{class_path, init_args}``)."""
BLAE_CLASS = "lightning_modules.BinaryLatentAutoencoder"


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture(autouse=True)
def private_offline_hf_cache(offline_hf_cache):
    """Every test here runs offline with its own HF cache (fixture in conftest)."""
    return offline_hf_cache


def quiet_trainer(root: Path, **kwargs) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


def write_run(run: Path, checkpoint: dict, record_networks: str = "hparams") -> Path:
    """``checkpoint`` as ``<run>/checkpoints/blae.ckpt`` with its networks recorded as ``record_networks`` says.

    "hparams": ``{class_path, init_args}`` in the hyper-parameters (LightningCLI); "objects": the
    module objects (a BL-AE built in Python, as the Trainer saved it); "config": only in ``<run>/config.yaml``.
    """
    hparams = dict(checkpoint["hyper_parameters"])
    if record_networks == "hparams":
        hparams.update(NETWORKS, _class_path=BLAE_CLASS)
    elif record_networks == "config":
        hparams = {key: value for key, value in hparams.items() if key not in NETWORKS} | {"_class_path": BLAE_CLASS}
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(yaml.safe_dump({"model": {"class_path": BLAE_CLASS, "init_args": NETWORKS}}))
    checkpoint = {**checkpoint, "hyper_parameters": hparams}
    path = run / "checkpoints" / "blae.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> SimpleNamespace:
    """A BL-AE after one training step, in eval mode, and its Lightning checkpoint dict."""
    root = tmp_path_factory.mktemp("blae")
    torch.manual_seed(0)
    with warnings.catch_warnings():  # built outside the CLI, the BL-AE records its networks as objects
        warnings.filterwarnings("ignore", message=r".*is an instance of `nn.Module`")
        model = BinaryLatentAutoencoder(
            PatchMLPEncoder(**NET_ARGS), PatchMLPDecoder(**NET_ARGS), NoiseInjectionBinarizer(noise="gaussian", noise_rate=0.5)
        )
    trainer = quiet_trainer(root, max_steps=1, limit_val_batches=0)
    trainer.fit(model, datamodule=HFImageDataModule(batch_size=64))
    trainer.save_checkpoint(root / "raw.ckpt")
    checkpoint, _ = read_checkpoint(root / "raw.ckpt")  # holds the network objects in its hparams
    return SimpleNamespace(model=model.eval(), checkpoint=checkpoint)


@pytest.fixture
def blae_ckpt(trained, tmp_path) -> Path:
    return write_run(tmp_path / "run_a", trained.checkpoint)


def edited(checkpoint: dict, **hparams) -> dict:
    return {**checkpoint, "hyper_parameters": {**checkpoint["hyper_parameters"], **hparams}}


def perturbed(checkpoint: dict) -> dict:
    generator = torch.Generator().manual_seed(1)
    state = {
        key: value + 0.5 * torch.randn(value.shape, generator=generator) if value.is_floating_point() else value
        for key, value in checkpoint["state_dict"].items()
    }
    return {**checkpoint, "state_dict": state}


def ready(ckpt: Path, cache: Path, **kwargs) -> LatentTokenDataModule:
    kwargs.setdefault("batch_size", 32)
    datamodule = LatentTokenDataModule(autoencoder=str(ckpt), token_cache_dir=str(cache), **kwargs)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@pytest.fixture
def encode_calls(monkeypatch) -> list[int]:
    """Counts BL-AE encoding passes (one per split encoded)."""
    calls, encode = [], token_cache.encode_tokens

    def counting(autoencoder, images, *args):
        calls.append(len(images))
        return encode(autoencoder, images, *args)

    monkeypatch.setattr(token_cache, "encode_tokens", counting)
    return calls


def snapshot(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in sorted(folder.rglob("*"))}


def images_as_input(uint8: torch.Tensor) -> torch.Tensor:
    return uint8.float() / 127.5 - 1


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------ tokens and batches


def test_tokens_are_the_blae_tokens_of_the_same_rows(trained, blae_ckpt, tmp_path):
    datamodule = ready(blae_ckpt, tmp_path / "tokens")
    assert datamodule.num_bits == NUM_BITS and datamodule.grid_shape == (8, 8) and datamodule.vocab_size == 16
    for split in ("train", "val"):
        tokens = datamodule.token_grids(split)
        assert tokens.dtype == torch.int64 and tokens.shape == (len(datamodule.dataset(split)), 8, 8)
        assert torch.equal(tokens, trained.model.tokens(images_as_input(datamodule.images_uint8(split))))
    assert datamodule.token_grids().unique().numel() > 1  # not a degenerate all-equal grid
    meta = datamodule.token_meta
    assert meta["autoencoder_sha256"] == datamodule.autoencoder_sha256 == autoencoder_spec(blae_ckpt).sha256
    assert meta["source_fingerprint"] == datamodule.source_fingerprint() and meta["token_dtype"] == "uint8"
    assert (meta["num_bits"], meta["grid_height"], meta["grid_width"], meta["image_size"], meta["channels"]) == (4, 8, 8, 8, 1)
    assert meta["autoencoder_path"] == str(blae_ckpt.resolve())
    stored = datasets.load_from_disk(str(datamodule.cache_folder()))["train"]
    assert stored.features["tokens"] == datasets.Array2D((8, 8), "uint8")

    encoder = datamodule.load_token_encoder()
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    assert torch.equal(encoder.tokens(images_as_input(datamodule.images_uint8("val"))), datamodule.token_grids("val"))


def test_loaders_serve_long_token_grids_with_their_row_index(blae_ckpt, tmp_path):
    datamodule = LatentTokenDataModule(
        autoencoder=str(blae_ckpt), token_cache_dir=str(tmp_path / "tokens"), batch_size=64, test_fraction=0.1, num_samples=10
    )
    datamodule.prepare_data()
    datamodule.trainer = SimpleNamespace(world_size=2)  # what setup reads from a real Trainer
    datamodule.setup("fit")
    assert datamodule.split_names == ["train", "val", "test"]
    train = datamodule.train_dataloader()
    assert train.batch_size == 32 and train.drop_last
    reference = datamodule.token_grids()
    batch = next(iter(train))
    assert set(batch) == {"tokens", "index"}
    assert batch["tokens"].dtype == torch.int64 and batch["tokens"].shape == (32, 8, 8)
    assert batch["index"].dtype == torch.int64 and batch["index"].shape == (32,)
    assert torch.equal(batch["tokens"], reference[batch["index"]])
    for loader, split in ((datamodule.val_dataloader(), "val"), (datamodule.test_dataloader(), "test")):
        rows = torch.cat([b["index"] for b in loader])
        assert torch.equal(rows, torch.arange(len(datamodule.dataset(split))))
        assert torch.equal(torch.cat([b["tokens"] for b in loader]), datamodule.token_grids(split))
    requests = list(datamodule.predict_dataloader())  # predict asks a token model for num_samples samples
    assert torch.equal(torch.cat([b["index"] for b in requests]), torch.arange(10)) and set(requests[0]) == {"index"}
    restored = pickle.loads(pickle.dumps(datamodule.token_dataset("val")))  # DataLoader workers under spawn
    assert torch.equal(restored[3]["tokens"], datamodule.token_grids("val")[3])


def test_lightning_trainer_prepares_and_trains_on_tokens(blae_ckpt, tmp_path):
    class TokenCounts(LightningModule):
        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.zeros(2**NUM_BITS))

        def training_step(self, batch, batch_idx):
            assert batch["tokens"].shape == (16, 8, 8) and batch["tokens"].dtype == torch.int64
            return torch.nn.functional.cross_entropy(self.logits.expand(batch["tokens"].numel(), -1), batch["tokens"].flatten())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    datamodule = LatentTokenDataModule(autoencoder=str(blae_ckpt), token_cache_dir=str(tmp_path / "tokens"), batch_size=16)
    trainer = quiet_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(TokenCounts(), datamodule=datamodule)
    assert trainer.global_step == 2 and datamodule.cache_folder().is_dir()


def test_images_are_decoded_once_for_the_encoding_and_the_reference_set(blae_ckpt, tmp_path, monkeypatch):
    decoded_rows, decode = [], decoded.decode_split

    def counting(images, *args):
        decoded_rows.append(len(images))
        return decode(images, *args)

    monkeypatch.setattr(decoded, "decode_split", counting)
    datamodule = ready(blae_ckpt, tmp_path / "tokens")  # prepare_data encodes from the decoded images
    reference = datamodule.images_uint8()
    assert datamodule.images_uint8() is reference and len(datamodule.images_uint8("val")) == 180
    assert decoded_rows == [1617, 180]
    lazy = ready(blae_ckpt, tmp_path / "tokens", in_memory=False)  # same rows and pixels: the same cache
    assert lazy.cache_folder() == datamodule.cache_folder() and torch.equal(lazy.images_uint8(), reference)


# ------------------------------------------------------------------------------------ the cache


def test_cache_is_reused_without_encoding_again(blae_ckpt, tmp_path, encode_calls):
    first = ready(blae_ckpt, tmp_path / "tokens")
    assert encode_calls == [1617, 180]
    before = snapshot(tmp_path / "tokens")
    second = ready(blae_ckpt, tmp_path / "tokens", batch_size=8)  # batch size is not part of the key
    assert encode_calls == [1617, 180] and snapshot(tmp_path / "tokens") == before
    assert torch.equal(first.token_grids(), second.token_grids())


def test_another_checkpoint_gets_its_own_cache(trained, blae_ckpt, tmp_path, encode_calls):
    first = ready(blae_ckpt, tmp_path / "tokens")
    other_ckpt = write_run(tmp_path / "run_b", perturbed(trained.checkpoint))
    other = ready(other_ckpt, tmp_path / "tokens")
    assert len(encode_calls) == 4 and other.autoencoder_sha256 != first.autoencoder_sha256
    assert other.cache_folder() != first.cache_folder() and first.cache_folder().is_dir()
    assert not torch.equal(other.token_grids(), first.token_grids())


def test_same_checkpoint_on_other_images_gets_its_own_cache(blae_ckpt, tmp_path, encode_calls):
    first = ready(blae_ckpt, tmp_path / "tokens")
    subset = ready(blae_ckpt, tmp_path / "tokens", max_train_samples=100)
    assert encode_calls == [1617, 180, 100, 180] and subset.cache_folder() != first.cache_folder()
    assert len(subset.token_grids()) == len(subset.images_uint8()) == 100


def test_cache_with_stale_meta_is_rebuilt_in_prepare_and_refused_in_setup(blae_ckpt, tmp_path, encode_calls):
    folder = ready(blae_ckpt, tmp_path / "tokens").cache_folder()
    meta_file = folder / "meta.json"
    meta_file.write_text(meta_file.read_text().replace(autoencoder_spec(blae_ckpt).sha256, "0" * 64))
    refusing = LatentTokenDataModule(autoencoder=str(blae_ckpt), token_cache_dir=str(tmp_path / "tokens"))
    with pytest.raises(RuntimeError) as excinfo:
        refusing.setup("fit")
    assert "autoencoder_sha256" in one_line_error(excinfo) and "prepare_data()" in str(excinfo.value)
    with pytest.warns(UserWarning, match="rebuilding the token cache"):
        ready(blae_ckpt, tmp_path / "tokens")
    assert len(encode_calls) == 4


def test_interrupted_write_leaves_no_cache_that_is_reused(blae_ckpt, tmp_path, monkeypatch, encode_calls):
    cache = tmp_path / "tokens"
    save_to_disk = Dataset.save_to_disk

    def disk_full_after_first_split(self, path, *args, **kwargs):
        save_to_disk(self, path, *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Dataset, "save_to_disk", disk_full_after_first_split)
    datamodule = LatentTokenDataModule(autoencoder=str(blae_ckpt), token_cache_dir=str(cache))
    with pytest.raises(OSError, match="No space left"):
        datamodule.prepare_data()
    assert list(cache.iterdir()) == []  # no final folder, and the partial one was removed
    with pytest.raises(RuntimeError, match="no cache yet"):
        datamodule.setup("fit")
    monkeypatch.setattr(Dataset, "save_to_disk", save_to_disk)

    # a process killed mid-write leaves its partial folder: ignored, and removed once its pid is dead
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = datamodule.cache_folder(datamodule._build_splits()[2])
    leftover = cache / f".partial-{folder.name}-{socket.gethostname()}-{finished.stdout.strip()}-deadbeef"
    (leftover / "train").mkdir(parents=True)
    (leftover / "meta.json").write_text("{}")
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert sorted(path.name for path in cache.iterdir()) == [folder.name]
    assert len(encode_calls) == 4 and len(datamodule.token_grids()) == 1617


def damage(file: Path, how: str) -> None:
    """A cache file as a crash of the disk, a bad copy or an editor leaves it: cut in half, or other bytes."""
    if how == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    else:
        file.write_bytes(b"\x00not what was written{")


@pytest.mark.parametrize(
    "damaged, how",
    [
        ("train/data-00000-of-00001.arrow", "truncated"),
        ("train/data-00000-of-00001.arrow", "overwritten"),
        ("val/state.json", "overwritten"),
    ],
)
def test_a_damaged_cache_is_named_with_how_to_fix_it_and_rebuilt_by_prepare_data(blae_ckpt, tmp_path, encode_calls, damaged, how):
    first = ready(blae_ckpt, tmp_path / "tokens")
    folder, tokens = first.cache_folder(), first.token_grids()
    damage(folder / damaged, how)
    reading = LatentTokenDataModule(autoencoder=str(blae_ckpt), token_cache_dir=str(tmp_path / "tokens"))
    with pytest.raises(BadInput) as excinfo:  # a rank that only reads it (setup without prepare_data)
        reading.setup("fit")
    message = one_line_error(excinfo)  # before: pyarrow's or json's own words, no path (a truncated file: a traceback)
    assert message.startswith(f"token cache {folder} is damaged (") and f"delete that folder (rm -r {folder}) and run again" in message
    with pytest.warns(UserWarning, match=f"rebuilding the token cache {folder}: its files are damaged"):
        rebuilt = ready(blae_ckpt, tmp_path / "tokens")
    assert len(encode_calls) == 4 and torch.equal(rebuilt.token_grids(), tokens)


def test_default_token_cache_dir(blae_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert LatentTokenDataModule(autoencoder=str(blae_ckpt)).token_cache_dir == tmp_path / "home/.cache/meps_ldh/tokens"
    in_cache_dir = LatentTokenDataModule(autoencoder=str(blae_ckpt), cache_dir=str(tmp_path / "hf"))
    assert in_cache_dir.token_cache_dir == tmp_path / "hf" / "tokens"


# ------------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("record_networks", ["hparams", "objects", "config"])
def test_spec_and_model_come_from_the_checkpoint_alone(trained, tmp_path, record_networks):
    ckpt = write_run(tmp_path / "run", trained.checkpoint, record_networks)
    spec = autoencoder_spec(ckpt)
    assert (spec.num_bits, spec.grid_height, spec.grid_width, spec.image_size, spec.channels) == (4, 8, 8, 8, 1)
    assert spec.vocab_size == 16 and spec.grid_shape == (8, 8) and len(spec.sha256) == 64
    model, encoder = load_autoencoder(ckpt), load_token_encoder(ckpt)
    images = torch.rand(5, 1, 8, 8) * 2 - 1
    assert torch.equal(model.tokens(images), trained.model.tokens(images)) and not model.training
    assert torch.equal(encoder.tokens(images), trained.model.tokens(images)) and not encoder.training


def test_checkpoint_without_recorded_networks_is_named(trained, tmp_path):
    ckpt = write_run(tmp_path / "run", trained.checkpoint, "config")
    (tmp_path / "run" / "config.yaml").unlink()
    with pytest.raises(NotAnAutoencoderCheckpointError) as excinfo:
        autoencoder_spec(ckpt)
    assert str(ckpt) in one_line_error(excinfo) and "encoder/decoder" in str(excinfo.value)


@pytest.mark.parametrize("field, value", [("image_size", 6), ("channels", 3)])
def test_checkpoint_that_does_not_fit_the_data_names_both_values(trained, tmp_path, field, value):
    ckpt = write_run(tmp_path / "run", edited(trained.checkpoint, **{field: value}))
    with pytest.raises(ValueError) as excinfo:
        LatentTokenDataModule(autoencoder=str(ckpt), token_cache_dir=str(tmp_path / "tokens"))
    message = one_line_error(excinfo)
    assert f"{field}={value}" in message and f"--data.{field}={8 if field == 'image_size' else 1}" in message


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        LatentTokenDataModule(autoencoder=str(tmp_path / "nope.ckpt"))
    assert "nope.ckpt" in one_line_error(excinfo) and "does not exist" in str(excinfo.value)


def arvm_like_checkpoint(trained) -> dict:
    return {
        **trained.checkpoint,
        "state_dict": {"transformer.weight": torch.zeros(2)},
        "hyper_parameters": {"_class_path": "lightning_modules.GammaARVM", "autoencoder": "blae.ckpt", "gamma": 2},
    }


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"seed_everything: 1234\n", "is not a PyTorch checkpoint"),
        ({"weights": torch.zeros(3)}, "without a state_dict"),
        ("arvm", "lightning_modules.GammaARVM trained on BL-AE tokens"),
        ("unnamed-arvm", "model trained on BL-AE tokens"),
        ({"state_dict": {"net.weight": torch.zeros(1)}, "hyper_parameters": {}}, "without encoder/decoder weights"),
    ],
)
def test_files_that_are_not_blae_checkpoints_are_named(trained, tmp_path, content, expected):
    path = tmp_path / "model.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        if content == "arvm":
            content = arvm_like_checkpoint(trained)
        elif content == "unnamed-arvm":
            content = arvm_like_checkpoint(trained)
            del content["hyper_parameters"]["_class_path"]
        torch.save(content, path)
    with pytest.raises(NotAnAutoencoderCheckpointError) as excinfo:
        LatentTokenDataModule(autoencoder=str(path))
    assert str(path) in one_line_error(excinfo) and expected in str(excinfo.value)


def test_changed_checkpoint_file_is_refused_when_loading_the_autoencoder(trained, blae_ckpt, tmp_path):
    datamodule = ready(blae_ckpt, tmp_path / "tokens")
    torch.save(perturbed(read_checkpoint(blae_ckpt)[0]), blae_ckpt)  # e.g. last.ckpt overwritten
    with pytest.raises(ValueError) as excinfo:
        datamodule.load_token_encoder()
    assert "changed on disk" in one_line_error(excinfo)


def test_bad_encode_batch_size_is_rejected(blae_ckpt):
    with pytest.raises(ValueError, match="^encode_batch_size"):
        LatentTokenDataModule(autoencoder=str(blae_ckpt), encode_batch_size=0)


def test_an_os_fault_while_reading_the_cache_is_not_called_damage(tmp_path, monkeypatch):
    """Too many open files, an I/O or NFS fault say nothing of the files: the cache (which other processes may be
    reading) is neither removed nor called damaged; the OS error comes through as it is."""
    import errno

    import datasets

    from datamodules import token_cache

    def no_more_files(path, *args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files", path)

    monkeypatch.setattr(datasets, "load_from_disk", no_more_files)
    with pytest.raises(OSError, match="Too many open files"):
        token_cache.unreadable_because(tmp_path, {"train": 1})
    with pytest.raises(OSError, match="Too many open files"):
        token_cache.read_token_cache(tmp_path, ["train"])

    def damaged(path, *args, **kwargs):
        raise OSError("Expected to be able to read 800 bytes for message body, got 12")  # a truncated Arrow file

    monkeypatch.setattr(datasets, "load_from_disk", damaged)
    assert token_cache.unreadable_because(tmp_path, {"train": 1}).startswith("its files are damaged")

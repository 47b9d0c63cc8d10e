"""The rgb32 configs take other 32×32 sources unchanged: a CIFAR-shaped parquet (img/label), a parquet whose
image column has another name, and a folder of image files of other sizes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from tests.cli.test_cli import CONFIG_DIR, print_config
from train import main

IMAGE_CONFIGS = [CONFIG_DIR / "blae" / "rgb32.yaml", CONFIG_DIR / "vae" / "rgb32.yaml"]
TOKEN_CONFIGS = [CONFIG_DIR / "arvm" / "rgb32.yaml", CONFIG_DIR / "arvm" / "rgb32_kernel.yaml"]


def pictures(count: int, size: tuple[int, int] = (32, 32), seed: int = 0) -> list[PILImage.Image]:
    """Smooth random colour fields (not noise, so they compress like photographs)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, 4, 4, 3), dtype=np.uint8)
    return [PILImage.fromarray(block).resize(size, PILImage.BILINEAR) for block in coarse]


def cifar_shaped_parquet(root: Path) -> Path:
    """The layout of uoft-cs/cifar10 on the Hub: plain_text/{train,test}-00000-of-00001.parquet with img/label."""
    folder = root / "cifar10" / "plain_text"
    folder.mkdir(parents=True)
    features = Features({"img": Image(), "label": ClassLabel(names=[f"class{i}" for i in range(10)])})
    for split, count in (("train", 40), ("test", 10)):
        table = Dataset.from_dict({"img": pictures(count, seed=count), "label": [i % 10 for i in range(count)]}, features=features)
        table.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    return root / "cifar10"


def renamed_column_parquet(root: Path) -> Path:
    """One parquet file, the images under "picture" after a text column, as pandas/pyarrow would write it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def png(image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    images = pictures(30, seed=3)
    table = pa.table({"caption": [f"picture {i}" for i in range(30)], "picture": [png(image) for image in images]})
    path = root / "pictures.parquet"
    pq.write_table(table, path)
    return path


def image_folder(root: Path) -> Path:
    """Files of another size (48×40), resized and centre-cropped to 32×32 by the data module."""
    folder = root / "photos"
    folder.mkdir()
    for i, image in enumerate(pictures(25, size=(48, 40), seed=5)):
        image.save(folder / f"photo{i:03d}.png")
    return folder


SOURCES = {
    "cifar-shaped parquet": (cifar_shaped_parquet, "img", {"train": 36, "val": 4, "test": 10}),
    "renamed image column": (renamed_column_parquet, "picture", {"train": 27, "val": 3}),
    "image folder": (image_folder, "image", {"train": 23, "val": 2}),
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("config", IMAGE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_image_configs_run_on_other_sources_unchanged(in_tmp_dir, offline_hf_cache, tmp_path, config, source):
    build, column, sizes = SOURCES[source]
    path = build(tmp_path)
    cli = main(["-c", str(config), "--data.init_args.path", str(path)], run=False)
    data = cli.datamodule
    data.prepare_data()
    data.setup("fit")
    assert data.image_column == column  # found by itself: the configs name no column
    assert {split: len(data.dataset(split)) for split in data.split_names} == sizes
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape[1:] == (3, 32, 32)
    assert cli.model.hparams.image_size == 32 and cli.model.hparams.channels == 3


@pytest.mark.parametrize("config", TOKEN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_token_configs_take_a_source_path_unchanged(tmp_path, config):
    path = renamed_column_parquet(tmp_path)
    printed = print_config("-c", str(config), "--data.init_args.path", str(path))
    data = printed["data"]["init_args"]
    assert data["path"] == str(path) and data["image_column"] is None
    assert (data["image_size"], data["channels"], data["max_train_samples"]) == (32, 3, 16)


def test_the_embedded_default_is_the_photo_crops():
    for config in [*IMAGE_CONFIGS, *TOKEN_CONFIGS]:
        assert print_config("-c", str(config))["data"]["init_args"]["path"] == "sample-photos-32"

"""Tiny image sources written by the tests themselves, and the checks the data module tests share.
Nothing downloads: the Hub is switched off and the ``datasets`` cache points into ``tmp_path``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage

from datamodules import HFImageDataModule

RNG = np.random.default_rng(0)


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

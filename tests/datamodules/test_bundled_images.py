"""The embedded 32×32 RGB source: deterministic, the right shape, and a held-out split that shares no pixels with training."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from datamodules import HFImageDataModule
from datamodules.bundled_images import MIN_TEXTURE, PHOTO_CROPS_SOURCE, TILE, Tile, load_photo_crops_dataset, region_of, texture, tiles

TRAIN_TILES, VAL_TILES = 404, 57


@pytest.fixture(scope="module")
def crops():
    return load_photo_crops_dataset()


def footprint(row: dict) -> tuple[str, int, int, int, int]:
    """A tile's rectangle in the pixels of its full-size photo: (photo, x0, x1, y0, y1)."""
    scale = row["scale"]
    return row["photo"], row["left"] * scale, (row["left"] + TILE) * scale, row["top"] * scale, (row["top"] + TILE) * scale


def overlapping_pairs(first: list[dict], second: list[dict]) -> int:
    """How many (a, b) rectangles of the same photo intersect (any scale)."""
    count = 0
    for photo_a, ax0, ax1, ay0, ay1 in map(footprint, first):
        for photo_b, bx0, bx1, by0, by1 in map(footprint, second):
            count += photo_a == photo_b and ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1
    return count


def origins(split) -> list[dict]:
    return split.select_columns(["photo", "scale", "top", "left"]).to_list()


def test_the_source_is_deterministic_with_region_split_sizes(crops):
    again = load_photo_crops_dataset()
    assert {name: len(split) for name, split in crops.items()} == {"train": TRAIN_TILES, "validation": VAL_TILES}
    for name in crops:
        assert crops[name]._fingerprint == again[name]._fingerprint
        first, second = crops[name][:5]["image"], again[name][:5]["image"]
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, second, strict=True))
    assert set(crops["train"]["scale"]) == set(crops["validation"]["scale"]) == {1, 2}
    assert len(set(crops["validation"]["photo"])) == 2  # the flower's held-out strip has no textured tile


def test_held_out_tiles_share_no_pixels_with_training_tiles(crops):
    train, val = origins(crops["train"]), origins(crops["validation"])
    assert overlapping_pairs(train, val) == 0
    # the check can fail: scale-½ tiles cover scale-1 tiles of the same photo, and a random split would mix them
    assert overlapping_pairs(train[:200], train) > 200
    # no held-out tile is a pixel-exact copy of a training tile
    train_bytes = {np.asarray(image).tobytes() for image in crops["train"]["image"]}
    assert not any(np.asarray(image).tobytes() in train_bytes for image in crops["validation"]["image"])


def test_no_held_out_tile_is_a_near_copy_of_a_training_tile_and_smooth_tiles_would_be(crops):
    """The memorization floor of this source: held-out tiles vs their nearest training tile, in PSNR."""

    def nearest_psnr(queries, references):
        q = np.stack([np.asarray(i) for i in queries]).reshape(len(queries), -1).astype(np.float64) / 255
        r = np.stack([np.asarray(i) for i in references]).reshape(len(references), -1).astype(np.float64) / 255
        mse = ((q**2).sum(1)[:, None] + (r**2).sum(1)[None] - 2 * q @ r.T).min(1).clip(1e-12) / q.shape[1]
        return -10 * np.log10(mse)

    assert (nearest_psnr(crops["validation"]["image"], crops["train"]["image"]) < 25).all()
    # the check can fail: two flat tiles (what the texture filter drops) are near copies of each other
    flat = [Image.new("RGB", (TILE, TILE), (200, 200, 210)), Image.new("RGB", (TILE, TILE), (201, 199, 210))]
    assert nearest_psnr(flat[:1], flat[1:])[0] > 40 and texture(flat[0]) < MIN_TEXTURE


def test_regions_are_bands_with_a_guard():
    width = 640
    assert region_of(0, width) == "train" and region_of(416, width) == "train"  # ends at 448 = 70 %
    assert region_of(448, width) is None and region_of(470, width) is None  # the guard band is dropped
    assert region_of(480, width) == "validation"
    photo = Image.new("RGB", (90, 70))
    grid = list(tiles(photo, "x", 1))
    assert [tile.left for _, tile in grid] == [0, 32, 0, 32] and all(isinstance(tile, Tile) for _, tile in grid)


def test_the_datamodule_serves_it_as_32px_rgb_with_the_region_split_as_val():
    data = HFImageDataModule(path=PHOTO_CROPS_SOURCE, image_size=32, channels=3, batch_size=16)
    data.prepare_data()
    data.setup("fit")
    assert data.split_names == ["train", "val"]  # the source's validation split, not a random hold-out
    images = data.images_uint8("train")
    assert images.shape == (TRAIN_TILES, 3, 32, 32) and images.dtype.is_floating_point is False
    assert str(images.dtype) == "torch.uint8" and len(data.dataset("val")) == VAL_TILES
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape == (16, 3, 32, 32) and batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert data.images_uint8("val").float().std() > 30  # photographs, not a blank

"""The pixel pipeline: alpha on white, 16-bit scaling, resize and crop, the [-1, 1] range, undecodable files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from datamodules.image_transforms import ImageBatchTransform, ImageToUint8, UndecodableImageError, convert_channels, resize_and_center_crop
from tests.datamodules.images import (
    one_line_error,
    png_bytes,
    private_offline_hf_cache,  # noqa: F401  (autouse: every test reads a private offline cache)
    random_image,
)


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

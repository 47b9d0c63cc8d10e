"""Deterministic image decoding and preprocessing, as picklable classes (no lambdas or closures).

Picklable callables survive DataLoader workers under spawn/forkserver, ``persistent_workers`` and
``ddp_spawn``, and they give Hugging Face ``datasets`` a stable fingerprint (a transform ``datasets`` cannot hash gets a random
fingerprint, and every cache built on it is rebuilt each run; see the ``datasets`` docs on fingerprinting).

The pipeline for one image is:

1. decode the stored ``{bytes, path}`` struct with PIL, naming the file if that fails;
2. convert any mode to ``channels`` (1 = "L", 3 = "RGB"). Transparent images (RGBA, LA, PA,
   P with a transparency key) are **composited on white**, not stripped of alpha: pixels under a
   transparent area often hold arbitrary colours (frequently black), while sprites, icons and
   scanned documents with alpha are drawn for a white page. 16-bit grayscale ("I;16*", "I") is
   scaled by 255/65535, not clipped as PIL's own conversion does;
3. resize the shorter side to ``image_size`` with PIL bicubic (antialiased when shrinking), then
   center-crop to ``image_size x image_size``. An image already at that size is left untouched,
   so 8x8 digits stay bit-exact;
4. to a uint8 tensor (C, H, W), and for training to float32 in [-1, 1] as ``x / 127.5 - 1``.
"""

from __future__ import annotations

import io
from typing import Any, cast

import numpy as np
import torch
from PIL import Image as PILImage

from imaging.pixels import uint8_to_signed_unit

PIPELINE_VERSION = 1
"""Bump when the pixels this module produces change, so that caches keyed by it are invalidated."""

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})
_CHANNEL_MODES = {1: "L", 3: "RGB"}
_WHITE = (255, 255, 255, 255)


class UndecodableImageError(ValueError):
    """An image that PIL cannot decode; the message names the file (or says it had no path)."""


def one_line(text: object) -> str:
    """Collapse a message onto one line: our errors must stay one line even when PIL's are not."""
    return " ".join(str(text).split())


def describe_image_value(value: Any) -> str:
    """Name a stored image for an error message: its path if it has one, otherwise its size in bytes."""
    if isinstance(value, dict):
        if value.get("path"):
            return str(value["path"])
        if value.get("bytes") is not None:
            return f"<embedded image, {len(value['bytes'])} bytes, no path>"
    return f"<{type(value).__name__} value>"


PIXEL_RANGES = {"F": 255.0, "I": 65535.0}
"""Modes whose values are not bounded by their type: float and 32-bit images must hold 8- resp. 16-bit pixels."""


def check_pixel_range(image: PILImage.Image) -> None:
    """Refuse a float/32-bit image whose values a conversion to 8 bits would clip (e.g. floats in [0, 1] -> black)."""
    top = PIXEL_RANGES.get(image.mode)
    if top is None:
        return
    low, high = cast("tuple[float, float]", image.getextrema())  # F and I images have one band: one (min, max) pair
    if low < 0 or high > top:
        raise ValueError(f"mode {image.mode} pixel values in [{low:g}, {high:g}] are outside the expected range 0..{top:g}")
    if image.mode == "F" and high <= 1.0:
        raise ValueError(
            f"mode F pixel values in [{low:g}, {high:g}] look like [0, 1] intensities, but the expected range"
            f" is 0..{top:g} (scale them to 0..255 first)"
        )


def decode_image(value: Any) -> PILImage.Image:
    """Decode one stored image fully (``load()``), so that truncated files fail here and not later.

    ``value`` is the undecoded ``{bytes, path}`` struct of a ``datasets.Image(decode=False)``
    column (bytes win over path, as in ``datasets``), or an already decoded PIL image.
    """
    if isinstance(value, PILImage.Image):
        return value
    try:
        data = value.get("bytes") if isinstance(value, dict) else None
        if data is None:
            path = value.get("path") if isinstance(value, dict) else None
            if not path:
                raise ValueError("it has neither bytes nor a path")
            with open(path, "rb") as file:
                data = file.read()
        image = PILImage.open(io.BytesIO(data))
        image.load()
        check_pixel_range(image)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        raise UndecodableImageError(f"cannot decode image {describe_image_value(value)}: {type(err).__name__}: {one_line(err)}") from err
    return image


def _sixteen_bit_to_l(image: PILImage.Image) -> PILImage.Image:
    """Scale 16-bit grayscale to 8 bits (PIL's ``convert("L")`` clips everything above 255 to white)."""
    values = np.asarray(image, dtype=np.float64).clip(0, 65535)
    return PILImage.fromarray(np.rint(values * (255.0 / 65535.0)).astype(np.uint8))


def _has_alpha(image: PILImage.Image) -> bool:
    """True for modes with an alpha band and for palette/grayscale images with a transparency key."""
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _composite_on_white(image: PILImage.Image) -> PILImage.Image:
    """Flatten transparency onto a white background and return an RGB image (see the module docstring)."""
    rgba = image.convert("RGBA")
    background = PILImage.new("RGBA", rgba.size, _WHITE)
    return PILImage.alpha_composite(background, rgba).convert("RGB")


def convert_channels(image: PILImage.Image, channels: int) -> PILImage.Image:
    """Convert any PIL mode to "L" (channels=1, ITU-R 601 luma) or "RGB" (channels=3)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _sixteen_bit_to_l(image)
    elif _has_alpha(image):
        image = _composite_on_white(image)
    target_mode = _CHANNEL_MODES[channels]
    return image if image.mode == target_mode else image.convert(target_mode)


def resize_and_center_crop(image: PILImage.Image, image_size: int) -> PILImage.Image:
    """Resize the shorter side to ``image_size`` (bicubic), then crop the central square."""
    width, height = image.size
    if (width, height) == (image_size, image_size):
        return image
    scale = image_size / min(width, height)
    new_width, new_height = max(image_size, round(width * scale)), max(image_size, round(height * scale))
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), PILImage.Resampling.BICUBIC)
    left, top = (new_width - image_size) // 2, (new_height - image_size) // 2
    return image.crop((left, top, left + image_size, top + image_size))


def pil_to_uint8_chw(image: PILImage.Image) -> torch.Tensor:
    """An "L" or "RGB" PIL image as a uint8 tensor (C, H, W)."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
    return pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1).contiguous()


class ImageToUint8:
    """One image (stored struct or PIL) -> uint8 tensor (channels, image_size, image_size)."""

    def __init__(self, image_size: int, channels: int) -> None:
        if channels not in _CHANNEL_MODES:
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.image_size = image_size
        self.channels = channels

    def __call__(self, value: Any) -> torch.Tensor:
        image = convert_channels(decode_image(value), self.channels)
        return pil_to_uint8_chw(resize_and_center_crop(image, self.image_size))

    def describe(self) -> dict[str, Any]:
        """Everything that determines the output pixels; part of ``HFImageDataModule.source_fingerprint``."""
        return {
            "pipeline_version": PIPELINE_VERSION,
            "image_size": self.image_size,
            "channels": self.channels,
            "alpha": "composite_on_white",
            "resize": "shorter_side_bicubic_center_crop",
        }


class ImageBatchTransform:
    """The ``Dataset.set_transform`` callable: a batch (dict of lists) -> ``{"image": [tensor (C, H, W)]}``.

    Float32 in [-1, 1] for training, or uint8 with ``as_uint8=True`` (the memorization reference
    set). Other columns are dropped, so every batch has the same keys whatever the source holds.
    """

    def __init__(self, image_column: str, image_size: int, channels: int, as_uint8: bool = False) -> None:
        self.image_column = image_column
        self.to_uint8 = ImageToUint8(image_size, channels)
        self.as_uint8 = as_uint8

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[torch.Tensor]]:
        images = [self.to_uint8(value) for value in batch[self.image_column]]
        if not self.as_uint8:
            images = [uint8_to_signed_unit(image) for image in images]
        return {"image": images}

"""The image sources that installed packages ship: no download, no network, deterministic.

Digits (``DIGITS_SOURCE``): scikit-learn's bundled 8x8 digits, the default source, what tests,
smoke runs and the demo sweep train on; they ship inside the scikit-learn wheel.

Photo crops (``PHOTO_CROPS_SOURCE``): 32×32 RGB crops of the photographs that installed packages
ship, the offline 32×32 source. Three photographs: scikit-learn's ``china.jpg`` and ``flower.jpg`` (427×640,
``sklearn.datasets.load_sample_images``) and matplotlib's ``grace_hopper.jpg`` (600×512,
``matplotlib.cbook.get_sample_data``). Each is cut into non-overlapping 32×32 tiles at scale 1 and
at scale ½ (an exact 2×2 box average, ``Image.reduce(2)``): 1,000 tiles in all.

Textured tiles only. Much of these photographs is sky or blurred background: smooth tiles that are
all alike. With them, 71 % of the held-out tiles had a training tile within 25 dB PSNR, so the
held-out floor of the memorization metrics (held-out images vs their nearest training image) read
like copying. A tile is kept when its mean absolute difference between neighbouring pixels is at
least ``MIN_TEXTURE`` (5 grey levels); then no held-out tile has a training tile within 25 dB
(median nearest-neighbour PSNR 14 dB).

Split by region, not by tile. Neighbouring tiles of one photograph share texture, colour and edges,
so a random tile split would put the near-twin of every held-out tile in the training set. Instead
each photograph's right-hand strip, x ≥ 75 % of its width, is held out at both scales
("validation": 57 tiles; the flower's strip has no textured tile), the training tiles lie wholly
in x ≤ 70 % (404 tiles), and tiles that would cross the 70-75 % guard band are dropped. No pixel of
the held-out strip, at either scale, is inside a training tile.

Every tile keeps where it came from (``photo``, ``scale``, ``top``, ``left`` in the pixels of its
scale), so tests and users can check the split. The table is deterministic (fixed photographs,
fixed tiling, PNG-encoded), hence so is its ``datasets`` fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, NamedTuple, cast

import numpy as np
from PIL import Image as PILImage

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

# -------------------------------------------------------------------------------------------- digits

DIGITS_SOURCE = "sklearn-digits"
"""The ``path`` value that selects the digits."""

SKLEARN_DIGITS_MAX_VALUE = 16
"""scikit-learn stores digit pixels as counts 0..16 (4x4 blocks of a 32x32 bitmap)."""


def digits_to_uint8(values: np.ndarray) -> np.ndarray:
    """Rescale 0..16 pixel counts to 0..255 (``x * 255 / 16``, rounded) so that they are ordinary 8-bit pixels."""
    return np.rint(values * (255.0 / SKLEARN_DIGITS_MAX_VALUE)).astype(np.uint8)


def load_digits_dataset() -> Dataset:
    """All 1797 digits as grayscale 8x8 PIL images in an ``Image()`` column, plus their ``label`` (0..9).

    The images are PNG-encoded inside an in-memory Arrow table, so the rest of the pipeline treats
    them exactly like images from a folder or a parquet file. The table content is deterministic,
    hence so is the dataset fingerprint.
    """
    from datasets import ClassLabel, Dataset, Features, Image  # `datasets` too: importing this module must stay cheap
    from sklearn.datasets import load_digits  # scikit-learn is slow to import; only this source needs it

    digits = load_digits()
    images = [PILImage.fromarray(pixels) for pixels in digits_to_uint8(digits.images)]
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    return Dataset.from_dict({"image": images, "label": digits.target.tolist()}, features=features)


# -------------------------------------------------------------------------------------------- photo crops

PHOTO_CROPS_SOURCE = "sample-photos-32"
"""The ``path`` value that selects the photo crops."""

TILE = 32
SCALES = (1, 2)  # downsampling factors: scale 1 and scale ½
PHOTOS = ("china", "flower", "grace_hopper")
TRAIN_MAX_X = 0.70  # a training tile ends at or before this share of the photo's width
VAL_MIN_X = 0.75  # a held-out tile starts at or after this share of the photo's width
MIN_TEXTURE = 5.0  # mean absolute difference of neighbouring pixels (0..255) a kept tile has at least


class Tile(NamedTuple):
    """One crop and where it came from: ``top``/``left`` in pixels of the photo at ``1/scale``."""

    image: PILImage.Image
    photo: str
    scale: int
    top: int
    left: int


def load_photo(name: str) -> PILImage.Image:
    """One of ``PHOTOS`` as an RGB PIL image, read from the package that ships it."""
    if name == "grace_hopper":
        from matplotlib import cbook  # matplotlib is slow to import; only this photograph needs it

        with cast(IO[bytes], cbook.get_sample_data("grace_hopper.jpg")) as file:  # a .jpg opens as a file (arrays are .npy/.npz)
            return PILImage.open(file).convert("RGB")
    from sklearn.datasets import load_sample_image  # scikit-learn is slow to import, too

    return PILImage.fromarray(load_sample_image(f"{name}.jpg"))


def region_of(left: int, width: int) -> str | None:
    """ "train", "validation" or ``None`` (the guard band) for a tile starting at ``left`` in a photo ``width`` wide."""
    if left + TILE <= TRAIN_MAX_X * width:
        return "train"
    if left >= VAL_MIN_X * width:
        return "validation"
    return None


def texture(tile: PILImage.Image) -> float:
    """Mean absolute difference between horizontally and vertically neighbouring pixel values (0..255)."""
    pixels = np.asarray(tile, dtype=np.float32)  # (H, W, 3)
    return float((np.abs(np.diff(pixels, axis=0)).mean() + np.abs(np.diff(pixels, axis=1)).mean()) / 2)


def tiles(photo: PILImage.Image, name: str, scale: int) -> Iterator[tuple[str | None, Tile]]:
    """Every non-overlapping 32×32 tile of ``photo`` reduced by ``scale``, row by row, with its region."""
    scaled = photo.reduce(scale) if scale > 1 else photo
    width, height = scaled.size
    for top in range(0, height - TILE + 1, TILE):
        for left in range(0, width - TILE + 1, TILE):
            crop = scaled.crop((left, top, left + TILE, top + TILE))
            yield region_of(left, width), Tile(crop, name, scale, top, left)


def load_photo_crops_dataset() -> DatasetDict:
    """The kept tiles as ``{"train", "validation"}``: an ``image`` column (32×32 RGB) and the tile's origin."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

    splits: dict[str, list[Tile]] = {"train": [], "validation": []}
    for name in PHOTOS:
        photo = load_photo(name)
        for scale in SCALES:
            for region, tile in tiles(photo, name, scale):
                if region is not None and texture(tile.image) >= MIN_TEXTURE:
                    splits[region].append(tile)
    features = Features(
        {"image": Image(), "photo": ClassLabel(names=list(PHOTOS)), "scale": Value("int32"), "top": Value("int32"), "left": Value("int32")}
    )
    return DatasetDict(
        {
            split: Dataset.from_dict({field: [getattr(tile, field) for tile in rows] for field in Tile._fields}, features=features)
            for split, rows in splits.items()
        }
    )

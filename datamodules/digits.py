"""scikit-learn's bundled 8x8 digits as a Hugging Face ``Dataset``: the default, offline image source.

The digits ship inside the scikit-learn wheel, so this source needs no network and no cache. It
is what tests, smoke runs and the demo sweep train on.
"""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

DIGITS_SOURCE = "sklearn-digits"
"""The ``path`` value that selects this source."""

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
    from sklearn.datasets import load_digits  # scikit-learn is slow to import; only this source needs it

    digits = load_digits()
    images = [PILImage.fromarray(pixels) for pixels in digits_to_uint8(digits.images)]
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    return Dataset.from_dict({"image": images, "label": digits.target.tolist()}, features=features)

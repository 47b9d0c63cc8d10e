"""The one uint8 <-> [-1, 1] pixel codec: how every model sees an image, and how it is saved again.

``uint8_to_signed_unit`` is ``x / 127.5 - 1`` (0 and 255 land exactly on -1 and 1); its inverse
``signed_unit_to_uint8`` clamps to [-1, 1] and rounds, as a saved image would hold the pixels, so
``signed_unit_to_uint8(uint8_to_signed_unit(x)) == x`` for every uint8 ``x``.
"""

import torch
from torch import Tensor


def uint8_to_signed_unit(images: Tensor) -> Tensor:
    """uint8 0..255 -> float32 -1..1 (``x / 127.5 - 1``)."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


def signed_unit_to_uint8(images: Tensor) -> Tensor:
    """Float images in [-1, 1] -> uint8 as a saved image would hold them; uint8 passes through."""
    if images.dtype == torch.uint8:
        return images
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

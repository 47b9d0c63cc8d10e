"""Images -> token ids through an encoder: the one place that turns images into tokens.

The BL-AE's latent is tanh(encoder(x)) and its code the hard sign of that; tanh keeps the sign, so the
token ids are the packed signs of the encoder's raw output (``networks/bits.py``). Both the BL-AE
(``BinaryLatentAutoencoder.tokens``) and the frozen encoder that the token data module rebuilds from a
checkpoint (``TokenEncoder``) call ``encoder_tokens``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from networks.bits import pack_bits


def encoder_tokens(encoder: nn.Module, images: Tensor) -> Tensor:
    """(B, channels, H, W) images -> (B, h, w) token ids in [0, 2^C) of their hard codes."""
    return pack_bits(encoder(images))  # tanh keeps the sign, so it is skipped


class TokenEncoder(nn.Module):
    """The encoder of a BL-AE and its hard sign: images -> token ids, as ``BinaryLatentAutoencoder.tokens``."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, channels, H, W) images -> (B, h, w) token ids in [0, 2^C) of their hard codes."""
        return encoder_tokens(self.encoder, x)

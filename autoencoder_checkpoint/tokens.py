"""What the tokens of a BL-AE checkpoint are: their spec (vocabulary, grid) and the frozen encoder that makes them.

``autoencoder_spec(path)`` reads a checkpoint's hyper-parameters (no model built) and returns the token
vocabulary and grid, so a data module or a token model can size itself in ``__init__``.
``load_token_encoder(path)`` rebuilds only the encoder network with its trained weights: all that
turning images into tokens needs (``networks/token_encoder.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, TypeVar, cast

import torch
from torch import nn

from autoencoder_checkpoint.reader import check_unchanged, checked_autoencoder, weights_do_not_fit, weights_of
from autoencoder_checkpoint.recorded_networks import instantiate_network, recorded_networks
from networks.token_encoder import TokenEncoder


class AutoencoderSpec(NamedTuple):
    """What a token model needs to know about its BL-AE, read from the checkpoint alone."""

    num_bits: int
    """C: bits per latent cell; token ids lie in [0, 2^C)."""
    grid_height: int
    grid_width: int
    image_size: int
    channels: int
    sha256: str
    """Hex digest of the checkpoint file: the identity of the tokens."""
    path: str

    @property
    def vocab_size(self) -> int:
        return 2**self.num_bits

    @property
    def grid_shape(self) -> tuple[int, int]:
        return (self.grid_height, self.grid_width)


def autoencoder_spec(path: str | Path) -> AutoencoderSpec:
    """Token vocabulary and grid of a BL-AE checkpoint, from its hyper-parameters (builds only the encoder)."""
    checkpoint, sha256 = checked_autoencoder(path)
    hparams = checkpoint["hyper_parameters"]
    encoder = instantiate_network(recorded_networks(checkpoint, path)["encoder"])
    image_size, channels = int(hparams["image_size"]), int(hparams["channels"])
    # every encoder exposes int ``downsample`` and ``latent_channels`` (networks/autoencoder.py)
    downsample, latent_channels = cast(int, encoder.downsample), cast(int, encoder.latent_channels)
    grid = image_size // downsample
    return AutoencoderSpec(int(latent_channels), grid, grid, image_size, channels, sha256, str(path))


def check_fits_data(spec: AutoencoderSpec, image_size: int, channels: int) -> None:
    """The BL-AE must see the images it was trained on: same size and channels, one line naming both."""
    if (spec.image_size, spec.channels) != (image_size, channels):
        raise ValueError(
            f"autoencoder {spec.path!r} was trained on image_size={spec.image_size}, channels={spec.channels}"
            f" but the data has --data.image_size={image_size}, --data.channels={channels}"
        )


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def freeze(model: ModuleT) -> ModuleT:
    """Eval mode and no gradients. A module that holds it must keep it in eval (``train()`` recurses)."""
    model.eval()
    model.requires_grad_(False)
    return model


def load_token_encoder(path: str | Path, expected_sha256: str | None = None) -> TokenEncoder:
    """The trained encoder of the BL-AE at ``path``, on CPU, frozen; ``expected_sha256`` as ``check_unchanged``."""
    checkpoint, sha256 = checked_autoencoder(path)
    check_unchanged(path, sha256, expected_sha256)
    with torch.random.fork_rng(devices=[]):  # the random init that load_state_dict overwrites must not shift the caller's RNG
        encoder = instantiate_network(recorded_networks(checkpoint, path)["encoder"])
    try:
        encoder.load_state_dict(weights_of(checkpoint, "encoder"), strict=True)
    except RuntimeError as err:
        raise weights_do_not_fit(path, err) from err
    return freeze(TokenEncoder(encoder))

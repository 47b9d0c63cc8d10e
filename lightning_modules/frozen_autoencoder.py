"""Rebuild a whole BL-AE from its checkpoint, frozen: what a token model decodes its samples with.

Reading the file (what it is, its networks, its weights) is ``autoencoder_checkpoint/``; this
module only adds the model class, which data modules must not import.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import cast

import torch

from autoencoder_checkpoint.reader import check_unchanged, checked_autoencoder, weights_do_not_fit
from autoencoder_checkpoint.recorded_networks import NETWORK_ARGUMENTS, instantiate_network, recorded_networks
from autoencoder_checkpoint.tokens import freeze
from lightning_modules.blae import BinaryLatentAutoencoder
from networks.binarizer import NoiseInjectionBinarizer
from runtime.argument_errors import import_class

NOT_MODEL_ARGUMENTS = ("optimizer", "scheduler")
"""Recorded init arguments a frozen autoencoder does not need (and that may not rebuild outside the CLI)."""


def load_autoencoder(path: str | Path, expected_sha256: str | None = None) -> BinaryLatentAutoencoder:
    """The BL-AE of ``path`` on CPU, frozen (eval, ``requires_grad=False``), with its trained weights.

    ``expected_sha256``: refuse a file whose content changed (e.g. ``last.ckpt`` overwritten by a
    still running job) since the tokens were made from it.
    """
    checkpoint, sha256 = checked_autoencoder(path)
    check_unchanged(path, sha256, expected_sha256)
    hparams = checkpoint["hyper_parameters"]
    networks = recorded_networks(checkpoint, path)
    kwargs = {
        key: value for key, value in hparams.items() if not key.startswith("_") and key not in NETWORK_ARGUMENTS + NOT_MODEL_ARGUMENTS
    }
    # checked_autoencoder accepted the file only if its recorded class imports and is a BL-AE (or a subclass)
    cls = cast(type[BinaryLatentAutoencoder], import_class(hparams["_class_path"])) if "_class_path" in hparams else BinaryLatentAutoencoder
    # fork_rng: the random init that load_state_dict overwrites must not shift the caller's RNG stream
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.filterwarnings("ignore", message=r".*is an instance of `nn.Module`")  # outside the CLI
        model = cls(
            encoder=instantiate_network(networks["encoder"]),
            decoder=instantiate_network(networks["decoder"]),
            # the recorded binarizer argument of a BL-AE, typed NoiseInjectionBinarizer there
            binarizer=cast(NoiseInjectionBinarizer, instantiate_network(networks["binarizer"])) if networks.get("binarizer") else None,
            **kwargs,
        )
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as err:
        raise weights_do_not_fit(path, err) from err
    return freeze(model)

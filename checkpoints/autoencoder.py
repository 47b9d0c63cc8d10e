"""A BL-AE checkpoint file as everyone else sees it: what it is, its token spec, its frozen token encoder.

Data and models both read these files, so the reader lives here, beside neither: it imports only
``networks`` and ``runtime`` (``tests/house/test_import_graph.py``). ``autoencoder_spec(path)`` reads
a checkpoint's hyper-parameters (no model built) and returns the token vocabulary and grid, so a
data module or a token model can size itself in ``__init__``. ``load_token_encoder(path)`` rebuilds
only the encoder network with its trained weights: all that turning images into tokens needs.
Rebuilding the whole BL-AE (to decode) is the models' business: ``lightning_modules/autoencoder_checkpoint.py``.

Which networks a checkpoint holds is read from its ``hyper_parameters``: ``encoder``/``decoder``/
``binarizer`` as ``{class_path, init_args}`` (LightningCLI records them so) or as module objects (a
BL-AE built in Python). A checkpoint that records neither (made before ``BinaryLatentAutoencoder``
saved its networks) is read with the ``config.yaml`` that ``train.py`` wrote into its run folder
(``<run>/config.yaml`` beside ``<run>/checkpoints/*.ckpt``).

The checkpoint is loaded with ``torch.load(weights_only=True)``; the only classes it may name are
``nn.Module``/optimizer/scheduler classes of ``networks``, ``lightning_modules``, ``torch.nn`` and
``torch.optim``, so a stray or hostile file cannot run code.

Every failure is one line that names the file: missing, not a checkpoint, a checkpoint of some
other model (named when recognisable), or a BL-AE that does not fit the data.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from jsonargparse import ArgumentParser
from torch import nn

from networks.bits import pack_bits
from runtime.argument_errors import import_class
from runtime.checkpoint_file import TORCH_FILE_MAGICS, existing_file, load_error_line

NETWORK_ARGUMENTS = ("encoder", "decoder", "binarizer")
"""BL-AE init arguments that are networks."""

NOT_MODEL_ARGUMENTS = ("optimizer", "scheduler")
"""Recorded init arguments a frozen autoencoder does not need (and that may not rebuild outside the CLI)."""

AUTOENCODER_CLASS_PATH = "lightning_modules.blae.BinaryLatentAutoencoder"
"""The class whose checkpoints these are, by name: a checkpoint records its class path the same way."""

_HASH_CHUNK = 1 << 20
_TRUSTED_MODULE_PREFIXES = ("networks.", "lightning_modules.", "torch.nn.modules.", "torch.optim.")
"""Where the classes that a checkpoint's hyper-parameters may hold come from (see ``read_checkpoint``)."""


class NotAnAutoencoderCheckpointError(ValueError):
    """The file exists but is not a BL-AE checkpoint; the message says what it is when that is recognisable."""


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


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], str]:
    """The checkpoint dict (on CPU) and the sha256 of exactly the bytes it was loaded from.

    Loaded with ``weights_only=True``, so a random or hostile pickle cannot run code. The only
    classes let through are networks and optimizers of this project, ``torch.nn`` and ``torch.optim``:
    a BL-AE built outside LightningCLI records its network objects in its hyper-parameters.
    """
    file = existing_file(path, "autoencoder checkpoint")
    data = file.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if not data.startswith(TORCH_FILE_MAGICS):
        raise NotAnAutoencoderCheckpointError(
            f"{str(path)!r} is not a PyTorch checkpoint (neither a torch zip archive nor a pickle; {len(data)} bytes)"
        )
    allowed: list[type] = []
    while True:
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), sha256
        except Exception as err:  # zip/pickle errors come in many types
            trusted = _trusted_class(_unsupported_global(err))
            if trusted is None or trusted in allowed:
                raise NotAnAutoencoderCheckpointError(
                    f"{str(path)!r} is not a checkpoint that torch.load(weights_only=True) can read: {load_error_line(err)}"
                ) from err
            allowed.append(trusted)


def _unsupported_global(err: Exception) -> str | None:
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    return match.group(1) if match else None


def _trusted_class(name: str | None) -> type | None:
    """A network/optimizer class that a checkpoint may name, or ``None`` for anything else."""
    if name is None or not name.startswith(_TRUSTED_MODULE_PREFIXES):
        return None
    value = import_class(name)
    trusted_bases = (nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
    return value if isinstance(value, type) and issubclass(value, trusted_bases) else None


def _checkpoint_kind(checkpoint: Any) -> str | None:
    """``None`` for a BL-AE checkpoint, else a short description of what the file is."""
    if not isinstance(checkpoint, dict):
        return f"a pickled {type(checkpoint).__name__}, not a Lightning checkpoint"
    if "state_dict" not in checkpoint:
        return f"a torch file without a state_dict, not a Lightning checkpoint (keys: {sorted(map(str, checkpoint))[:6]})"
    hparams = checkpoint.get("hyper_parameters") or {}
    class_path = hparams.get("_class_path")
    if class_path is not None:
        if _is_autoencoder_class(class_path):
            return None
        token_model = " trained on BL-AE tokens (γ-ARVM or another token model)" if _uses_autoencoder(hparams) else ""
        return f"a checkpoint of {class_path}{token_model}, not of a BinaryLatentAutoencoder"
    if _uses_autoencoder(hparams):
        return "a checkpoint of a model trained on BL-AE tokens (γ-ARVM or another token model), not of the BL-AE itself"
    prefixes = sorted({key.split(".")[0] for key in checkpoint["state_dict"]})
    if not {"encoder", "decoder"} <= set(prefixes):
        return f"a Lightning checkpoint of a model without encoder/decoder weights (its modules: {prefixes[:6]})"
    if not {"image_size", "channels"} <= set(hparams):
        return "a Lightning checkpoint with encoder/decoder weights but no image_size/channels hyper-parameters"
    return None


def _uses_autoencoder(hparams: dict[str, Any]) -> bool:
    return any(key in hparams for key in ("autoencoder", "autoencoder_path", "autoencoder_sha256"))


def _is_autoencoder_class(class_path: str) -> bool:
    """The recorded class is the BL-AE or a subclass of it (compared by name, so this file imports no model)."""
    cls = import_class(class_path)
    return isinstance(cls, type) and any(f"{base.__module__}.{base.__qualname__}" == AUTOENCODER_CLASS_PATH for base in cls.__mro__)


def checked_autoencoder(path: str | Path) -> tuple[dict[str, Any], str]:
    checkpoint, sha256 = read_checkpoint(path)
    kind = _checkpoint_kind(checkpoint)
    if kind is not None:
        raise NotAnAutoencoderCheckpointError(f"{str(path)!r} is not a BL-AE checkpoint: it is {kind}")
    return checkpoint, sha256


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def _is_class_config(value: Any) -> bool:
    return isinstance(value, dict) and "class_path" in value


def _is_network(value: Any) -> bool:
    return _is_class_config(value) or isinstance(value, nn.Module)


def _run_config_files(path: Path) -> list[Path]:
    """Where train.py leaves the run's config: ``<run>/config.yaml`` for ``<run>/checkpoints/x.ckpt``."""
    return [folder / "config.yaml" for folder in (path.parent.parent, path.parent)]


def recorded_networks(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``{encoder, decoder, binarizer}``, each a ``{class_path, init_args}`` config, a module, or None.

    From the hyper-parameters (configs under LightningCLI, module objects when the BL-AE was built
    in Python), else from the run's ``config.yaml`` (checkpoints that recorded no networks).
    """
    hparams = checkpoint.get("hyper_parameters") or {}
    if _is_network(hparams.get("encoder")) and _is_network(hparams.get("decoder")):
        return _with_image_channels({name: hparams.get(name) for name in NETWORK_ARGUMENTS}, hparams.get("channels"))
    for config_file in _run_config_files(Path(path).expanduser()):
        if not config_file.is_file():
            continue
        model = (yaml.safe_load(config_file.read_text()) or {}).get("model") or {}
        recorded_class = hparams.get("_class_path")
        if recorded_class is not None and model.get("class_path") not in (None, recorded_class):
            continue  # the config of another run that shares the folder
        init_args = model.get("init_args") or {}
        if _is_class_config(init_args.get("encoder")) and _is_class_config(init_args.get("decoder")):
            return _with_image_channels({name: init_args.get(name) for name in NETWORK_ARGUMENTS}, hparams.get("channels"))
    raise NotAnAutoencoderCheckpointError(
        f"{str(path)!r} does not record its encoder/decoder: neither its hyper_parameters nor a run config.yaml"
        f" ({', '.join(str(f) for f in _run_config_files(Path(path).expanduser()))}) name them"
    )


def _with_image_channels(networks: dict[str, Any], channels: int | None) -> dict[str, Any]:
    """The networks' image channels follow the data (a CLI link), so a recorded encoder/decoder config may
    leave them out: they are the model's recorded ``channels``."""
    if channels is None:
        return networks
    filled = dict(networks)
    for name in ("encoder", "decoder"):
        network = networks.get(name)
        if _is_class_config(network) and "image_channels" not in (network.get("init_args") or {}):
            filled[name] = {**network, "init_args": {**(network.get("init_args") or {}), "image_channels": int(channels)}}
    return filled


def instantiate_network(network: dict[str, Any] | nn.Module) -> nn.Module:
    """A ``{class_path, init_args}`` config -> module, parsed like LightningCLI does; a module is returned as is."""
    if isinstance(network, nn.Module):
        return network
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(nn.Module, "net", fail_untyped=False)
    return parser.instantiate_classes(parser.parse_object({"net": network})).net


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def autoencoder_spec(path: str | Path) -> AutoencoderSpec:
    """Token vocabulary and grid of a BL-AE checkpoint, from its hyper-parameters (builds only the encoder)."""
    checkpoint, sha256 = checked_autoencoder(path)
    hparams = checkpoint["hyper_parameters"]
    encoder = instantiate_network(recorded_networks(checkpoint, path)["encoder"])
    image_size, channels = int(hparams["image_size"]), int(hparams["channels"])
    grid = image_size // encoder.downsample
    return AutoencoderSpec(int(encoder.latent_channels), grid, grid, image_size, channels, sha256, str(path))


def check_fits_data(spec: AutoencoderSpec, image_size: int, channels: int) -> None:
    """The BL-AE must see the images it was trained on: same size and channels, one line naming both."""
    if (spec.image_size, spec.channels) != (image_size, channels):
        raise ValueError(
            f"autoencoder {spec.path!r} was trained on image_size={spec.image_size}, channels={spec.channels}"
            f" but the data has --data.image_size={image_size}, --data.channels={channels}"
        )


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients. A module that holds it must keep it in eval (``train()`` recurses)."""
    model.eval()
    model.requires_grad_(False)
    return model


def weights_of(checkpoint: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """The part of a Lightning ``state_dict`` under ``prefix.`` (a submodule's own state_dict)."""
    return {key[len(prefix) + 1:]: value for key, value in checkpoint["state_dict"].items() if key.startswith(f"{prefix}.")}


def check_unchanged(path: str | Path, sha256: str, expected_sha256: str | None) -> None:
    """Refuse a file whose content changed (e.g. ``last.ckpt`` overwritten by a still running job) since the tokens were made."""
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise ValueError(
            f"autoencoder {str(path)!r} changed on disk: sha256 {sha256[:16]}… but the tokens were made from {expected_sha256[:16]}…"
        )


def weights_do_not_fit(path: str | Path, err: RuntimeError) -> NotAnAutoencoderCheckpointError:
    return NotAnAutoencoderCheckpointError(
        f"{str(path)!r}: its weights do not fit the recorded networks ({' '.join(str(err).split())[:300]})"
    )


class TokenEncoder(nn.Module):
    """The encoder of a BL-AE and its hard sign: images -> token ids, as ``BinaryLatentAutoencoder.tokens``."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, channels, H, W) images -> (B, h, w) token ids in [0, 2^C) of their hard codes."""
        return pack_bits(self.encoder(x))  # tanh keeps the sign, so it is skipped


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

"""A BL-AE checkpoint file as everyone else sees it: is it one, of which model, its weights.

Data and models both read these files, so the reader lives here, beside neither: the package imports
only ``networks`` and ``runtime`` (``tests/house/test_import_graph.py``). Its networks are
``recorded_networks.py``; its token spec and frozen token encoder ``tokens.py``. Rebuilding the whole
BL-AE (to decode) is the models' business: ``lightning_modules/frozen_autoencoder.py``.

The checkpoint is loaded with ``torch.load(weights_only=True)`` (``runtime/checkpoint_files.py``); the
only classes it may name are ``nn.Module``/optimizer/scheduler classes of ``networks``,
``lightning_modules``, ``torch.nn`` and ``torch.optim``, so a stray or hostile file cannot run code.

Every failure is one line that names the file: missing, not a checkpoint, a checkpoint of some
other model (named when recognisable), or a BL-AE that does not fit the data.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runtime.argument_errors import import_class
from runtime.checkpoint_files import TORCH_FILE_MAGICS, existing_file, load_error_line, load_torch_file

AUTOENCODER_CLASS_PATH = "lightning_modules.blae.BinaryLatentAutoencoder"
"""The class whose checkpoints these are, by name: a checkpoint records its class path the same way."""

_HASH_CHUNK = 1 << 20
_TRUSTED_MODULE_PREFIXES = ("networks.", "lightning_modules.", "torch.nn.modules.", "torch.optim.")
"""Where the classes that a checkpoint's hyper-parameters may hold come from (see ``read_checkpoint``)."""


class NotAnAutoencoderCheckpointError(ValueError):
    """The file exists but is not a BL-AE checkpoint; the message says what it is when that is recognisable."""


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
            return load_torch_file(io.BytesIO(data), trusted_classes=allowed), sha256
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
# Weights
# --------------------------------------------------------------------------------------------


def weights_of(checkpoint: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """The part of a Lightning ``state_dict`` under ``prefix.`` (a submodule's own state_dict)."""
    return {key[len(prefix) + 1 :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(f"{prefix}.")}


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

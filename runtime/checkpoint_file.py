"""A checkpoint file checked before anything is built: is it one, and of the model this command trains?

LightningCLI reads the hyper-parameters of ``--ckpt_path`` and lets them replace the command's model
(class and arguments): a VAE checkpoint given to a BL-AE ``fit`` trains a VAE, and a text file ends in
an ``IndexError`` inside ``torch.load``. ``read_checkpoint_metadata`` and ``model_mismatch`` catch both
first, each as one line naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from runtime.errors import BadInput

TORCH_FILE_MAGICS = (b"PK\x03\x04", b"\x80")
"""torch.save writes a zip archive (PyTorch >= 1.6) or, legacy, a pickle stream."""


def load_error_line(err: Exception) -> str:
    """The informative line of a torch.load error (weights_only errors start with a long generic preamble)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if "Unsupported global" in line or "Unsupported operand" in line]
    return " ".join((specific or lines or [type(err).__name__])[0].split())[:300]


def existing_file(path: str | Path, what: str) -> Path:
    file = Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if file.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a folder, not a .ckpt file")
    return file


def read_checkpoint_metadata(path: str | Path, what: str = "--ckpt_path") -> dict[str, Any]:
    """The Lightning checkpoint at ``path`` with its tensors memory-mapped, not read; ``BadInput`` otherwise."""
    file = existing_file(path, what)
    with open(file, "rb") as handle:
        head = handle.read(4)
    if not head.startswith(TORCH_FILE_MAGICS):
        raise BadInput(f"{what} {str(path)!r} is not a PyTorch checkpoint (neither a torch zip archive nor a pickle;"
                       f" {file.stat().st_size} bytes)")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True, mmap=head.startswith(b"PK"))
    except Exception as err:  # zip/pickle errors come in many types
        raise BadInput(f"{what} {str(path)!r} is not a checkpoint that torch.load(weights_only=True) can read:"
                       f" {load_error_line(err)}") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise BadInput(f"{what} {str(path)!r} is a torch file but not a Lightning checkpoint (no state_dict)")
    return checkpoint


def plain(value: Any) -> Any:
    """Parsed config values (jsonargparse Namespaces, tuples) as plain dicts and lists, for comparing."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _differences(recorded: Any, configured: Any, key: str) -> list[str]:
    """Dotted keys whose values differ, descending into dicts; a key missing on either side is no difference."""
    if isinstance(recorded, dict) and isinstance(configured, dict):
        return [diff for name in recorded if name in configured
                for diff in _differences(recorded[name], configured[name], f"{key}.{name}")]
    return [] if recorded == configured else [f"{key}={recorded!r} in the checkpoint, {configured!r} in this command"]


def model_mismatch(checkpoint: dict[str, Any], model_config: Any) -> str | None:
    """Why ``checkpoint`` does not hold the model ``model_config`` (``{class_path, init_args}``) builds, or None."""
    hparams = checkpoint.get("hyper_parameters") or {}
    recorded_class = hparams.get("_class_path")
    model = plain(model_config) or {}
    configured_class = model.get("class_path")
    if recorded_class is None or configured_class is None:
        return None  # not written by LightningCLI: nothing recorded to compare
    if recorded_class != configured_class:
        return f"it is a checkpoint of {recorded_class}, but this command builds {configured_class}"
    recorded = {k: plain(v) for k, v in hparams.items() if not k.startswith("_")}
    differences = _differences(recorded, model.get("init_args") or {}, "model.init_args")
    if differences:
        more = f" (and {len(differences) - 2} more)" if len(differences) > 2 else ""
        return (f"it was trained with other settings: {'; '.join(differences[:2])}{more};"
                " a checkpoint resumes exactly the model it was trained as")
    return None

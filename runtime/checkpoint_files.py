"""Checkpoint files as plumbing: the one ``torch.load``, is a file a checkpoint (of this command's model),
and checkpoints written atomically.

Loading. ``load_torch_file`` is the project's one ``torch.load``: on CPU, ``weights_only=True`` (a stray
or hostile pickle cannot run code), the classes a caller trusts let through by name. Each caller says
in its own one line what a failure means for it.

Checking. LightningCLI reads the hyper-parameters of ``--ckpt_path`` and lets them replace the command's
model (class and arguments): a VAE checkpoint given to a BL-AE ``fit`` trains a VAE, and a text file ends
in an ``IndexError`` inside ``torch.load``. ``read_checkpoint_metadata`` and ``model_mismatch`` catch both
first, each as one line naming the file.

Writing: checkpoints that are complete or absent, never a truncated ``last.ckpt`` that the next resume
trips over. Lightning's ``TorchCheckpointIO`` serializes into memory, then lets fsspec write the bytes to
a temporary file in the *system* temp folder and ``shutil.move`` it over the target. When the checkpoint
folder is on another file system (an NFS/Lustre ``outputs/`` on a cluster, a local ``/tmp``), that move
is a copy: a job killed during it leaves a truncated ``last.ckpt``, and a killed job leaks its temp file
in ``/tmp``. Nothing is fsynced, so a node crash can also leave an empty file.
``AtomicCheckpointIO`` writes ``torch.save`` straight into a temporary file *in the checkpoint's own
folder*, fsyncs it, ``os.replace``-s it over the target (atomic on POSIX within one file system) and
fsyncs the folder. A kill at any moment leaves either the previous file or the new one. Temporary
names (``.partial-ckpt-<host>-<pid>-<random>.tmp``) are never mistaken for checkpoints (Lightning's
``--ckpt_path last`` looks for ``last*.ckpt``) and are removed once the process that wrote them is dead.
``runtime/cli.py`` installs it for every run whose strategy uses the plain ``TorchCheckpointIO`` (so a user's
own ``--trainer.plugins`` CheckpointIO is respected). Remote paths (``s3://`` ...) keep Lightning's writer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from runtime.atomic_files import atomic_write, remove_dead_partials
from runtime.errors import BadInput

TORCH_FILE_MAGICS = (b"PK\x03\x04", b"\x80")
"""torch.save writes a zip archive (PyTorch >= 1.6) or, legacy, a pickle stream."""

PARTIAL_PREFIX = ".partial-ckpt-"

# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_torch_file(source: str | Path | IO[bytes], mmap: bool | None = None, trusted_classes: Sequence[type] = ()) -> Any:
    """What ``torch.save`` wrote to ``source`` (a path or an open binary file), on CPU, ``weights_only``.

    ``mmap=True`` maps the tensors of a zip file instead of reading them (``None``: torch's default);
    ``trusted_classes`` are the classes beyond plain data that the file may name. Raises what
    ``torch.load`` raises (zip/pickle errors come in many types): see ``load_error_line``.
    """
    with torch.serialization.safe_globals(list(trusted_classes)):
        return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)


def load_error_line(err: Exception) -> str:
    """The informative line of a torch.load error (weights_only errors start with a long generic preamble)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if "Unsupported global" in line or "Unsupported operand" in line]
    return " ".join((specific or lines or [type(err).__name__])[0].split())[:300]


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a ``Path`` when it names a file; one line naming ``what`` when it is missing or a folder."""
    file = Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if file.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a folder, not a .ckpt file")
    return file


# --------------------------------------------------------------------------------------------
# Checking: a Lightning checkpoint, of the model this command builds
# --------------------------------------------------------------------------------------------


def read_checkpoint_metadata(path: str | Path, what: str = "--ckpt_path") -> dict[str, Any]:
    """The Lightning checkpoint at ``path`` with its tensors memory-mapped, not read; ``BadInput`` otherwise."""
    file = existing_file(path, what)
    with open(file, "rb") as handle:
        head = handle.read(4)
    if not head.startswith(TORCH_FILE_MAGICS):
        raise BadInput(
            f"{what} {str(path)!r} is not a PyTorch checkpoint (neither a torch zip archive nor a pickle; {file.stat().st_size} bytes)"
        )
    try:
        checkpoint = load_torch_file(file, mmap=head.startswith(b"PK"))
    except Exception as err:  # zip/pickle errors come in many types
        raise BadInput(
            f"{what} {str(path)!r} is not a checkpoint that torch.load(weights_only=True) can read: {load_error_line(err)}"
        ) from err
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
        return [diff for name in recorded if name in configured for diff in _differences(recorded[name], configured[name], f"{key}.{name}")]
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
        return (
            f"it was trained with other settings: {'; '.join(differences[:2])}{more};"
            " a checkpoint resumes exactly the model it was trained as"
        )
    return None


# --------------------------------------------------------------------------------------------
# Writing: atomic and durable
# --------------------------------------------------------------------------------------------


def remove_dead_checkpoint_partials(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary checkpoint files that processes of this host left when they were killed."""
    return remove_dead_partials(folder, PARTIAL_PREFIX)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic and durable on local file systems (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        if not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        remove_dead_checkpoint_partials(Path(path).parent)
        atomic_write(path, lambda file: self.write_payload(checkpoint, file), prefix=PARTIAL_PREFIX)

    def write_payload(self, checkpoint: dict[str, Any], file: BinaryIO) -> None:
        """Serialize ``checkpoint`` into the open temporary file (streamed: no second copy in memory)."""
        torch.save(checkpoint, file)

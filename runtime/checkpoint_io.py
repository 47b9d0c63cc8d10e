"""Checkpoints that are complete or absent: never a truncated ``last.ckpt`` that the next resume trips over.

Lightning's ``TorchCheckpointIO`` serializes into memory, then lets fsspec write the bytes to a
temporary file in the *system* temp folder and ``shutil.move`` it over the target. When the
checkpoint folder is on another file system (an NFS/Lustre ``outputs/`` on a cluster, a local
``/tmp``), that move is a copy: a job killed during it leaves a truncated ``last.ckpt``, and a killed
job leaks its temp file in ``/tmp``. Nothing is fsynced, so a node crash can also leave an empty file.

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
from pathlib import Path
from typing import Any, BinaryIO

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from runtime.atomic_files import atomic_write, remove_dead_partials

PARTIAL_PREFIX = ".partial-ckpt-"


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

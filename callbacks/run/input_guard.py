"""Refuse batches the models would silently misread: images outside [-1, 1], NaN pixels, token ids out of range.

Every model here expects ``batch["image"]`` as float in [-1, 1] (``x / 127.5 - 1`` of uint8 pixels)
and ``batch["tokens"]`` as ids in [0, 2^C). A data module that serves 0..255 or 0..1 pixels, or a
token cache of another vocabulary, would train without any error and give wrong numbers.
``BatchGuard`` (added to every run by ``train.py``) checks the first ``check_batches`` batches of
every epoch of every stage, on every rank, and stops with one line naming the stage, batch, key and
the values it found.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from runtime.errors import MepsFault

IMAGE_TOLERANCE = 1e-4


class BadBatchError(MepsFault):
    """A batch whose values the models cannot take (a bad input: exit code 2)."""

    exit_code = 2


def batch_problem(batch: Any, num_bits: int | None) -> str | None:
    """Why ``batch`` is not what the models expect, or None."""
    if not isinstance(batch, dict):
        return None
    image = batch.get("image")
    if torch.is_tensor(image) and image.is_floating_point() and image.numel():
        finite = torch.isfinite(image)
        if not bool(finite.all()):
            return f"'image' holds {int((~finite).sum())} NaN/Inf value(s)"
        low, high = (float(v) for v in torch.aminmax(image.detach()))
        if low < -1 - IMAGE_TOLERANCE or high > 1 + IMAGE_TOLERANCE:
            return (
                f"'image' values lie in [{low:g}, {high:g}] but the models take images scaled to [-1, 1]"
                " (uint8 pixels x / 127.5 - 1): check the data module's transform"
            )
    tokens = batch.get("tokens")
    if torch.is_tensor(tokens) and tokens.numel():
        if tokens.is_floating_point():
            return f"'tokens' are {tokens.dtype}, not integer token ids"
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or (num_bits is not None and high >= 2**num_bits):
            bound = f"[0, {2**num_bits})" if num_bits is not None else "[0, ...)"
            return f"'tokens' ids lie in [{low}, {high}], outside {bound} of the {num_bits}-bit autoencoder"
    return None


class BatchGuard(Callback):
    def __init__(self, check_batches: int = 1):
        self.check_batches = check_batches

    def _check(self, stage: str, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx >= self.check_batches:
            return
        problem = batch_problem(batch, getattr(pl_module, "num_bits", None))
        if problem is not None:
            raise BadBatchError(f"{stage} batch {batch_idx} of epoch {trainer.current_epoch} (rank {trainer.global_rank}): {problem}")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._check("train", trainer, pl_module, batch, batch_idx)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._check("validation", trainer, pl_module, batch, batch_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._check("test", trainer, pl_module, batch, batch_idx)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._check("predict", trainer, pl_module, batch, batch_idx)

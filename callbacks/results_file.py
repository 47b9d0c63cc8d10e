"""ResultsFile: the run's final scalar metrics as JSON, for scripts (sweep.py) that drive train.py.

Written by global rank 0 when the stage has finished (never after a crash), atomically (temp file + rename), so a reader never sees half
a file and a crashed run leaves none.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class ResultsFile(Callback):
    def __init__(self, path: str):
        self.path = Path(path)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.write(trainer, "fit")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "validate":
            self.write(trainer, "validate")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.write(trainer, "test")

    def write(self, trainer: Trainer, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        record = {"stage": stage, "global_step": trainer.global_step, "metrics": metrics, "best_checkpoint": best,
                  "last_checkpoint": str(Path(best).with_name("last.ckpt")) if best else ""}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.path)

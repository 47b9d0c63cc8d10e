"""ResultsFile: the run's final scalar metrics as JSON, for scripts (sweep.py) that drive train.py.

Written by global rank 0 when the stage has finished (never after a crash or a preemption), atomically
(temp file + rename), so a reader never sees half a file and an interrupted run leaves none.
``best_checkpoint`` is the monitored top-1 ("" when the run never validated), ``last_checkpoint`` the
state at the end (``ResumableRun`` writes it even when training stops between validations).
``series`` gathers the curves of every callback that exposes ``results_series() -> {key: [[x, y], ...]}``
(e.g. the overlap callback's training curve ``"ovl/log10_mean": [[step, log10 OVL], ...]``); it is
``{}`` when none does. Non-finite values are written as JSON's ``-Infinity`` / ``NaN``, as in ``metrics``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from runtime.atomic_files import write_json


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
        checkpoint = trainer.checkpoint_callback
        record = {
            "stage": stage,
            "global_step": trainer.global_step,
            "metrics": metrics,
            "series": results_series(trainer),
            "best_checkpoint": getattr(checkpoint, "best_model_path", "") or "",
            "last_checkpoint": getattr(checkpoint, "last_model_path", "") or "",
        }
        write_json(self.path, record)


def results_series(trainer: Trainer) -> dict[str, list[list[float]]]:
    """The union of `results_series()` over the trainer's callbacks (a later callback's key wins)."""
    series: dict[str, list[list[float]]] = {}
    for callback in trainer.callbacks:  # type: ignore[attr-defined]  # Lightning sets it at run time
        provider = getattr(callback, "results_series", None)
        if callable(provider):
            series.update(provider())
    return series

"""A callback for the SLURM sweep test (`tests/e2e/test_sweep_slurm.py`): which of a sweep's runs is held mid-training."""

from __future__ import annotations

from pathlib import Path

from tests.preemption_helpers import HoldUntil


class MarkAndHold(HoldUntil):
    """`HoldUntil` that first writes ``<marker_dir>/<W&B run id>`` (the step reached) when it starts holding: a test
    finds the held run's sweep cell by that id (the cell's run.json), its job by the cell's job.json, and signals it
    while the run is sure to be in its training loop; the run goes on once the test writes ``release``."""

    def __init__(self, release: str, marker_dir: str, step: int = 2, timeout_s: float = 300.0):
        super().__init__(release, step, timeout_s)
        self.marker_dir = Path(marker_dir)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step and trainer.is_global_zero and not self.release.exists():
            marker = self.marker_dir / str(trainer.logger.version)
            if not marker.exists():
                self.marker_dir.mkdir(parents=True, exist_ok=True)
                marker.write_text(str(trainer.global_step))
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

"""A callback that holds a run mid-training until a scheduler's signal has reached it: a test signals a real job and
knows at which step the run stops, whatever the machine's speed and however late the signal is delivered."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lightning.pytorch import Callback

from callbacks.run.preemption import Preemption


class HoldUntilSignalled(Callback):
    """At global step ``step``, rank 0 writes ``<marker_dir>/reached`` and waits (at most ``timeout_s``) until the run's
    ``Preemption`` callback has received a stop signal; the step then runs and the run stops after it. A run that finds
    the marker at its start (the resumed one: the same command) does not wait."""

    def __init__(self, marker_dir: str, step: int = 5, timeout_s: float = 300.0):
        self.marker, self.step, self.timeout_s = Path(marker_dir) / "reached", step, timeout_s
        self.active = True

    def on_train_start(self, trainer, pl_module):
        self.active = not self.marker.exists()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.active or trainer.global_step != self.step or not trainer.is_global_zero:
            return
        self.active = False
        [preemption] = [callback for callback in trainer.callbacks if isinstance(callback, Preemption)]
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(f"{os.getpid()} {trainer.global_step}")
        deadline = time.monotonic() + self.timeout_s
        while preemption.requests.received is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the signal handler runs in between

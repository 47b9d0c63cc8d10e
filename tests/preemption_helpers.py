"""Callbacks that preemption tests select with ``--trainer.callbacks+=``: a scheduler's signal, from outside or inside."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lightning.pytorch import Callback


class SlowFrom(Callback):
    """From global step ``step`` on, every rank sleeps ``delay_s`` before each batch, and rank 0 writes
    ``<marker_dir>/reached`` once: a test waits for the marker and then signals the job from outside,
    like a scheduler, while the run is still mid-epoch. A run that finds the marker at its start (the
    resumed one: the same command) does not sleep."""

    def __init__(self, step: int = 3, delay_s: float = 1.0, marker_dir: str = "markers"):
        self.step, self.delay_s, self.marker = step, delay_s, Path(marker_dir) / "reached"
        self.active = True

    def on_train_start(self, trainer, pl_module):
        self.active = not self.marker.exists()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.active or trainer.global_step < self.step:
            return
        if trainer.is_global_zero and not self.marker.exists():
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text(f"{os.getpid()} {trainer.global_step}")
        time.sleep(self.delay_s)


class HoldUntil(Callback):
    """From global step ``step`` on, rank 0 waits before each batch until the file ``release`` exists (at most
    ``timeout_s``): a test holds a run mid-training, whatever the machine's speed, until it has seen what it waits for."""

    def __init__(self, release: str, step: int = 5, timeout_s: float = 300.0):
        self.release, self.step, self.timeout_s = Path(release), step, timeout_s

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step < self.step:
            return
        deadline = time.monotonic() + self.timeout_s
        while not self.release.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


class SignalAt(Callback):
    """Sends ``sig`` to this very process at the start of global step ``step`` on global rank ``rank`` (once)."""

    def __init__(self, step: int = 3, sig: str = "SIGTERM", rank: int = 0):
        self.step, self.sig, self.rank, self.sent = step, sig, rank, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.sent and trainer.global_step >= self.step and trainer.global_rank == self.rank:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.sig))

"""Progress as plain lines, for a log file (stdout is not a terminal): one line every N training steps and
one after each validation, instead of a progress bar's carriage-return updates (a log file would hold them
as one megabyte-long line). ``train.py`` uses it in place of Lightning's bar when stdout is not a TTY."""

from __future__ import annotations

import sys
import time

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar


def format_metrics(metrics: dict) -> str:
    """``{"train/loss": tensor(0.01234), "v_num": "ab"}`` -> ``"train/loss=0.01234"`` (scalars only, 4 significant digits)."""
    numbers = {
        k: float(v)
        for k, v in metrics.items()
        if k != "v_num" and (isinstance(v, (int, float)) or (isinstance(v, torch.Tensor) and v.numel() == 1))
    }
    return " ".join(f"{key}={value:.4g}" for key, value in numbers.items())


class LineProgress(ProgressBar):
    """A line every ``every_n_steps`` training steps (step, epoch, steps per second, the progress-bar metrics)
    and one after each validation and at the end."""

    def __init__(self, every_n_steps: int = 50):
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.enabled = True
        self.started = self.last_time = time.monotonic()
        self.last_step = 0

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def say(self, line: str) -> None:
        if self.enabled:
            print(f"[{time.monotonic() - self.started:7.1f} s] {line}", file=sys.stdout, flush=True)

    def total_steps(self, trainer: Trainer) -> str:
        return str(trainer.max_steps) if trainer.max_steps and trainer.max_steps > 0 else "?"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = self.last_time = time.monotonic()
        self.last_step = trainer.global_step
        self.say(f"fit: from step {trainer.global_step}, up to {self.total_steps(trainer)} steps")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step == self.last_step or step % self.every_n_steps:
            return
        now = time.monotonic()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        logged = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        metrics = format_metrics({**logged, **self.get_metrics(trainer, pl_module)})
        self.say(f"epoch {trainer.current_epoch} step {step}/{self.total_steps(trainer)} ({rate:.1f} steps/s) {metrics}".rstrip())

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        assert trainer.state.fn is not None  # set while a trainer entry point runs its hooks
        stage = "validation" if trainer.state.fn == "fit" else trainer.state.fn.value
        metrics = format_metrics({k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
        self.say(f"{stage} at step {trainer.global_step}: {metrics}".rstrip())

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.say(f"fit: done at step {trainer.global_step} (epoch {trainer.current_epoch})")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = format_metrics({k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
        self.say(f"test: {metrics}".rstrip())

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.say("predict: done")

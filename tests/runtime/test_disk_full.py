"""A disk that fills up during a fit: one line (exit code 1), and ``status.json`` records the step the run reached.

``torch.save`` on a full disk raises ``RuntimeError: [enforce fail at inline_container.cc] ... unexpected pos``,
raised while handling the ``OSError(ENOSPC)`` of the write; ``FullDiskFrom`` makes the checkpoint writes of a
real fit meet exactly that (a file whose writes fail with ENOSPC after the first bytes), as a full disk does.
"""

from __future__ import annotations

import errno
import io
import json
from typing import Any, BinaryIO

import torch
import wandb
from lightning.pytorch import Callback

import train
from runtime import errors
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG

ROOM = 1000
"""Bytes a checkpoint write gets before the disk is full."""


class FullFile(io.RawIOBase):
    """A file on a full disk: the first ``room`` bytes go through, then every write fails with ENOSPC."""

    def __init__(self, file: BinaryIO, room: int = ROOM):
        self.file, self.room = file, room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)


class FullDiskFrom(Callback):
    """From global step ``step`` on, the disk is full for checkpoint writes (the run's own checkpoint writer is kept)."""

    def __init__(self, step: int = 4):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        io_plugin = trainer.strategy.checkpoint_io
        if trainer.global_step < self.step or getattr(io_plugin, "_disk_full", False):
            return
        write = io_plugin.write_payload
        io_plugin.write_payload = lambda checkpoint, file: write(checkpoint, FullFile(file))
        io_plugin._disk_full = True


def test_torch_save_on_a_full_disk_is_one_line_naming_the_disk():
    try:
        torch.save({"weights": torch.zeros(10_000)}, FullFile(io.BytesIO()))
    except RuntimeError as err:
        raised = err
    assert "unexpected pos" in str(raised)  # torch's own words: nothing about the disk
    line = errors.one_line_error(raised)
    assert line is not None and line.exit_code == 1
    assert line.message == "No space left on device (disk full: nothing partial was kept; free space and run again)"


def test_a_full_disk_during_a_fit_is_one_line_and_status_json_has_the_step_reached(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEPS_DEBUG", raising=False)
    monkeypatch.delenv("MEPS_RUN_ID", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    args = ["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, "--trainer.enable_model_summary", "false"]
    args += ["--trainer.max_steps", "-1", "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "3"]
    args += ["--trainer.callbacks+=tests.runtime.test_disk_full.FullDiskFrom", "--trainer.callbacks.init_args.step", "4"]
    try:
        code = train.console_main(args)
    finally:
        if wandb.run is not None:  # a failed fit leaves its W&B run to the process's exit; later tests need their own
            wandb.finish()
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err, err[-3000:]
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: No space left on device (disk full: nothing partial was kept; free space and run again)")
    [status_file] = (tmp_path / "outputs").rglob("status.json")
    status = json.loads(status_file.read_text())
    assert status["state"] == "failed" and status["global_step"] == 6  # epoch 1's checkpoint, after 6 steps, met the full disk
    assert status["error"].startswith("No space left on device")
    [last] = status_file.parent.glob("checkpoints/last.ckpt")
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 3  # the last good one is kept

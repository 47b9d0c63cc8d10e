"""Atomic writes: a failed write keeps the previous file, checkpoints are written atomically, temporaries of dead processes go."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

import pytest
import torch

import train
from runtime import checkpoint_files
from runtime.atomic_files import PARTIAL_SUFFIX, atomic_write
from runtime.checkpoint_files import AtomicCheckpointIO, remove_dead_checkpoint_partials
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG

QUICK = ["-c", DEBUG_PRESET, "--trainer.logger", "false", "--trainer.enable_model_summary", "false"]


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "last.ckpt"
    atomic_write(target, lambda f: f.write(b"good"))

    def disk_full(file):
        file.write(b"half of a checkpo")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, disk_full)
    assert target.read_bytes() == b"good" and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_checkpoint_io_round_trip_and_temporaries_of_dead_processes(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 7}, tmp_path / "ckpts" / "last.ckpt")
    assert io.load_checkpoint(tmp_path / "ckpts" / "last.ckpt", weights_only=True)["global_step"] == 7
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    host = socket.gethostname()
    leftover = tmp_path / "ckpts" / f"{checkpoint_files.PARTIAL_PREFIX}{host}-{dead}-abcd1234{PARTIAL_SUFFIX}"
    mine = tmp_path / "ckpts" / f"{checkpoint_files.PARTIAL_PREFIX}{host}-{os.getpid()}-abcd1234{PARTIAL_SUFFIX}"
    leftover.write_bytes(b"half")
    mine.write_bytes(b"being written")
    # Lightning's `--ckpt_path last` takes `last*.ckpt` files: a temporary file is never taken for a checkpoint
    assert not leftover.name.endswith(".ckpt") and "last" not in leftover.name
    assert remove_dead_checkpoint_partials(tmp_path / "ckpts") == [leftover]
    assert mine.exists() and not leftover.exists()


def test_trainer_gets_atomic_checkpoint_io_unless_the_user_chose_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = train.main(["-c", DIGITS_CONFIG, *QUICK], run=False)
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    names = {type(cb).__name__ for cb in cli.trainer.callbacks}
    assert {"PerRankSeed", "ResumableRun", "NonFiniteGuard", "BatchGuard"} <= names

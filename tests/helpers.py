"""Helpers for end-to-end tests: run train.py as a user would, read W&B runs back with W&B's reader."""

from __future__ import annotations

import errno
import io as io_module
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from datamodules import HFImageDataModule
from networks.compiled_step import cpp_compiler

REPO_ROOT = Path(__file__).resolve().parents[1]
DIGITS_CONFIG = str(REPO_ROOT / "configs" / "blae" / "digits.yaml")
DEBUG_PRESET = str(REPO_ROOT / "configs" / "presets" / "debug.yaml")
needs_cpp_compiler = pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile's CPU backend needs a C++ compiler (none found)")


def subprocess_env(**extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("MEPS_RUN_ID", None)
    env.pop("WANDB_SERVICE", None)  # the W&B service of this test process (an in-process run started one): not the child's
    return env


def with_this_python_first(env: dict) -> dict:
    """``env`` with this interpreter's folder first on PATH: ``python`` in a command or a job script is this one."""
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.environ.get('PATH', ''))}"}


def run_script(script: str, args: list[str], cwd: Path, timeout: int = 300, check: bool = True, **env) -> subprocess.CompletedProcess:
    Path(cwd).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=cwd,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def run_train(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return run_script("train.py", args, cwd, **kwargs)


def command_in_process(console_main, args: list[str], capfd) -> tuple[int, str]:
    """A command's ``console_main(ARGS)`` as a shell runs it, in this process: (exit code, stderr). An argument
    error exits like argparse does (SystemExit), which is read as its exit code."""
    capfd.readouterr()
    try:
        code = console_main(args)
    except SystemExit as exit:
        code = exit.code
    return code, capfd.readouterr().err


def train_in_process(args: list[str], capfd) -> tuple[int, str]:
    """``python train.py ARGS`` as a shell runs it, in this process: (exit code, stderr)."""
    import train

    return command_in_process(train.console_main, args, capfd)


def wandb_runs(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("offline-run-*") if p.is_dir())


def wandb_summary(run_dir: Path) -> dict:
    """The run as W&B's own reader sees it: `wandb leet inspect --summary --json RUN_DIR`."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    out = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--summary", "--json", str(run_dir)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)


class RecordRankNoise(Callback):
    """Writes each rank's seed and a draw of its global RNG, to show ranks get distinct streams."""

    def on_train_start(self, trainer, pl_module):
        folder = Path(os.environ["RANK_NOISE_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        record = {"rank": trainer.global_rank, "seed": getattr(pl_module, "rank_seed", None), "draw": torch.randn(4).tolist()}
        (folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


# ------------------------------------------------------------------------------------------------
# Fault injection (tests/e2e/test_fault_injection.py): faults a test selects with --trainer.callbacks+=
# ------------------------------------------------------------------------------------------------


class InjectedFault(RuntimeError):
    """What FaultInjector raises: stands for any bug or crash inside a run."""


class FaultInjector(Callback):
    """One fault, at the start of global step `step`, on global rank `rank` (every rank with rank=-1).

    fault:
      "raise":      raise InjectedFault (a crash inside the run)
      "nan":        put a NaN into the batch's images (a corrupt sample -> non-finite loss)
      "hang":       write `<marker_dir>/hang-rank<r>` and sleep, so that the test can SIGKILL the process
      "hang_in_save": from `step` on, the next checkpoint write stops half-way (temporary file half
                    written), writes `<marker_dir>/in-save-rank<r>` and sleeps: a kill during a save
      "disk_full":  from `step` on, the next checkpoint write fails with ENOSPC half-way
    """

    def __init__(self, fault: str = "raise", step: int = 0, rank: int = 0, marker_dir: str | None = None):
        self.fault, self.step, self.rank, self.marker_dir = fault, step, rank, marker_dir
        self.armed = True

    def _mine(self, trainer) -> bool:
        return self.armed and self.rank in (-1, trainer.global_rank)

    def _marker(self, name: str, trainer) -> None:
        folder = Path(self.marker_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}-rank{trainer.global_rank}").write_text(str(os.getpid()))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self._mine(trainer) or trainer.global_step < self.step:
            return
        if self.fault == "raise":
            self.armed = False
            raise InjectedFault(f"injected fault on rank {trainer.global_rank} at global step {trainer.global_step}")
        if self.fault == "nan":
            self.armed = False
            batch["image"][0, 0, 0, 0] = float("nan")
        elif self.fault == "hang":
            self._marker("hang", trainer)
            time.sleep(600)
        elif self.fault in ("hang_in_save", "disk_full"):
            self.armed = False
            self._break_next_save(trainer)

    def _break_next_save(self, trainer) -> None:
        io = trainer.strategy.checkpoint_io
        write = io.write_payload
        fault, marker = self.fault, self._marker

        def broken_write(checkpoint, file):
            buffer = io_module.BytesIO()
            write(checkpoint, buffer)
            data = buffer.getvalue()
            file.write(data[: len(data) // 2])
            file.flush()
            if fault == "disk_full":
                raise OSError(errno.ENOSPC, "No space left on device", str(getattr(file, "name", "")))
            marker("in-save", trainer)
            time.sleep(600)

        io.write_payload = broken_write


class OutOfRangeDigits(HFImageDataModule):
    """The digits served as 0..255 floats instead of [-1, 1] (a data module with a wrong transform)."""

    def _served(self, split):
        return _Rescaled(super()._served(split))


class _Rescaled(torch.utils.data.Dataset):
    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        row = dict(self.inner[index])
        row["image"] = (row["image"] + 1) * 127.5
        return row


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1, for a gloo rendezvous of spawned test ranks."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

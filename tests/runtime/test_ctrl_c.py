"""Ctrl-C in a real fit says what happened and what was kept: a resume command only when a checkpoint exists.

``PressCtrlC`` sends SIGINT to this process from inside the fit, as a terminal does: during set-up (before
training, nothing saved) or twice at a training step (the second Ctrl-C stops at once).
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import wandb
from lightning.pytorch import Callback

import train
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG

FIT = ["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, "--trainer.enable_model_summary", "false"]
LONGER = ["--trainer.max_steps", "-1", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3"]


class PressCtrlC(Callback):
    """Ctrl-C ``times`` times: during set-up (``step=-1``), or at the start of global step ``step``."""

    def __init__(self, step: int = -1, times: int = 1):
        self.step, self.times = step, times

    def setup(self, trainer, pl_module, stage) -> None:
        if self.step < 0:
            self._press()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self._press()

    def _press(self) -> None:
        for _ in range(self.times):
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def fit(tmp_path, monkeypatch, capfd):
    """``train.py fit`` with ``PressCtrlC`` in this process: (exit code, stderr). Ctrl-C raises KeyboardInterrupt
    here as in a terminal, also when pytest was started with SIGINT ignored (``cmd &`` in a script, ``nohup``)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.chdir(tmp_path)
    for var in ("MEPS_DEBUG", "MEPS_RUN_ID", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)

    def run(step: int, times: int, extra: list[str]) -> tuple[int, str]:
        capfd.readouterr()
        press = ["--trainer.callbacks+=tests.runtime.test_ctrl_c.PressCtrlC", "--trainer.callbacks.init_args.step", str(step)]
        try:
            code = train.console_main([*FIT, *extra, *press, "--trainer.callbacks.init_args.times", str(times)])
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores Ctrl-C after catching one
        return code, capfd.readouterr().err

    yield run
    signal.signal(signal.SIGINT, previous)
    if wandb.run is not None:  # a stopped fit leaves its W&B run to the process's exit; the next test needs its own
        wandb.finish()


def test_ctrl_c_during_set_up_says_nothing_was_saved(fit, tmp_path):
    code, err = fit(-1, 1, [])
    assert code == 130 and "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("stopped")]
    assert line.startswith("stopped by Ctrl-C before training started: nothing was saved; run the same command again: python train.py fit")
    assert "second Ctrl-C" not in err and "--ckpt_path last" not in err  # before: both, and that resume fails (exit 2)


def test_a_second_ctrl_c_names_the_checkpoint_a_resume_continues(fit, tmp_path):
    code, err = fit(4, 2, LONGER)
    assert code == 130 and "Traceback" not in err, err[-3000:]
    [status_file] = (tmp_path / "outputs").rglob("status.json")
    last = status_file.parent / "checkpoints" / "last.ckpt"
    lines = err.splitlines()
    at = lines.index(f"stopped at once by a second Ctrl-C at global step 4: {last} holds the last step saved before it")
    assert lines[at + 1].startswith("to resume: python train.py fit") and lines[at + 1].endswith("--ckpt_path last")
    status = json.loads(status_file.read_text())
    assert (status["state"], status["global_step"]) == ("preempted", 4)


def test_a_second_ctrl_c_before_any_checkpoint_gives_no_resume_command(fit, tmp_path):
    code, err = fit(1, 2, LONGER)
    assert code == 130
    assert "stopped at once by a second Ctrl-C at global step 1: no checkpoint was saved yet; run the same command again" in err
    assert "--ckpt_path last" not in err


CTRL_C_WHILE_IMPORTING = """
import runpy, sys

class CtrlC:  # Ctrl-C pressed while Python imports Lightning (seconds of a cold start)
    def find_spec(self, name, path=None, target=None):
        if name == "lightning.pytorch":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_ctrl_c_while_train_py_imports_is_one_line(tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT, subprocess_env

    command = [sys.executable, "-c", CTRL_C_WHILE_IMPORTING, str(REPO_ROOT / "train.py"), *FIT]
    proc = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("stopped by Ctrl-C before training started: nothing was saved; run the same command again")

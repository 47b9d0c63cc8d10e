"""A run that fails on a bad input before its first step leaves nothing behind: no run folder, no W&B run, no empty
output folder (issue 22, item 7); a resumed run's folder, which was there before, stays."""

from __future__ import annotations

from pathlib import Path

import pytest

import train
from runtime.run_lock import LOCK_FILE
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG

QUICK = ["-c", DEBUG_PRESET, "--trainer.enable_model_summary", "false"]


def run_command(args: list[str], capfd) -> tuple[int, str]:
    """``python train.py ARGS`` as a shell runs it, in process: (exit code, stderr)."""
    capfd.readouterr()
    try:
        code = train.console_main(args)
    except SystemExit as exit:
        code = exit.code
    return code, capfd.readouterr().err


@pytest.fixture
def in_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("MEPS_DEBUG", "MEPS_RUN_ID", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_an_empty_data_folder_leaves_no_output_folder(in_empty_folder, capfd):
    (in_empty_folder / "images").mkdir()
    code, err = run_command(["fit", "-c", DIGITS_CONFIG, *QUICK, "--data.init_args.path", str(in_empty_folder / "images")], capfd)
    assert code == 2 and "has no images" in err, err[-2000:]
    assert sorted(p.name for p in in_empty_folder.iterdir()) == ["images"], sorted(map(str, in_empty_folder.rglob("*")))


def test_a_bad_input_found_in_setup_leaves_no_wandb_run(in_empty_folder, capfd, monkeypatch):
    """Lightning starts the W&B run before the data module's ``setup``; what ``setup`` finds wrong (a token cache
    damaged after ``prepare_data`` checked it, on a rank that only reads it) comes after that."""
    from datamodules import HFImageDataModule

    def damaged(self, stage=None):
        raise ValueError("token cache /x is damaged")

    monkeypatch.setattr(HFImageDataModule, "setup", damaged)
    code, err = run_command(["fit", "-c", DIGITS_CONFIG, *QUICK], capfd)
    assert code == 2 and "error: token cache /x is damaged" in err, err[-2000:]
    assert "wandb sync" not in err
    assert list(in_empty_folder.iterdir()) == [], sorted(map(str, in_empty_folder.rglob("*")))


def test_a_resumed_runs_folder_stays(in_empty_folder, capfd):
    """The same data error in a resume: the run folder and its checkpoint were there before, so they stay (unlocked)."""
    root = in_empty_folder / "runs"
    code, _ = run_command(
        ["fit", "-c", DIGITS_CONFIG, *QUICK, "--trainer.logger.init_args.id", "keep", "--trainer.default_root_dir", str(root)], capfd
    )
    folder = root / "meps-ldh" / "keep"
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert code == 0 and "checkpoints/last.ckpt" in before
    (in_empty_folder / "images").mkdir()
    resume = ["--ckpt_path", str(folder / "checkpoints" / "last.ckpt"), "--data.init_args.path", str(in_empty_folder / "images")]
    code, err = run_command(["fit", "-c", DIGITS_CONFIG, *QUICK, "--trainer.default_root_dir", str(root), *resume], capfd)
    assert code == 2 and "has no images" in err, err[-2000:]
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before and not (folder / LOCK_FILE).exists()
    assert len(list(Path(root).rglob("offline-run-*"))) == 1  # the first run's only

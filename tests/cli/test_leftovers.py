"""A run that fails on a bad input before its first step leaves nothing behind: no run folder, no W&B run, no empty
output folder (issue 22, item 7); a resumed run's folder, which was there before, stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.run_lock import LOCK_FILE
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, train_in_process

QUICK = ["-c", DEBUG_PRESET, "--trainer.enable_model_summary", "false"]


@pytest.fixture
def in_empty_folder(tmp_path, monkeypatch):
    """An empty working folder, and no W&B run left active by an earlier test (a WandbLogger would reuse it)."""
    import wandb

    wandb.finish()
    monkeypatch.chdir(tmp_path)
    for var in ("MEPS_DEBUG", "MEPS_RUN_ID", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path
    wandb.finish()


def test_an_empty_data_folder_leaves_no_output_folder(in_empty_folder, capfd):
    (in_empty_folder / "images").mkdir()
    code, err = train_in_process(["fit", "-c", DIGITS_CONFIG, *QUICK, "--data.init_args.path", str(in_empty_folder / "images")], capfd)
    assert code == 2 and "has no images" in err, err[-2000:]
    assert sorted(p.name for p in in_empty_folder.iterdir()) == ["images"], sorted(map(str, in_empty_folder.rglob("*")))


def test_a_bad_input_found_in_setup_leaves_no_wandb_run(in_empty_folder, capfd, monkeypatch):
    """Lightning starts the W&B run before the data module's ``setup``; what ``setup`` finds wrong (a token cache
    damaged after ``prepare_data`` checked it, on a rank that only reads it) comes after that."""
    from datamodules import HFImageDataModule

    def damaged(self, stage=None):
        raise ValueError("token cache /x is damaged")

    monkeypatch.setattr(HFImageDataModule, "setup", damaged)
    code, err = train_in_process(["fit", "-c", DIGITS_CONFIG, *QUICK], capfd)
    assert code == 2 and "error: token cache /x is damaged" in err, err[-2000:]
    assert "wandb sync" not in err
    assert list(in_empty_folder.iterdir()) == [], sorted(map(str, in_empty_folder.rglob("*")))


def test_a_resumed_runs_folder_stays(in_empty_folder, capfd):
    """The same data error in a resume: the run folder and its checkpoint were there before, so they stay (unlocked)."""
    root = in_empty_folder / "runs"
    code, _ = train_in_process(
        ["fit", "-c", DIGITS_CONFIG, *QUICK, "--trainer.logger.init_args.id", "keep", "--trainer.default_root_dir", str(root)], capfd
    )
    folder = root / "meps-ldh" / "keep"
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert code == 0 and "checkpoints/last.ckpt" in before
    (in_empty_folder / "images").mkdir()
    resume = ["--ckpt_path", str(folder / "checkpoints" / "last.ckpt"), "--data.init_args.path", str(in_empty_folder / "images")]
    code, err = train_in_process(["fit", "-c", DIGITS_CONFIG, *QUICK, "--trainer.default_root_dir", str(root), *resume], capfd)
    assert code == 2 and "has no images" in err, err[-2000:]
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before and not (folder / LOCK_FILE).exists()
    assert len(list(Path(root).rglob("offline-run-*"))) == 1  # the first run's only


def test_a_wandb_run_active_before_the_command_is_not_removed(in_empty_folder, capfd, monkeypatch):
    """In a notebook an earlier run may still be active; Lightning's WandbLogger then reuses it. It is not this
    command's to delete: the bad input's cleanup must leave it and its files alone."""
    import wandb

    from datamodules import HFImageDataModule

    earlier = wandb.init(project="earlier", dir=str(in_empty_folder))
    folder = Path(earlier.dir).parent
    try:

        def damaged(self, stage=None):
            raise ValueError("token cache /x is damaged")

        monkeypatch.setattr(HFImageDataModule, "setup", damaged)
        code, err = train_in_process(["fit", "-c", DIGITS_CONFIG, *QUICK, "--trainer.default_root_dir", str(in_empty_folder / "o")], capfd)
        assert code == 2 and "error: token cache /x is damaged" in err, err[-2000:]
        assert folder.is_dir() and wandb.run is not None and wandb.run.id == earlier.id
    finally:
        earlier.finish()


def test_a_disabled_wandb_run_keeps_the_users_error(in_empty_folder, capfd, monkeypatch):
    """WANDB_MODE=disabled gives a run object whose folder was never made: the cleanup must not fail on it and
    replace the bad input's line with its own."""
    from datamodules import HFImageDataModule

    def damaged(self, stage=None):
        raise ValueError("token cache /x is damaged")

    monkeypatch.setattr(HFImageDataModule, "setup", damaged)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    code, err = train_in_process(["fit", "-c", DIGITS_CONFIG, *QUICK], capfd)
    assert code == 2 and "error: token cache /x is damaged" in err, err[-2000:]
    assert list(in_empty_folder.iterdir()) == [], sorted(map(str, in_empty_folder.rglob("*")))

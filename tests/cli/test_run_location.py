"""Where a train.py run writes, and what its console says: real W&B offline runs, read back with W&B's reader."""

import pytest

from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, run_train, wandb_runs, wandb_summary

NOISE = ("litlogger", "litmodels", "anonymous", "git root", "Find logs at", "\r")


@pytest.mark.slow
def test_default_root_dir_holds_run_folder_and_wandb_files_and_the_console_is_quiet(tmp_path):
    cwd, root = tmp_path / "cwd", tmp_path / "elsewhere" / "root"
    proc = run_train(
        ["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, "--trainer.enable_progress_bar", "true", "--trainer.default_root_dir", str(root)],
        cwd,
    )
    assert not (cwd / "outputs").exists() and not (cwd / "wandb").exists()
    runs = wandb_runs(root)
    assert len(runs) == 1 and runs[0].parent == root / "wandb", runs
    summary = wandb_summary(runs[0])
    assert 0 < summary["summary"]["val/psnr"] < 100
    run_folder = root / "meps-ldh" / summary["run_id"]
    assert (run_folder / "config.yaml").is_file() and (run_folder / "checkpoints" / "last.ckpt").is_file()
    console = proc.stdout + proc.stderr
    assert [word for word in NOISE if word in console] == []
    assert f"run folder (config.yaml, checkpoints/): {run_folder.resolve()}" in console
    assert "fit: done at step 4" in proc.stdout  # the line progress of a log file (stdout is a pipe)
    assert max(len(line) for line in console.splitlines()) < 400


@pytest.mark.slow
def test_wandb_dir_moves_only_the_wandb_files(tmp_path):
    cwd, wandb_dir = tmp_path / "cwd", tmp_path / "wandb-files"
    run_train(["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET], cwd, WANDB_DIR=str(wandb_dir))
    runs = wandb_runs(wandb_dir)
    assert len(runs) == 1 and wandb_runs(cwd) == []
    run_id = wandb_summary(runs[0])["run_id"]
    assert (cwd / "outputs" / "meps-ldh" / run_id / "checkpoints" / "last.ckpt").is_file()

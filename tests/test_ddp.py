"""Real multi-process DDP on CPU (gloo, 2 processes) through train.py, as a user runs it."""
import json

import pytest

from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, run_train, wandb_runs, wandb_summary

DDP_ARGS = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


@pytest.mark.slow
def test_ddp_fit_one_run_distinct_rank_noise_and_validation_equal_to_one_process(in_tmp_dir):
    noise_dir = in_tmp_dir / "rank_noise"
    run_train(
        ["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, *DDP_ARGS, "--trainer.callbacks+=tests.helpers.RecordRankNoise"],
        in_tmp_dir, RANK_NOISE_DIR=str(noise_dir),
    )
    runs = wandb_runs(in_tmp_dir / "outputs")
    assert len(runs) == 1, f"one W&B run per job, got {runs}"
    run_folders = list((in_tmp_dir / "outputs" / "meps-ldh").iterdir())
    assert len(run_folders) == 1 and (run_folders[0] / "config.yaml").is_file()

    ranks = [json.loads((noise_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["seed"] != ranks[1]["seed"]
    assert ranks[0]["draw"] != ranks[1]["draw"], "ranks must not share a noise stream"

    checkpoint = str(run_folders[0] / "checkpoints" / "last.ckpt")
    full_val = ["--trainer.limit_val_batches", "1.0"]
    run_train(["validate", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, *full_val, "--ckpt_path", checkpoint], in_tmp_dir / "one")
    run_train(["validate", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, *full_val, *DDP_ARGS, "--ckpt_path", checkpoint], in_tmp_dir / "two")
    one, two = (wandb_summary(wandb_runs(in_tmp_dir / d)[0])["summary"] for d in ("one", "two"))
    for key in ("val/psnr", "val/psnr_soft", "val/bin_rate", "val/bit_entropy"):
        assert two[key] == pytest.approx(one[key], rel=1e-5), key

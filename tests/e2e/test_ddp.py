"""Real multi-process DDP on CPU (gloo, 2 processes) through train.py, as a user runs it."""

import json

import numpy as np
import pytest

from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, REPO_ROOT, run_train, wandb_runs, wandb_summary

DDP_ARGS = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


@pytest.mark.slow
def test_ddp_fit_one_run_distinct_rank_noise_and_validation_equal_to_one_process(in_tmp_dir):
    noise_dir = in_tmp_dir / "rank_noise"
    fit = run_train(
        ["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, *DDP_ARGS, "--trainer.callbacks+=tests.helpers.RecordRankNoise"],
        in_tmp_dir,
        RANK_NOISE_DIR=str(noise_dir),
    )
    assert "sync_dist=True" not in fit.stderr, "epoch-level values of a 2-device run are logged as synced"
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


KERNEL = str(REPO_ROOT / "configs" / "arvm" / "digits_kernel.yaml")
NEURAL = str(REPO_ROOT / "configs" / "arvm" / "digits.yaml")
NO_LOGGER = ["-c", DEBUG_PRESET, "--trainer.logger", "false"]


def samples_of(folder):
    return np.load(next(folder.rglob("samples.npz")))


@pytest.mark.slow
def test_token_models_under_ddp_sample_the_same_as_one_process(in_tmp_dir):
    """Sample i is drawn with seed base + i on whichever rank gets it: 2 ranks = 1 process, no duplicates."""
    run_train(["fit", "-c", DIGITS_CONFIG, *NO_LOGGER, "--trainer.default_root_dir", str(in_tmp_dir / "blae")], in_tmp_dir)
    checkpoint = str(next((in_tmp_dir / "blae").rglob("last.ckpt")))
    tokens = [
        "--data.init_args.autoencoder",
        checkpoint,
        "--data.init_args.token_cache_dir",
        str(in_tmp_dir / "tokens"),
        "--data.init_args.num_samples",
        "10",
        "--model.init_args.gamma",
        "2",
    ]
    for name, extra in (("one", []), ("two", DDP_ARGS)):
        run_train(["predict", "-c", KERNEL, *NO_LOGGER, *tokens, *extra, "--trainer.default_root_dir", str(in_tmp_dir / name)], in_tmp_dir)
    one, two = samples_of(in_tmp_dir / "one"), samples_of(in_tmp_dir / "two")
    assert two["index"].tolist() == list(range(10))
    np.testing.assert_array_equal(two["tokens"], one["tokens"])
    assert len({grid.tobytes() for grid in two["tokens"]}) > 1, "ranks must not draw the same samples"

    run_train(["fit", "-c", NEURAL, *NO_LOGGER, *tokens, *DDP_ARGS, "--trainer.default_root_dir", str(in_tmp_dir / "neural")], in_tmp_dir)
    assert next((in_tmp_dir / "neural").rglob("last.ckpt")).is_file()

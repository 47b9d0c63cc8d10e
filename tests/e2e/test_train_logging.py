"""A real run through train.py: W&B offline run, config, checkpoint, read back with W&B's reader."""

import pytest
import yaml

from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, run_train, wandb_runs, wandb_summary


@pytest.mark.slow
def test_fit_logs_metrics_config_images_and_checkpoint(in_tmp_dir):
    proc = run_train(["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET], in_tmp_dir)
    runs = wandb_runs(in_tmp_dir / "outputs")
    assert len(runs) == 1, runs
    summary = wandb_summary(runs[0])
    metrics = summary["summary"]
    assert 0 < metrics["val/psnr"] < 100 and 0 <= metrics["val/bin_rate"] <= 1
    assert metrics["media/recon_hard"]["_type"].startswith("images")
    config = summary["config"]
    assert config["model"]["class_path"] == "lightning_modules.BinaryLatentAutoencoder"
    assert config["data"]["init_args"]["path"] == "sklearn-digits"
    assert "batch_size" not in config, "datamodule hparams must not be flattened into the W&B config root"

    run_folder = in_tmp_dir / "outputs" / "meps-ldh" / summary["run_id"]
    saved = yaml.safe_load((run_folder / "config.yaml").read_text())
    assert saved["model"]["init_args"]["binarizer"]["init_args"]["noise_rate"] == 0.6
    assert (run_folder / "checkpoints" / "last.ckpt").is_file()
    assert f"best checkpoint: {(in_tmp_dir / 'outputs' / 'meps-ldh').resolve()}/{summary['run_id']}/checkpoints/" in proc.stdout

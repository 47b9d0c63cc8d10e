"""validate / test / predict of a model with trainable weights and no checkpoint: one line naming --ckpt_path and
the model class, exit code 2, nothing written (its weights would be random: issue 22, item 2). The kernel γ-ARVM,
which has nothing to train, runs without one (tests/cli/test_token_models_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, REPO_ROOT, train_in_process

VAE_CONFIG = str(REPO_ROOT / "configs" / "vae" / "digits.yaml")
QUICK = ["-c", DEBUG_PRESET, "--trainer.enable_model_summary", "false"]


def assert_refused(code: int, err: str, subcommand: str, class_path: str, folder: Path) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith(f"error: {subcommand} of {class_path} needs --ckpt_path"), lines[0]
    assert "Traceback" not in err and not (folder / "outputs").exists() and not list(folder.rglob("offline-run-*"))


@pytest.fixture
def in_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("MEPS_DEBUG", "MEPS_RUN_ID", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.mark.parametrize(
    "subcommand, config, class_path",
    [
        ("test", DIGITS_CONFIG, "lightning_modules.BinaryLatentAutoencoder"),
        ("validate", VAE_CONFIG, "lightning_modules.GaussianVAE"),
    ],
)
def test_a_model_with_trainable_weights_needs_a_checkpoint(in_empty_folder, capfd, subcommand, config, class_path):
    code, err = train_in_process([subcommand, "-c", config, *QUICK], capfd)
    assert_refused(code, err, subcommand, class_path, in_empty_folder)
    assert "untrained" in err


def test_ckpt_path_last_names_no_checkpoint_in_a_new_process(in_empty_folder, capfd):
    """Lightning would warn "no last checkpoint available" and go on with random weights."""
    code, err = train_in_process(["validate", "-c", DIGITS_CONFIG, *QUICK, "--ckpt_path", "last"], capfd)
    assert_refused(code, err, "validate", "lightning_modules.BinaryLatentAutoencoder", in_empty_folder)
    assert "--ckpt_path last" in err

"""Both γ-ARVMs through train.py as a user runs them: fit / validate, then predict writes samples."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, REPO_ROOT
from train import main

NEURAL = str(REPO_ROOT / "configs" / "arvm" / "digits.yaml")
KERNEL = str(REPO_ROOT / "configs" / "arvm" / "digits_kernel.yaml")
QUICK = ["-c", DEBUG_PRESET, "--trainer.logger", "false"]


@pytest.fixture(scope="module")
def blae_checkpoint(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("blae")
    main(["fit", "-c", DIGITS_CONFIG, *QUICK, "--trainer.default_root_dir", str(folder)])
    return str(next(folder.rglob("last.ckpt")))


def token_args(checkpoint: str, folder: Path) -> list[str]:
    return [
        "--data.init_args.autoencoder",
        checkpoint,
        "--data.init_args.token_cache_dir",
        str(folder / "tokens"),
        "--data.init_args.num_samples",
        "12",
        "--trainer.default_root_dir",
        str(folder),
    ]


def read_samples(folder: Path) -> dict:
    return dict(np.load(next(folder.rglob("samples.npz"))))


def test_neural_fit_then_predict_writes_samples(blae_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["-c", NEURAL, *QUICK, *token_args(blae_checkpoint, tmp_path), "--model.init_args.gamma", "2"]
    main(["fit", *args])
    checkpoint = str(next(tmp_path.rglob("last.ckpt")))
    main(["predict", *args, "--ckpt_path", checkpoint])
    samples = read_samples(tmp_path)
    assert samples["tokens"].shape == (12, 8, 8) and samples["tokens"].max() < 64
    assert samples["images"].shape == (12, 1, 8, 8) and samples["images"].dtype == np.uint8
    assert samples["index"].tolist() == list(range(12))
    assert next(tmp_path.rglob("samples.png")).is_file()


def test_kernel_validate_reports_nll_and_memorization(blae_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results.json"
    args = [
        "-c",
        KERNEL,
        *QUICK,
        *token_args(blae_checkpoint, tmp_path),
        "--model.init_args.gamma",
        "global",
        "--trainer.callbacks+=callbacks.run.results_file.ResultsFile",
        "--trainer.callbacks.init_args.path",
        str(results),
    ]
    main(["validate", *args])
    metrics = json.loads(results.read_text())["metrics"]
    assert metrics["val/nll_bits"] > 0
    # global context at flip probability 0.002 copies a training grid up to its own bit flips: nearly every
    # sample is within 1 % of the bits of one (held-out grids are not), and an exact copy needs all 384
    # bits unflipped, probability at most (1 - 0.002)^384 = 0.46, so the exact rate cannot be ~1
    samples, bits, flip = 200, 6 * 8 * 8, 0.002
    no_flip = (1 - flip) ** bits
    assert metrics["mem/latent_near_copy_rate"] >= 0.95 and metrics["mem/hamming_median"] <= 2
    assert metrics["mem/floor_latent_near_copy_rate"] == 0.0
    assert 0.25 <= metrics["mem/latent_copy_rate"] <= no_flip + 3 * math.sqrt(no_flip * (1 - no_flip) / samples)
    main(["predict", *args])
    first = read_samples(tmp_path)
    assert first["tokens"].shape == (12, 8, 8)


def test_checkpoint_that_does_not_fit_the_data_is_rejected(blae_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"image_size=8, channels=1 but the data has --data.image_size=16"):
        main(["validate", "-c", KERNEL, *QUICK, *token_args(blae_checkpoint, tmp_path), "--data.init_args.image_size", "16"])


def test_missing_autoencoder_checkpoint_is_named(blae_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="autoencoder"):
        main(
            [
                "validate",
                "-c",
                NEURAL,
                *QUICK,
                *token_args(blae_checkpoint, tmp_path),
                "--data.init_args.autoencoder",
                str(tmp_path / "missing.ckpt"),
            ]
        )


def test_neural_predict_without_a_checkpoint_is_refused(blae_checkpoint, tmp_path, monkeypatch, capfd):
    """Random weights would write 64 samples and exit 0 (issue 22, item 2): one line, exit 2, nothing written."""
    import train

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEPS_DEBUG", raising=False)
    capfd.readouterr()
    code = train.console_main(["predict", "-c", NEURAL, "-c", DEBUG_PRESET, *token_args(blae_checkpoint, tmp_path)[:-2]])
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: predict of lightning_modules.GammaARVM needs --ckpt_path"), lines[0]
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.rglob("samples.npz"))

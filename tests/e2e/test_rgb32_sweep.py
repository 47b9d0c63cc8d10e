"""The rgb32 sweep end to end on a tiny subset (debug preset, a few steps): 1024-token grids of 7 bits through
every stage, then the kernel model on a parquet file whose image column has another name."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.cli.test_rgb32_configs import renamed_column_parquet
from tests.helpers import DEBUG_PRESET, REPO_ROOT, run_script, run_train

QUICK = ["-c", DEBUG_PRESET]


def overlay(tmp_path, name: str, callbacks: list) -> list[str]:
    """A config file that replaces the stage's callbacks: fewer samples and Inception images than the real sweep."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return ["-c", str(path)]


def tiny_rgb32_sweep(tmp_path) -> str:
    config = yaml.safe_load((REPO_ROOT / "configs" / "sweeps" / "rgb32.yaml").read_text())
    end_of_fit = {"num_samples": 8, "every_n_val_epochs": None}
    measurements = [
        {"class_path": "callbacks.measurements.memorization.MemorizationCallback", "init_args": end_of_fit},
        {"class_path": "callbacks.measurements.mutual_information.MutualInformationCallback", "init_args": end_of_fit},
    ]
    config.update(out_dir=str(tmp_path / "sweep"), gammas=[1, "global"], vae_betas=[1.0], data={"max_train_samples": 16})
    for stage in ("blae", "vae"):
        config[stage]["args"] = QUICK + config[stage]["args"]
    config["kernel"]["args"] = overlay(tmp_path, "kernel", measurements)
    plateau = {"class_path": "callbacks.run.train_to_plateau.TrainToPlateau", "init_args": {"window": 2}}
    config["neural"]["args"] = [*QUICK, *overlay(tmp_path, "neural", [plateau, *measurements])]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.slow
def test_the_rgb32_sweep_runs_end_to_end_and_its_tokens_take_a_parquet_source(tmp_path):
    run_script("sweep.py", ["-c", tiny_rgb32_sweep(tmp_path)], tmp_path, timeout=3600)
    out = tmp_path / "sweep"
    report = json.loads((out / "report.json").read_text())
    rows = {(r["model"], r["gamma"]) for r in report["rows"]}
    assert rows == {("kernel", 1), ("neural", 1), ("kernel", "global"), ("neural", "global")}
    assert (out / "report.md").stat().st_size > 0
    blae = json.loads((out / "cells" / "blae" / "results.json").read_text())
    checkpoint = blae["best_checkpoint"] or blae["last_checkpoint"]

    # the same BL-AE's 32×32×7 tokens of another source: images under "picture", found without naming the column
    parquet = renamed_column_parquet(tmp_path)
    run_train(
        [
            "validate",
            "-c",
            str(REPO_ROOT / "configs" / "arvm" / "rgb32_kernel.yaml"),
            *QUICK,
            *overlay(
                tmp_path,
                "parquet-kernel",
                [{"class_path": "callbacks.measurements.memorization.MemorizationCallback", "init_args": {"num_samples": 4}}],
            ),
            "--data.init_args.path",
            str(parquet),
            "--data.init_args.autoencoder",
            checkpoint,
            "--data.init_args.token_cache_dir",
            str(tmp_path / "tokens"),
            "--model.init_args.gamma",
            "3",
        ],
        tmp_path,
        timeout=900,
    )
    meta = [json.loads(p.read_text()) for p in (tmp_path / "tokens").rglob("meta.json")]
    assert len(meta) == 1
    assert (meta[0]["grid_height"], meta[0]["grid_width"], meta[0]["num_bits"]) == (32, 32, 7)
    token_data = yaml.safe_load((REPO_ROOT / "configs" / "data" / "rgb32_tokens.yaml").read_text())["init_args"]
    assert meta[0]["split_sizes"] == {"train": min(27, token_data["max_train_samples"]), "val": 3}  # the token models' subset

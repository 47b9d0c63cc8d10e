"""The Hub configs a GPU user starts from run, not only parse: the CIFAR-10 sweep and the CIFAR-10, MNIST and CelebA-64
configs, each for a few steps on a local stand-in laid out like its Hub dataset (no network).

Stand-ins: CIFAR-10 (uoft-cs/cifar10: plain_text/{train,test}-*.parquet, columns img + label) of the embedded 32×32
photo crops; MNIST (ylecun/mnist: mnist/{train,test}-*.parquet, image + label) of the embedded digits resized to 28×28
grey; CelebA-64 (nielsr/CelebA-faces: data/train-*.parquet, image) of the photo crops resized to 64×64. Each run keeps
its config's model and callbacks (what a GPU user runs is what runs) and shrinks only steps, batches and sample counts.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from datamodules.bundled_images import load_digits_dataset, load_photo_crops_dataset
from tests.helpers import DEBUG_PRESET, REPO_ROOT, run_script, subprocess_env

CONFIGS = REPO_ROOT / "configs"
QUICK = ["-c", DEBUG_PRESET]
NO_WORKERS = ["--data.init_args.num_workers", "0"]  # the Hub configs' 4-8 loader processes cost more than they bring on 2 cores
MEASUREMENTS = ("MemorizationCallback", "MutualInformationCallback")
QUICK_PLATEAU = {"window": 1, "min_improvement": 0.9, "patience": 1, "max_decays": 0, "warmup_steps": 0, "max_cpu_seconds": None}
"""TrainToPlateau with thresholds a few steps reach: the second window is "no improvement" (a tenfold drop is
required) and no LR cut is left, so the fit plateaus at step 2 and logs fit/plateaued = 1 (the config's rule, its
class and its place among the callbacks, with these thresholds)."""


def photo_tiles(split: str, count: int, size: int) -> list[PILImage.Image]:
    """The first ``count`` embedded 32×32 photo crops of ``split`` ("train" or "validation"), resized to size×size."""
    images = load_photo_crops_dataset()[split].select(range(count))["image"]
    return [image.convert("RGB").resize((size, size), PILImage.BICUBIC) for image in images]


def write_parquet(path: Path, columns: dict, features: Features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(columns, features=features).to_parquet(str(path))


def cifar10_standin(root: Path, train: int = 40, test: int = 10) -> Path:
    """uoft-cs/cifar10's layout: plain_text/{train,test}-00000-of-00001.parquet, 32×32 RGB under img, a 10-class label."""
    folder = root / "cifar10"
    features = Features({"img": Image(), "label": ClassLabel(names=[f"class{i}" for i in range(10)])})
    for split, source, count in (("train", "train", train), ("test", "validation", test)):
        columns = {"img": photo_tiles(source, count, 32), "label": [i % 10 for i in range(count)]}
        write_parquet(folder / "plain_text" / f"{split}-00000-of-00001.parquet", columns, features)
    return folder


def mnist_standin(root: Path, train: int = 40, test: int = 10) -> Path:
    """ylecun/mnist's layout: mnist/{train,test}-00000-of-00001.parquet, 28×28 grey under image, the digit under label."""
    folder = root / "mnist"
    digits = load_digits_dataset()
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    for split, rows in (("train", range(train)), ("test", range(train, train + test))):
        part = digits.select(rows)
        images = [image.convert("L").resize((28, 28), PILImage.BILINEAR) for image in part["image"]]
        write_parquet(folder / "mnist" / f"{split}-00000-of-00001.parquet", {"image": images, "label": part["label"]}, features)
    return folder


def celeba64_standin(root: Path, count: int = 40) -> Path:
    """nielsr/CelebA-faces's layout: one train split, data/train-00000-of-00001.parquet, 64×64 RGB under image."""
    folder = root / "celeba64"
    columns = {"image": photo_tiles("train", count, 64)}
    write_parquet(folder / "data" / "train-00000-of-00001.parquet", columns, Features({"image": Image()}))
    return folder


# ------------------------------------------------------------------------------------------------ the recipes


def neural_recipes() -> list[Path]:
    """configs/arvm/*.yaml whose model is the neural γ-ARVM (not the training-free kernel)."""
    found = []
    for config in sorted((CONFIGS / "arvm").glob("*.yaml")):
        model = yaml.safe_load(config.read_text())["model"]
        model = yaml.safe_load((config.parent / model).read_text()) if isinstance(model, str) else model
        if model["class_path"] == "lightning_modules.GammaARVM":
            found.append(config)
    return found


def test_every_neural_recipe_states_the_plateau_rule_and_validates_its_final_model():
    """One stopping rule for every recipe, in its config: TrainToPlateau, so that each cell logs fit/plateaued and the
    report reads a verdict; validation counted in steps, so a plateau mid-cadence still validates (and measures) the
    final model (Lightning skips validation in an epoch off a check_val_every_n_epoch cadence, stop or not)."""
    recipes = neural_recipes()
    assert {p.stem for p in recipes} >= {"digits", "rgb32", "cifar10"}
    for config in recipes:
        rules = [c for c in inlined_callbacks(config) if c["class_path"].endswith(".TrainToPlateau")]
        assert len(rules) == 1, config
        assert yaml.safe_load(config.read_text())["trainer"].get("check_val_every_n_epoch", 1) is None, config
        if config.stem == "cifar10":
            assert rules[0]["init_args"]["max_cpu_seconds"] is None  # a GPU recipe: no CPU budget


# ------------------------------------------------------------------------------------------------ the runs


def inlined_callbacks(config: Path) -> list[dict]:
    """A config's own callbacks, in order, each file it names read in."""
    entries = yaml.safe_load(config.read_text())["trainer"]["callbacks"]
    return [dict(yaml.safe_load((config.parent / entry).read_text()) if isinstance(entry, str) else entry) for entry in entries]


def config_callbacks(config: Path, num_samples: int) -> list[dict]:
    """A token config's own callbacks (inlined_callbacks) with ``num_samples`` per measurement, 2 sample images, and
    TrainToPlateau at QUICK_PLATEAU's thresholds: for an overlay that replaces the list (what runs is the config's list)."""
    callbacks = []
    for entry in inlined_callbacks(config):
        name = entry["class_path"].rsplit(".", 1)[-1]
        if name in MEASUREMENTS:
            entry["init_args"] = {**entry.get("init_args", {}), "num_samples": num_samples}
        elif name == "ImageLogger":  # a token model's ImageLogger draws max_images fresh samples per validation
            entry["init_args"] = {**entry.get("init_args", {}), "max_images": 2}
        elif name == "TrainToPlateau":
            entry["init_args"] = {**entry.get("init_args", {}), **QUICK_PLATEAU}
        callbacks.append(entry)
    return callbacks


def overlay(tmp_path: Path, name: str, callbacks: list[dict]) -> list[str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return ["-c", str(path)]


def tiny_cifar10_sweep(tmp_path: Path, cifar10: Path) -> Path:
    """configs/sweeps/cifar10.yaml on the stand-in: its stage configs, γ = 1 and global, one VAE β, 16 training images,
    a few steps (debug preset), 8 samples per measurement; the BL-AE and the VAE keep their measurement presets."""
    config = yaml.safe_load((CONFIGS / "sweeps" / "cifar10.yaml").read_text())
    config.update(
        out_dir=str(tmp_path / "sweep"), gammas=[1, "global"], vae_betas=[20.0], threads=1, workers=2,
        data={"path": str(cifar10), "max_train_samples": 16},
    )  # fmt: skip
    for stage in ("blae", "vae"):
        config[stage]["args"] = [*QUICK, *config[stage].get("args", []), *NO_WORKERS]
    tokens = ["--data.init_args.token_cache_dir", str(tmp_path / "tokens")]  # not the user's ~/.cache
    for stage in ("kernel", "neural"):
        own = REPO_ROOT / config[stage]["config"]
        config[stage]["args"] = [*overlay(tmp_path, stage, config_callbacks(own, num_samples=8)), *NO_WORKERS, *tokens]
    # neural: 4 grids a batch, so that the debug preset's epoch holds the steps the plateau needs
    config["neural"]["args"] = [*QUICK, *config["neural"]["args"], "--data.init_args.batch_size", "4"]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_the_cifar10_sweep_runs_on_a_cifar_shaped_standin_and_its_report_reads_every_cell(tmp_path):
    sweep = tiny_cifar10_sweep(tmp_path, cifar10_standin(tmp_path))
    run_script("sweep.py", ["-c", str(sweep)], tmp_path, timeout=900)
    out = tmp_path / "sweep"
    report = json.loads((out / "report.json").read_text())
    rows = {(r["model"], r["gamma"]): r for r in report["rows"]}
    assert set(rows) == {("kernel", 1), ("neural", 1), ("kernel", "global"), ("neural", "global")}
    for (model, _), row in rows.items():
        assert row["mem_psnr25"] is not None and row["num_samples"] == 8, row
        assert row["fitted"] and row["samples_final"], row  # the neural cells from their logged fit/plateaued
        if model == "neural":
            assert row["fit_note"].startswith("training loss plateaued at step"), row
    neural = [v for v in report["verdicts"] if v["model"] == "neural"]
    assert neural and all(v["outcome"] != "not fitted" for v in neural), neural
    meta = [json.loads(p.read_text()) for p in (tmp_path / "tokens").rglob("meta.json")]
    assert [(m["grid_height"], m["grid_width"], m["num_bits"]) for m in meta] == [(32, 32, 7)]  # one cache, CIFAR-10's grid
    assert meta[0]["split_sizes"] == {"train": 16, "val": 4, "test": 10}


@pytest.mark.slow
def test_the_mnist_and_celeba64_blae_configs_fit_on_their_standins(tmp_path):
    """Both at once (one per core): a few steps of each config as it stands, bf16-mixed included."""
    runs = {"mnist": (mnist_standin(tmp_path), 28, 1), "celeba64": (celeba64_standin(tmp_path), 64, 3)}
    procs = {}
    for name, (data, _, _) in runs.items():
        args = [str(CONFIGS / "blae" / f"{name}.yaml"), *QUICK, "--data.init_args.path", str(data), *NO_WORKERS]
        args += ["--trainer.callbacks+=callbacks.run.results_file.ResultsFile", "--trainer.callbacks.init_args.path"]
        args += [str(tmp_path / f"{name}.json")]
        command = [sys.executable, str(REPO_ROOT / "train.py"), "fit", "-c", *args]
        folder = tmp_path / f"run-{name}"
        folder.mkdir()
        output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        procs[name] = subprocess.Popen(command, cwd=folder, env=subprocess_env(), **output)
    try:
        outputs = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.kill()  # a fit that hung past its timeout must not keep a core of the runner
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{outputs[name][-6000:]}"
    for name, (_, size, channels) in runs.items():
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["global_step"] > 0 and math.isfinite(record["metrics"]["val/psnr"]), (name, record)
        checkpoint = tmp_path / f"run-{name}" / record["best_checkpoint"]  # relative to the run's folder
        hparams = torch.load(checkpoint, map_location="cpu", weights_only=False)["hyper_parameters"]
        assert (hparams["image_size"], hparams["channels"]) == (size, channels), (name, hparams)

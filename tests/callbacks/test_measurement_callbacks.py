"""The measurement callbacks on real (tiny) models and data, in one process."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from callbacks.measurements.memorization import MemorizationCallback
from callbacks.measurements.mutual_information import MutualInformationCallback
from callbacks.measurements.overlap import OverlapCallback
from callbacks.measurements.sample_quality import NovelSampleQualityCallback
from datamodules import HFImageDataModule
from lightning_modules.blae import BinaryLatentAutoencoder
from lightning_modules.vae import GaussianVAE
from networks.autoencoder import PatchMLPDecoder, PatchMLPEncoder
from networks.binarizer import NoiseInjectionBinarizer
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, run_train, wandb_runs


class TinyFeatures(nn.Module):
    """Stands in for Inception in tests: a fixed random projection of the pooled grey pixels.

    (torchmetrics probes a feature module with a (1, 3, 299, 299) batch, so it must take any size.)
    """

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(64, 16)

    def forward(self, images):
        grey = images.float().mean(1, keepdim=True)  # (B, 1, H, W)
        return self.proj(F.adaptive_avg_pool2d(grey, 8).flatten(1))  # (B, 16)


def digits(batch_size=64) -> HFImageDataModule:
    return HFImageDataModule(batch_size=batch_size, max_train_samples=300)


def blae(noise="gaussian", rate=0.5) -> BinaryLatentAutoencoder:
    return BinaryLatentAutoencoder(PatchMLPEncoder(1, 6, 32, 1), PatchMLPDecoder(1, 6, 32, 1), NoiseInjectionBinarizer(noise, rate))


def validate(model, *callbacks) -> dict:
    trainer = Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=list(callbacks),
        limit_val_batches=2,
        accelerator="cpu",
        devices=1,
    )
    trainer.validate(model, datamodule=digits())
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def saturated(model: BinaryLatentAutoencoder) -> BinaryLatentAutoencoder:
    """The same BL-AE with its pre-tanh latents scaled up 1000x: latents at +-1, as after training."""
    with torch.no_grad():
        model.encoder.net[-1].weight.mul_(1000)
        model.encoder.net[-1].bias.mul_(1000)
    return model


@pytest.mark.parametrize("noise,rate,floor", [("gaussian", 0.5, 1e-2), ("triangular", 1.0, 1e-4), ("uniform", 0.8, 1e-8)])
def test_untrained_blae_latents_overlap_under_their_training_noise(in_tmp_dir, noise, rate, floor):
    """An untrained encoder's tanh latents sit near 0: with the training noise their laws overlap.
    Their hard signs hardly do (`hard_codes_mean`: the law that never occurs in training; exactly 0
    for bounded noise of half-width <= 1). Compact noise overlaps less than Gaussian noise in 384 dims."""
    torch.manual_seed(0)
    values = validate(blae(noise, rate), OverlapCallback(num_images=40, mc_samples=64))
    assert values["ovl/mean"] > floor
    hard_ceiling = 1e-6 if noise == "gaussian" else 0.0
    assert values["ovl/hard_codes_mean"] <= hard_ceiling
    assert 0 < values["ovl/lower_bound_mse"] <= values["ovl/measured_mse"]


def test_binarized_blae_latents_do_not_overlap(in_tmp_dir):
    torch.manual_seed(0)
    bounded = validate(saturated(blae("triangular")), OverlapCallback(num_images=40, mc_samples=64))
    assert bounded["ovl/mean"] == 0.0 and bounded["ovl/lower_bound_mse"] == 0.0  # supports disjoint in some coordinate
    torch.manual_seed(0)
    gaussian = validate(saturated(blae("gaussian")), OverlapCallback(num_images=40))
    assert 0 < gaussian["ovl/mean"] < 1e-6
    assert gaussian["ovl/mean"] == pytest.approx(gaussian["ovl/hard_codes_mean"], rel=1e-3)  # the latents are the codes
    assert gaussian["ovl/lower_bound_mse"] <= gaussian["ovl/measured_mse"]


def test_vae_posteriors_overlap_and_the_bound_holds(in_tmp_dir):
    torch.manual_seed(0)
    vae = GaussianVAE(PatchMLPEncoder(1, 12, 32, 1), PatchMLPDecoder(1, 6, 32, 1))
    with torch.no_grad():  # an untrained VAE with wide posteriors: strong overlap
        vae.encoder.net[-1].bias[6:].fill_(2.0)
    values = validate(vae, OverlapCallback(num_images=40, mc_samples=64))
    assert values["ovl/mean"] > 0.01 and values["ovl/bc_upper"] >= values["ovl/mean"]
    assert "ovl/hard_codes_mean" not in values  # a VAE has no codes
    assert values["ovl/lower_bound_mse"] <= values["ovl/measured_mse"]
    with torch.no_grad():  # narrow posteriors: the overlap goes
        vae.encoder.net[-1].bias[6:].fill_(-12.0)
    assert validate(vae, OverlapCallback(num_images=40, mc_samples=64))["ovl/mean"] < 1e-6


def read_curve(folder) -> list[dict]:
    rows = list(csv.DictReader(open(next(Path(folder).rglob("metrics.csv")))))
    return [{k: float(v) for k, v in row.items() if v != ""} for row in rows if row.get("ovl/mean")]


def test_overlap_curve_is_logged_from_step_zero_and_falls_as_training_binarizes(in_tmp_dir):
    torch.manual_seed(0)
    model = BinaryLatentAutoencoder(
        PatchMLPEncoder(1, 6, 32, 1),
        PatchMLPDecoder(1, 6, 32, 1),
        NoiseInjectionBinarizer("gaussian", 0.6),
        optimizer=lambda params: torch.optim.Adam(params, lr=2e-3),
    )
    callback = OverlapCallback(num_images=40, every_n_train_steps=8)
    trainer = Trainer(
        logger=CSVLogger(in_tmp_dir),
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[callback],
        max_steps=16,
        limit_val_batches=0,
        accelerator="cpu",
        devices=1,
        log_every_n_steps=5,
    )
    trainer.fit(model, datamodule=digits(batch_size=16))
    curve = read_curve(in_tmp_dir)
    assert [int(row["step"]) for row in curve] == [0, 1, 2, 4, 8, 16]  # doubling, then every 8 steps
    assert curve[0]["ovl/mean"] > 1e-2 and curve[0]["ovl/hard_codes_mean"] < 1e-6
    assert curve[-1]["ovl/mean"] < curve[0]["ovl/mean"] / 10  # the latents move to the corners
    assert all(row["ovl/eval_seconds"] > 0 and row["ovl/lower_bound_mse"] <= row["ovl/measured_mse"] for row in curve)
    assert "ovl/per_bit" not in curve[0]  # left out of the cheap curve


def test_overlap_curve_does_not_change_training(in_tmp_dir):
    losses = []
    for callbacks in ([], [OverlapCallback(num_images=40, every_n_train_steps=2)]):
        torch.manual_seed(0)
        model = blae()
        trainer = Trainer(
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            callbacks=callbacks,
            max_steps=6,
            limit_val_batches=0,
            accelerator="cpu",
            devices=1,
        )
        trainer.fit(model, datamodule=digits(batch_size=16))
        losses.append(float(trainer.callback_metrics["train/loss"]))
    assert losses[0] == losses[1]


def test_memorization_and_mi_callbacks_log_rates_floor_ceiling_and_curves(in_tmp_dir):
    values = validate(
        blae(),
        MemorizationCallback(num_samples=30, reference_subset=50),
        NovelSampleQualityCallback(TinyFeatures(), num_samples=30, reference_limit=20),
        MutualInformationCallback(num_samples=30, data_limit=100, max_distance=3),
    )
    for key in (
        "mem/psnr25_rate",
        "mem/ratio13_rate",
        "mem/latent_copy_rate",
        "mem/floor_psnr25_rate",
        "mem/ceiling_latent_copy_rate",
        "quality/kid_novel",
        "quality/reference_kid",
    ):
        assert key in values, key
    assert values["mem/ceiling_latent_copy_rate"] == 1.0  # reconstructions' own tokens are training tokens
    assert values["mem/latent_copy_rate"] < 0.1  # uniform random codes copy nothing
    assert {f"ldh/data_token_mi_d{d}" for d in (1, 2, 3)} <= values.keys()
    assert {f"ldh/samples_token_mi_d{d}" for d in (1, 2, 3)} <= values.keys()
    # uniform random codes have no dependence: no excess over the permutation null; digits do
    assert values["ldh/samples_token_mi_d1"] > 0.1  # the raw plug-in value is all bias here
    assert abs(values["ldh/samples_token_mi_excess_d1"]) < 0.05 and values["ldh/samples_token_mi_excess_lo_d1"] < 0
    assert values["ldh/data_token_mi_excess_lo_d1"] > 0.05


def wandb_history(run_dir) -> list[dict]:
    """Every history row of an offline W&B run, read with W&B's own reader."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    out = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True, timeout=120, check=True
    )
    records = (json.loads(line) for line in out.stdout.splitlines() if line.startswith("{"))
    return [record["history"]["item"] for record in records if record.get("type") == "history"]


@pytest.mark.slow
def test_overlap_curve_under_ddp_equals_one_process_at_step_zero(in_tmp_dir):
    """Every rank encodes its share of the subset, the metric gathers them: before any update the
    2-process curve point is the 1-process one (the measured MSE draws rank-dependent noise)."""
    args = [
        "fit",
        "-c",
        DIGITS_CONFIG,
        "-c",
        DEBUG_PRESET,
        "--trainer.limit_val_batches",
        "0",
        "--trainer.callbacks+=callbacks.measurements.overlap.OverlapCallback",
    ]
    run_train(args, in_tmp_dir / "one")
    run_train([*args, "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"], in_tmp_dir / "two")
    first_points = []
    for name in ("one", "two"):
        (run,) = wandb_runs(in_tmp_dir / name)
        curve = [row for row in wandb_history(run) if "ovl/eval_seconds" in row]
        assert [row["trainer/global_step"] for row in curve] == [0, 1, 2, 4]
        first_points.append(curve[0])
    one, two = first_points
    assert one["ovl/mean"] > 1e-2
    for key in ("ovl/mean", "ovl/max", "ovl/mean_nn", "ovl/lower_bound_mse", "ovl/hard_codes_mean"):
        assert two[key] == pytest.approx(one[key], rel=1e-9), key

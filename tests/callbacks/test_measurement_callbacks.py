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
    # nearly the codes: a few latents stay inside (-1, 1) (log10 -19.0 vs -19.6); compared in logs, since
    # pytest.approx(rel=...) on linear values of 1e-19 falls back to its abs=1e-12 and passes anything
    assert -1e4 < gaussian["ovl/log10_mean"] == pytest.approx(gaussian["ovl/hard_codes_log10_mean"], abs=1.0)
    assert gaussian["ovl/lower_bound_mse"] <= gaussian["ovl/measured_mse"]
    assert bounded["ovl/log10_mean"] == float("-inf")  # exactly 0: disjoint supports


def test_vae_posteriors_overlap_and_the_bound_holds(in_tmp_dir):
    torch.manual_seed(0)
    vae = GaussianVAE(PatchMLPEncoder(1, 12, 32, 1), PatchMLPDecoder(1, 6, 32, 1))
    with torch.no_grad():  # an untrained VAE with wide posteriors: strong overlap
        vae.encoder.net[-1].bias[6:].fill_(2.0)
    values = validate(vae, OverlapCallback(num_images=40, mc_samples=64))
    assert values["ovl/mean"] > 0.01 and values["ovl/bc_upper"] >= values["ovl/mean"]
    assert values["ovl/log10_bc_lower_mean"] <= values["ovl/log10_mean"] <= values["ovl/log10_bc_mean"] + 1e-6
    assert values["ovl/outside_bounds"] == 0.0
    assert "ovl/hard_codes_mean" not in values  # a VAE has no codes
    assert values["ovl/lower_bound_mse"] <= values["ovl/measured_mse"]
    with torch.no_grad():  # narrow posteriors: the overlap goes
        vae.encoder.net[-1].bias[6:].fill_(-12.0)
    narrow = validate(vae, OverlapCallback(num_images=40, mc_samples=64))
    assert narrow["ovl/mean"] < 1e-6 and -1e6 < narrow["ovl/log10_mean"] < -6  # finite in logs
    assert narrow["ovl/log10_bc_lower_mean"] <= narrow["ovl/log10_mean"] <= narrow["ovl/log10_bc_mean"]
    assert narrow["ovl/outside_bounds"] == 0.0


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
    assert curve[-1]["ovl/log10_mean"] < curve[0]["ovl/log10_mean"] - 1  # the logged log curve falls too
    series = callback.results_series()["ovl/log10_mean"]  # what results.json "series" gets
    assert [step for step, _ in series] == [0, 1, 2, 4, 8, 16]
    assert [value for _, value in series] == pytest.approx([row["ovl/log10_mean"] for row in curve], rel=1e-6)
    resumed = OverlapCallback(num_images=40, every_n_train_steps=8)
    resumed.load_state_dict(callback.state_dict())  # a checkpoint keeps the curve
    assert resumed.results_series() == callback.results_series()


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
        "mem/decoded_psnr25_rate",
        "mem/floor_decoded_psnr25_rate",
        "mem/floor_latent_near_copy_rate",
        "quality/kid_novel",
        "quality/reference_kid",
    ):
        assert key in values, key
    assert values["mem/ceiling_latent_copy_rate"] == 1.0  # reconstructions' own tokens are training tokens
    assert values["mem/ceiling_latent_near_copy_rate"] == 1.0 and values["mem/ceiling_decoded_psnr25_rate"] == 1.0  # by construction
    assert values["mem/ceiling_n"] == 50 and values["mem/floor_n"] == 50  # the references' sizes (their intervals' n)
    assert values["mem/latent_copy_rate"] < 0.1  # uniform random codes copy nothing
    assert {f"ldh/data_token_mi_d{d}" for d in (1, 2, 3)} <= values.keys()
    assert {f"ldh/samples_token_mi_d{d}" for d in (1, 2, 3)} <= values.keys()
    # uniform random codes have no dependence: no excess over the permutation null; digits do
    assert values["ldh/samples_token_mi_d1"] > 0.1  # the raw plug-in value is all bias here
    assert abs(values["ldh/samples_token_mi_excess_d1"]) < 0.05 and values["ldh/samples_token_mi_excess_lo_d1"] < 0
    assert values["ldh/data_token_mi_excess_lo_d1"] > 0.05
    assert values["ldh/samples_dependence_radius"] == 1.0  # no dependence: not significant at d = 1
    assert values["ldh/data_dependence_radius"] >= 2.0


def test_memorization_floor_is_measured_on_reconstructions_like_the_samples(in_tmp_dir):
    """Floor images taken from the training split itself: reconstructed through the same BL-AE, they score exactly
    the ceiling (the floor is in the samples' space); compared as originals they would be exact copies (rate 1)."""
    torch.manual_seed(0)
    values = validate(blae(), MemorizationCallback(num_samples=10, reference_subset=40, floor_split="train"))
    for measure in ("psnr25_rate", "decoded_psnr25_rate", "latent_near_copy_rate"):  # up to one image of 40 (batching)
        assert values[f"mem/floor_{measure}"] == pytest.approx(values[f"mem/ceiling_{measure}"], abs=0.03), measure
    assert values["mem/floor_nn_psnr_median"] == pytest.approx(values["mem/ceiling_nn_psnr_median"], abs=0.1)
    assert values["mem/floor_nn_psnr_median"] < 30 and values["mem/floor_psnr25_rate"] < 0.5  # originals would read 100 dB, rate 1


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

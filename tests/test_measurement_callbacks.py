"""The measurement callbacks on real (tiny) models and data, in one process."""
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from torch import nn

from callbacks.memorization import MemorizationCallback
from callbacks.mutual_information import MutualInformationCallback
from callbacks.overlap import OverlapCallback
from callbacks.sample_quality import NovelSampleQualityCallback
from datamodules import HFImageDataModule
from lightning_modules.blae import BinaryLatentAutoencoder
from lightning_modules.vae import GaussianVAE
from networks.autoencoder import PatchMLPDecoder, PatchMLPEncoder
from networks.binarizer import TanhBinarizer


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


def blae(noise="gaussian") -> BinaryLatentAutoencoder:
    return BinaryLatentAutoencoder(PatchMLPEncoder(1, 6, 32, 1), PatchMLPDecoder(1, 6, 32, 1), TanhBinarizer(noise, 0.5))


def validate(model, *callbacks) -> dict:
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, callbacks=list(callbacks),
                      limit_val_batches=2, accelerator="cpu", devices=1)
    trainer.validate(model, datamodule=digits())
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_blae_overlap_is_zero_for_bounded_noise_and_tiny_for_gaussian(in_tmp_dir):
    bounded = validate(blae("triangular"), OverlapCallback(num_images=40))
    assert bounded["ovl/mean"] == 0.0  # MEPS exactly: finite-support noise on distinct codes
    gaussian = validate(blae("gaussian"), OverlapCallback(num_images=40))
    assert 0 <= gaussian["ovl/mean"] < 1e-3 and gaussian["ovl/lower_bound_mse"] >= 0 and gaussian["ovl/measured_mse"] > 0


def test_vae_posteriors_overlap_and_the_bound_holds(in_tmp_dir):
    torch.manual_seed(0)
    vae = GaussianVAE(PatchMLPEncoder(1, 12, 32, 1), PatchMLPDecoder(1, 6, 32, 1))
    with torch.no_grad():  # an untrained VAE with wide posteriors: strong overlap
        vae.encoder.net[-1].bias[6:].fill_(2.0)
    values = validate(vae, OverlapCallback(num_images=40, mc_samples=64))
    assert values["ovl/mean"] > 0.01
    assert values["ovl/lower_bound_mse"] <= values["ovl/measured_mse"]


def test_memorization_and_mi_callbacks_log_rates_floor_ceiling_and_curves(in_tmp_dir):
    values = validate(blae(), MemorizationCallback(num_samples=30, reference_subset=50),
                      NovelSampleQualityCallback(TinyFeatures(), num_samples=30, reference_limit=20),
                      MutualInformationCallback(num_samples=30, data_limit=100, max_distance=3))
    for key in ("mem/psnr25_rate", "mem/ratio13_rate", "mem/latent_copy_rate", "mem/floor_psnr25_rate", "mem/ceiling_latent_copy_rate",
                "quality/kid_novel", "quality/reference_kid"):
        assert key in values, key
    assert values["mem/ceiling_latent_copy_rate"] == 1.0  # reconstructions' own tokens are training tokens
    assert values["mem/latent_copy_rate"] < 0.1  # uniform random codes copy nothing
    assert {f"ldh/data_token_mi_d{d}" for d in (1, 2, 3)} <= values.keys()
    assert {f"ldh/samples_token_mi_d{d}" for d in (1, 2, 3)} <= values.keys()
    # uniform random codes have no dependence: MI at the finite-sample bias floor
    assert values["ldh/samples_token_mi_d1"] < 3 * values["ldh/samples_token_mi_bias_d1"] + 0.05

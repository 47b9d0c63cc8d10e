"""Sampling helpers shared by the neural and the kernel γ-ARVM: the bit-flip kernel and inverse-CDF draws.

Both samplers draw every uniform up front (``draw_uniforms``) and turn it into a token by inverse CDF
(``sample_categorical``), so two samplers whose probabilities agree to rounding draw the same tokens
from the same seeds, and a sample depends only on its own seed, not on the batch it was drawn in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from networks.bits import popcount_table

Generators = torch.Generator | Sequence[int] | None


def flip_log_prob(hamming: Tensor, num_bits: int, flip_prob: float) -> Tensor:
    """log q(a | b) = H log ρ + (C - H) log(1 - ρ) for Hamming distance H = H(a, b)."""
    if not 0.0 < flip_prob < 0.5:
        raise ValueError(f"flip_prob must lie in (0, 0.5), got {flip_prob!r}")
    hamming = hamming.to(torch.float64)  # float64: ρ^C underflows float32 for C ≳ 14
    return hamming * math.log(flip_prob) + (num_bits - hamming) * math.log1p(-flip_prob)


def log_flip_kernel(num_bits: int, flip_prob: float, device=None) -> Tensor:
    """(2^C, 2^C) float64 log q(a | b) of the independent bit-flip kernel; symmetric in (a, b)."""
    ids = torch.arange(2**num_bits, device=device)
    hamming = popcount_table(num_bits, device)[ids.view(-1, 1) ^ ids.view(1, -1)]  # (V, V)
    return flip_log_prob(hamming, num_bits, flip_prob)


def draw_uniforms(n: int, steps: int, draws: int, generator: Generators = None, device=None) -> Tensor:
    """(n, steps, draws) U[0, 1) numbers, drawn up front so a sampler's randomness is fixed.

    generator: None (torch's global RNG), one torch.Generator for the whole batch, or a sequence of
    n integer seeds, one private CPU generator per sample: sample i then depends only on its seed,
    not on the batch it was drawn in (how a caller seeds per rank / per sample index).
    """
    if generator is None or isinstance(generator, torch.Generator):
        rng_device = generator.device if generator is not None else device
        return torch.rand(n, steps, draws, generator=generator, device=rng_device).to(device)
    if len(generator) != n:
        raise ValueError(f"got {len(generator)} seeds for {n} samples")
    per_sample = [torch.rand(steps, draws, generator=torch.Generator().manual_seed(int(s))) for s in generator]
    return torch.stack(per_sample).to(device)


def sample_categorical(logits: Tensor, uniform: Tensor) -> Tensor:
    """(n, V) unnormalised log-probs, (n,) uniforms -> (n,) ids by inverse CDF.

    Inverse CDF (rather than torch.multinomial) consumes exactly one uniform per draw, so two
    samplers whose logits agree to rounding pick the same token from the same uniform.
    """
    cdf = torch.softmax(logits, dim=-1).cumsum(-1)  # (n, V)
    ids = torch.searchsorted(cdf, uniform.to(cdf.dtype).contiguous().view(-1, 1))  # (n, 1)
    return ids.squeeze(-1).clamp_max(logits.shape[-1] - 1)  # cdf[-1] may round below 1

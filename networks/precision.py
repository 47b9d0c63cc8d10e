"""The one strict-FP32 guard: inside it, float32 matmuls and convolutions really run in IEEE float32.

Lightning setups often call ``torch.set_float32_matmul_precision("high")``, which gives GEMMs TF32's
10 mantissa bits on CUDA (bf16 passes on oneDNN), and cuDNN convolutions use TF32 by default. Two
places cannot afford that: a hard sign of an encoder output flips on tiny rounding near 0 (token
encoding), and distance GEMMs would reorder near-ties (nearest-neighbour search). See PyTorch's
"TensorFloat-32 (TF32) on Ampere (and later) devices" notes.

torch >= 2.9 refuses to *read* the legacy flags once the per-backend ``fp32_precision`` API was used,
so the guard falls back to that API in that case. Every flag is restored on exit.

Autocast is the other way float32 math silently runs in bf16: under Lightning's ``bf16-mixed`` a GEMM
of float32 inputs runs in bf16 (8 mantissa bits). The guard turns autocast off too (CPU and CUDA),
so a caller inside a ``training_step`` or a user's ``torch.autocast`` gets float32 all the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch


@contextmanager
def strict_fp32() -> Iterator[None]:
    """FP32 matmuls and cuDNN convolutions stay FP32 inside (no TF32, no bf16, no autocast); flags restored after."""
    with no_autocast(), _strict_fp32_flags():
        yield


@contextmanager
def no_autocast() -> Iterator[None]:
    """Autocast off on every device type that has it on: float32 inputs compute in float32 inside."""
    with ExitStack() as stack:
        for device_type in ("cpu", "cuda"):
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


@contextmanager
def _strict_fp32_flags() -> Iterator[None]:
    cudnn = torch.backends.cudnn
    try:
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision(), cudnn.allow_tf32)
    except RuntimeError:
        with _strict_fp32_per_backend():
            yield
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, precision, cudnn.allow_tf32 = saved
        torch.set_float32_matmul_precision(precision)


@contextmanager
def _strict_fp32_per_backend() -> Iterator[None]:
    # mkldnn/cudnn swap their module for an object at import: the stubs miss these attributes
    backends = [torch.backends.cuda.matmul, torch.backends.mkldnn.matmul, torch.backends.cudnn.conv]  # type: ignore[attr-defined]
    saved = [backend.fp32_precision for backend in backends]
    for backend in backends:
        backend.fp32_precision = "ieee"
    try:
        yield
    finally:
        for backend, precision in zip(backends, saved, strict=True):
            backend.fp32_precision = precision

"""`make gpu-check`, the checks: every CUDA-only code path gives the CPU's result at CIFAR size (device_checks.py)."""

from __future__ import annotations

import pytest
import torch

from tests.gpu.device_checks import CHECKS, CIFAR

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (make gpu-check on a GPU machine)"),
]


@pytest.mark.parametrize("name", list(CHECKS))
def test_cuda_matches_the_cpu(name):
    note = CHECKS[name](torch.device("cuda"), CIFAR)
    print(f"check: {name}: pass: {note}")

"""networks/precision.py: the strict-FP32 guard turns every reduced-precision shortcut off and restores it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from networks.precision import strict_fp32


def test_strict_fp32_turns_tf32_off_for_matmuls_and_convolutions_and_restores_them():
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("medium")
    torch.backends.cudnn.allow_tf32 = True
    try:
        with strict_fp32():
            assert torch.get_float32_matmul_precision() == "highest"
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "medium" and torch.backends.cudnn.allow_tf32
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


PER_BACKEND_API_SCRIPT = """
import torch
from networks.precision import strict_fp32
torch.backends.cuda.matmul.fp32_precision = "tf32"  # after this, reading the legacy flags raises
torch.backends.mkldnn.matmul.fp32_precision = "bf16"
torch.backends.cudnn.conv.fp32_precision = "tf32"
with strict_fp32():
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
assert torch.backends.cuda.matmul.fp32_precision == "tf32"
assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
assert torch.backends.cudnn.conv.fp32_precision == "tf32"
"""


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch < 2.9 has no per-backend API")
def test_strict_fp32_with_the_per_backend_precision_api():
    # a subprocess: once the per-backend API is used, this process could no longer read the legacy flags
    repo_root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", PER_BACKEND_API_SCRIPT],
        cwd=repo_root,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
    )

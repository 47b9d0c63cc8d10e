"""The checks of `make gpu-check` on the CPU at toy sizes: their logic is tested where no GPU exists."""

from __future__ import annotations

import torch

import networks.bits
from nn_search import int8_gemm
from tests.gpu.device_checks import CHECKS, CPU, TINY


def test_every_check_passes_on_the_cpu():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        notes = {name: check(CPU, TINY) for name, check in CHECKS.items()}
    finally:
        torch.set_num_threads(threads)
    assert len(notes) == 9
    for fragment in (
        "int8 GEMM",
        "bit packing",
        "windowed attention",
        "KV-cached sampling",
        "exact L2",
        "Hamming",
        "flex",
        "compile",
        "bf16",
    ):
        assert any(fragment in name for name in notes), fragment
    assert all(notes.values()), "a check returned no note"


def test_a_wrong_device_result_fails_its_check(monkeypatch):
    """The checks can come out the other way: an off-by-one int8 GEMM or bit packer fails its check."""
    real_matmul, real_pack = int8_gemm.int8_matmul, networks.bits.pack_bits
    monkeypatch.setattr(int8_gemm, "int8_matmul", lambda a, b: real_matmul(a, b) + 1)
    monkeypatch.setattr(networks.bits, "pack_bits", lambda signs: real_pack(signs) ^ (signs.shape[0] > 1))
    outcomes = {}
    for name in ("int8 GEMM with padding", "bit packing and token codes", "KV-cached sampling"):
        try:
            outcomes[name] = f"pass: {CHECKS[name](CPU, TINY)}"
        except AssertionError as err:
            outcomes[name] = f"FAIL: {err}"
    assert outcomes["int8 GEMM with padding"].startswith("FAIL")
    assert outcomes["bit packing and token codes"].startswith("FAIL")
    assert outcomes["KV-cached sampling"].startswith("pass")

"""The exact int8 GEMM of the NN search: (M, K) int8 @ (N, K)^T int8 -> (M, N) int32, on any device.

`int8_matmul` is the one place that calls `torch._int_mm` (with the padding cuBLAS needs);
`fast_int8_gemm` says whether it is a real int8 GEMM on a device (else the search takes FP32).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

# the int8 path scores 2 q.r - ||r||^2 in int32: per dimension |2 q_i r_i| <= 2^15 and r_i^2 <= 2^14,
# so the score is exact below this many dimensions (larger rows take the FP32 path)
MAX_EXACT_INT8_DIMS = 2**31 // (3 * 2**14)


def int8_matmul(a: Tensor, b: Tensor) -> Tensor:
    """(M, K) int8 @ (N, K)^T int8 -> (M, N) int32, exact, on the device of ``a`` and ``b``.

    `torch._int_mm` is private but the only exact int8 GEMM in torch; on CUDA (cuBLAS) it also
    wants M > 16, K >= 16, K % 8 == 0 and N % 8 == 0, with b passed as the transposed view of a
    row-major (N, K) matrix, so pad with zero rows/columns there (they add nothing to any dot
    product) and cut the result back. Should a device still reject it, FP64 products of int8
    values are exact as well (slower, hence the warning).
    """
    num_a, num_b = a.shape[0], b.shape[0]
    if a.is_cuda:
        width = max(16, round_up(a.shape[1], 8))
        a = pad_rows(pad_columns(a, width), max(17, num_a))
        b = pad_rows(pad_columns(b, width), round_up(num_b, 8))
    try:
        product = torch._int_mm(a, b.T)  # (M', N') int32
    except RuntimeError as error:
        warnings.warn(f"torch._int_mm failed ({error}); exact FP64 fallback for the int8 NN search", stacklevel=2)
        product = (a.double() @ b.double().T).to(torch.int32)  # (M', N'), |sums| < 2^31 by MAX_EXACT_INT8_DIMS
    return product[:num_a, :num_b]


def fast_int8_gemm(device: torch.device) -> bool:
    """Whether torch._int_mm is a real int8 GEMM here: cuBLAS on CUDA, oneDNN on CPUs with
    AVX512-VNNI (elsewhere torch runs it as a scalar loop, slower than the FP32 path)."""
    if not hasattr(torch, "_int_mm"):
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and getattr(torch.cpu, "_is_vnni_supported", lambda: False)()


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def pad_rows(x: Tensor, num_rows: int) -> Tensor:
    if x.shape[0] == num_rows:
        return x
    return torch.cat([x, x.new_zeros(num_rows - x.shape[0], *x.shape[1:])])


def pad_columns(x: Tensor, num_columns: int) -> Tensor:
    if x.shape[1] == num_columns:
        return x
    return torch.cat([x, x.new_zeros(x.shape[0], num_columns - x.shape[1])], dim=1)

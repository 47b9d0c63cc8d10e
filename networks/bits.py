"""Signed bits <-> packed token ids.

A latent cell holds C signed bits in {-1, +1}; its token is the integer whose binary digits are
those bits, channel 0 being the most significant (as in the authors' follow-up code).
"""
import torch
from torch import Tensor


def bit_weights(num_bits: int, device=None) -> Tensor:
    """(C,) powers of two, most significant first."""
    return 2 ** torch.arange(num_bits - 1, -1, -1, device=device, dtype=torch.long)


def pack_bits(signs: Tensor) -> Tensor:
    """(B, C, h, w) signs in {-1, +1} (or any real: > 0 counts as +1) -> (B, h, w) long ids in [0, 2^C)."""
    num_bits = signs.shape[1]
    if num_bits > 62:
        raise ValueError(f"cannot pack {num_bits} bits into an int64 token id (at most 62)")
    shifts = torch.arange(num_bits - 1, -1, -1, device=signs.device).view(1, -1, 1, 1)  # (1, C, 1, 1)
    return ((signs > 0).long() << shifts).sum(1)  # shift-and-sum: an int64 einsum has no CUDA kernel


def unpack_bits(ids: Tensor, num_bits: int, dtype=torch.float32) -> Tensor:
    """(B, h, w) ids -> (B, C, h, w) signs in {-1, +1}; the inverse of pack_bits."""
    bits = (ids.long().unsqueeze(1) >> torch.arange(num_bits - 1, -1, -1, device=ids.device).view(1, -1, 1, 1)) & 1
    return (bits * 2 - 1).to(dtype)


def popcount_table(num_bits: int, device=None) -> Tensor:
    """(2^C,) number of set bits of every id: Hamming distance of two ids = table[a ^ b]."""
    ids = torch.arange(2**num_bits, device=device)
    return unpack_bits(ids.view(1, -1, 1), num_bits).gt(0).sum(1).view(-1)


def token_hamming(a: Tensor, b: Tensor, num_bits: int) -> Tensor:
    """Elementwise Hamming distance between two broadcastable id tensors."""
    return popcount_table(num_bits, a.device)[torch.bitwise_xor(a.long(), b.long())]

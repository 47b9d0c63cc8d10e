"""The one codec between signed bits and token ids; every module that packs or unpacks imports it.

A latent cell holds C signed bits in {-1, +1}; its token is the integer whose binary digits are
those bits, channel 0 being the most significant (as in the authors' follow-up code).

Two layouts, one rule:
- channels last, ``(..., C)``: ``token_bits`` / ``token_signs`` / ``bits_to_tokens`` (token models);
- channels first, ``(B, C, h, w)``: ``pack_bits`` / ``unpack_bits`` (the autoencoder's latent grid).
"""

import torch
from torch import Tensor

MAX_PACKED_BITS = 62  # an int64 token id holds at most 62 bits and stays positive under the shifts


def bit_weights(num_bits: int, device=None) -> Tensor:
    """(C,) powers of two, most significant first."""
    return 2 ** torch.arange(num_bits - 1, -1, -1, device=device, dtype=torch.long)


def token_bits(tokens: Tensor, num_bits: int) -> Tensor:
    """(...) ids -> (..., C) bool bits, most significant first."""
    return (tokens.long().unsqueeze(-1) & bit_weights(num_bits, tokens.device)) != 0


def token_signs(tokens: Tensor, num_bits: int, dtype=torch.float32) -> Tensor:
    """(...) ids -> (..., C) signs in {-1, +1}."""
    return token_bits(tokens, num_bits).to(dtype) * 2 - 1


def bits_to_tokens(bits: Tensor) -> Tensor:
    """(..., C) bits (bool, {0, 1}, or any real: > 0 counts as 1), most significant first -> (...) long ids."""
    num_bits = bits.shape[-1]
    if num_bits > MAX_PACKED_BITS:
        raise ValueError(f"cannot pack {num_bits} bits into an int64 token id (at most {MAX_PACKED_BITS})")
    return ((bits > 0).long() * bit_weights(num_bits, bits.device)).sum(-1)  # an int64 einsum has no CUDA kernel


def pack_bits(signs: Tensor) -> Tensor:
    """(B, C, h, w) signs in {-1, +1} (or any real: > 0 counts as +1) -> (B, h, w) long ids in [0, 2^C)."""
    return bits_to_tokens(signs.movedim(1, -1))  # (B, h, w, C) -> (B, h, w)


def unpack_bits(ids: Tensor, num_bits: int, dtype=torch.float32) -> Tensor:
    """(B, h, w) ids -> (B, C, h, w) signs in {-1, +1}; the inverse of pack_bits."""
    return token_signs(ids, num_bits, dtype).movedim(-1, 1).contiguous()  # (B, h, w, C) -> (B, C, h, w)


def popcount_table(num_bits: int, device=None) -> Tensor:
    """(2^C,) number of set bits of every id: Hamming distance of two ids = table[a ^ b]."""
    return token_bits(torch.arange(2**num_bits, device=device), num_bits).sum(-1)  # (V,)


def token_hamming(a: Tensor, b: Tensor, num_bits: int) -> Tensor:
    """Elementwise Hamming distance between two broadcastable id tensors."""
    return popcount_table(num_bits, a.device)[torch.bitwise_xor(a.long(), b.long())]

"""Hamming top-2 by XOR + popcount of bit-packed codes (NumPy), the CPU path of `hamming_top2`.

One bit per code position instead of the GEMM path's byte per bit: codes are packed once into
64-bit words, stored word-major ((W, M): word w of every code is contiguous), and every
(query, reference) pair costs W XORs and popcounts, as in faiss's IndexBinaryFlat.

The popcount runs on the XOR's *bytes*: NumPy's uint8 `bitwise_count` loop is vectorised (vpopcntb
with AVX512-BITALG, a nibble table on AVX2), while its uint64 loop is scalar (measured 2.7 vs 1.5 G
words/s on one core of the AVX-512 EPYC). Each NumPy call handles 8 words of a (query block x
reference tile) piece at once (fewer, longer calls). The per-byte counts (<= 8 each) are then summed eight
lanes at a time by plain uint64 additions (SWAR): 24 words fit below 256 per byte, after which the
8 byte lanes are added pairwise into four 16-bit lanes (<= 384 each) and those into one count by a
multiply by 0x0001000100010001 and a shift by 48. Every value is an integer: the distances are exact.

Work is split into (query block x reference tile) pieces whose scratch stays in L2 cache; query
blocks run on a small thread pool (NumPy releases the GIL inside its loops) of
`torch.get_num_threads()` workers, the count torch (and the benchmark's faiss) use.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nn_search.reference_cache import ReferenceCache
from nn_search.streaming import Top2

WORD_BITS = 64
WORDS_PER_CALL = 8  # words XOR-ed, counted and summed per NumPy call (fewer, longer calls)
WORDS_PER_FOLD = 3 * WORDS_PER_CALL  # 24 words x 8 bits per byte lane = 192 < 256: byte lanes cannot overflow
_EVEN_BYTES = np.uint64(0x00FF00FF00FF00FF)
_SHORT_LANE_SUM = np.uint64(0x0001000100010001)  # x * this >> 48 = sum of x's four 16-bit lanes (sum < 2^16)
_PACK_ROWS = 4096  # codes unpacked to bools at a time while packing (bounds the temporary)


@dataclass(frozen=True)
class PopcountBlocks:
    """Piece sizes: the scratch is WORDS_PER_CALL x query_block x reference_tile uint64 words.

    2 x 4096 (512 KiB of scratch, in a 1 MiB L2): long rows amortise NumPy's per-row broadcast
    overhead (XOR at 4.5 vs 1.4 G words/s with 512-word rows); measured the best of 1x8192, 2x4096,
    4x2048 and 8x1024 at 1024 and 7168 bits on the 2-core AVX-512 EPYC.
    """

    query_block: int = 2
    reference_tile: int = 4096


@dataclass(frozen=True)
class PackedCodes:
    """Bit-packed codes: bit i of a code is bit i % 64 of word i // 64 (zero padding past num_bits)."""

    words: np.ndarray  # (W, M) uint64, word-major
    num_bits: int

    @property
    def num_codes(self) -> int:
        return self.words.shape[1]


def pack_signs(signs: Tensor) -> PackedCodes:
    """(M, K) signed codes on CPU (> 0 is a one bit) -> PackedCodes, W = ceil(K / 64) words each."""
    num_codes, num_bits = signs.shape
    num_words = -(-num_bits // WORD_BITS)
    words = np.empty((num_words, num_codes), dtype=np.uint64)  # (W, M)
    rows = signs.detach().numpy()  # (M, K), no copy
    for start in range(0, num_codes, _PACK_ROWS):
        bits = np.packbits(rows[start : start + _PACK_ROWS] > 0, axis=1, bitorder="little")  # (m, ceil(K / 8)) uint8
        padded = np.zeros((bits.shape[0], num_words * 8), dtype=np.uint8)  # (m, 8W), zero bytes add nothing
        padded[:, : bits.shape[1]] = bits
        words[:, start : start + bits.shape[0]] = padded.view(np.uint64).T  # (W, m)
    return PackedCodes(words, num_bits)


REFERENCE_CACHE = ReferenceCache()  # the packed reference of the last search


def distance_dtype(num_bits: int) -> type[np.unsignedinteger]:
    """Smallest unsigned type that holds every distance 0..K and one larger sentinel."""
    return np.uint16 if num_bits < np.iinfo(np.uint16).max else np.uint32


def _block_distances(query_words: np.ndarray, reference: PackedCodes, tile: int) -> np.ndarray:
    """(W, b) query words -> (b, N) Hamming distances to every reference code."""
    num_words, num_queries = query_words.shape
    num_reference = reference.num_codes
    distances = np.zeros((num_queries, num_reference), dtype=distance_dtype(reference.num_bits))  # (b, N)
    queries = query_words[:, :, None]  # (W, b, 1)
    tile_elements = num_queries * min(tile, num_reference)
    xor_flat = np.empty(WORDS_PER_CALL * tile_elements, dtype=np.uint64)
    lanes_flat, partial_flat = np.empty(tile_elements, dtype=np.uint64), np.empty(tile_elements, dtype=np.uint64)
    for tile_start in range(0, num_reference, tile):
        tile_stop = min(tile_start + tile, num_reference)
        size = num_queries * (tile_stop - tile_start)
        xor = xor_flat[: WORDS_PER_CALL * size].reshape(WORDS_PER_CALL, num_queries, -1)  # (k, b, t) contiguous
        lanes = lanes_flat[:size].reshape(num_queries, -1)  # (b, t) 8 byte-lane counts per pair
        partial = partial_flat[:size].reshape(num_queries, -1)  # (b, t)
        out = distances[:, tile_start:tile_stop]  # (b, t) view
        for fold_start in range(0, num_words, WORDS_PER_FOLD):
            fold_stop = min(fold_start + WORDS_PER_FOLD, num_words)
            for call_start in range(fold_start, fold_stop, WORDS_PER_CALL):
                call_stop = min(call_start + WORDS_PER_CALL, fold_stop)
                words = xor[: call_stop - call_start]  # (k, b, t)
                np.bitwise_xor(queries[call_start:call_stop], reference.words[call_start:call_stop, None, tile_start:tile_stop], out=words)
                as_bytes = words.view(np.uint8)  # (k, b, 8t)
                np.bitwise_count(as_bytes, out=as_bytes)  # per-byte popcounts, in place
                if call_start == fold_start:
                    np.add.reduce(words, axis=0, out=lanes)
                else:
                    np.add(lanes, np.add.reduce(words, axis=0, out=partial), out=lanes)  # byte lanes < 256
            np.right_shift(lanes, np.uint64(8), out=partial)  # odd byte lanes, moved down
            np.bitwise_and(partial, _EVEN_BYTES, out=partial)
            np.bitwise_and(lanes, _EVEN_BYTES, out=lanes)
            np.add(lanes, partial, out=lanes)  # four 16-bit lanes, <= 2 * 8 * WORDS_PER_FOLD each
            np.multiply(lanes, _SHORT_LANE_SUM, out=lanes)  # top 16 bits = sum of the four lanes
            np.right_shift(lanes, np.uint64(48), out=lanes)
            np.add(out, lanes, out=out, casting="unsafe")  # < 2^16 / 2^32 by distance_dtype
    return distances


def _block_top2(query_words: np.ndarray, reference: PackedCodes, tile: int) -> tuple[np.ndarray, ...]:
    """(W, b) query words -> (d1, d2, idx1, idx2) of the block, ties to the lower reference index."""
    distances = _block_distances(query_words, reference, tile)  # (b, N)
    rows = np.arange(distances.shape[0])
    idx1 = distances.argmin(axis=1)  # first minimum: the lowest index among ties
    d1 = distances[rows, idx1].astype(np.float64)
    if reference.num_codes == 1:
        return d1, np.full_like(d1, np.inf), idx1, np.full_like(idx1, -1)
    distances[rows, idx1] = np.iinfo(distances.dtype).max  # above every distance (distance_dtype)
    idx2 = distances.argmin(axis=1)
    return d1, distances[rows, idx2].astype(np.float64), idx1, idx2


DEFAULT_BLOCKS = PopcountBlocks()


def popcount_hamming_top2(query_signs: Tensor, reference_signs: Tensor, blocks: PopcountBlocks | None = None) -> Top2:
    """Hamming top-2 of (Q, K) / (N, K) CPU signed codes (> 0 is a one bit), N >= 1.

    Distances are float64 integers; among equally near codes the lower reference index comes first
    (idx2 is the lowest index at distance d2 other than idx1). The reference is packed once and
    cached while unchanged (`REFERENCE_CACHE`).
    """
    blocks = blocks or DEFAULT_BLOCKS
    reference = REFERENCE_CACHE.get(reference_signs, pack_signs)
    num_queries = query_signs.shape[0]
    if num_queries == 0:
        empty = torch.zeros(0, dtype=torch.float64)
        return Top2(empty, empty, empty.long(), empty.long())
    query_words = pack_signs(query_signs).words  # (W, Q)
    starts = range(0, num_queries, blocks.query_block)

    def search(start: int) -> tuple[np.ndarray, ...]:
        return _block_top2(np.ascontiguousarray(query_words[:, start : start + blocks.query_block]), reference, blocks.reference_tile)

    workers = min(torch.get_num_threads(), len(starts))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(search, starts))
    else:
        parts = [search(start) for start in starts]
    d1, d2, idx1, idx2 = (np.concatenate(column) for column in zip(*parts, strict=True))
    return Top2(torch.from_numpy(d1), torch.from_numpy(d2), torch.from_numpy(idx1).long(), torch.from_numpy(idx2).long())

"""networks/bits.py: the one codec between signed bits and token ids, in both layouts."""

import pytest
import torch

from networks.bits import bits_to_tokens, pack_bits, popcount_table, token_bits, token_hamming, token_signs, unpack_bits


@pytest.mark.parametrize("num_bits", [1, 6, 7, 12])
def test_pack_unpack_round_trip(num_bits):
    signs = torch.randint(0, 2, (3, num_bits, 4, 5)).float() * 2 - 1
    ids = pack_bits(signs)
    assert ids.shape == (3, 4, 5) and ids.min() >= 0 and ids.max() < 2**num_bits
    assert torch.equal(unpack_bits(ids, num_bits), signs)
    assert torch.equal(pack_bits(unpack_bits(ids, num_bits)), ids)


@pytest.mark.parametrize("num_bits", [1, 4, 13])
def test_token_bits_and_signs_round_trip(num_bits):
    ids = torch.randint(0, 2**num_bits, (2, 9))
    bits, signs = token_bits(ids, num_bits), token_signs(ids, num_bits)
    assert bits.shape == signs.shape == (2, 9, num_bits)
    assert torch.equal(bits_to_tokens(bits), ids) and torch.equal(bits_to_tokens(signs), ids)
    assert torch.equal(signs, bits.float() * 2 - 1)


def test_the_two_layouts_agree():
    ids = torch.randint(0, 2**5, (3, 4, 6))
    assert torch.equal(unpack_bits(ids, 5), token_signs(ids, 5).permute(0, 3, 1, 2))  # (B, C, h, w)


def test_channel_zero_is_most_significant():
    signs = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
    assert pack_bits(signs).item() == 4
    assert token_bits(torch.tensor(1), 4).tolist() == [False, False, False, True]


def test_unpack_bits_keeps_the_asked_dtype():
    assert unpack_bits(torch.tensor([[[5]]]), 3, dtype=torch.int8).dtype == torch.int8


def test_too_many_bits_for_an_int64_id_are_refused():
    with pytest.raises(ValueError, match="63 bits"):
        pack_bits(torch.ones(1, 63, 1, 1))


def test_hamming_of_ids_counts_differing_bits():
    assert popcount_table(3).tolist() == [0, 1, 1, 2, 1, 2, 2, 3]
    assert token_hamming(torch.tensor([0, 7, 5]), torch.tensor([7, 7, 2]), 3).tolist() == [3, 0, 3]

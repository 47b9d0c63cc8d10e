"""The uint8 <-> [-1, 1] pixel codec: exact both ways on every uint8 value, clamped and rounded from floats."""

import torch

from imaging.pixels import signed_unit_to_uint8, uint8_to_signed_unit


def test_every_uint8_value_round_trips_exactly():
    every_value = torch.arange(256, dtype=torch.uint8)
    unit = uint8_to_signed_unit(every_value)
    assert unit.dtype == torch.float32 and unit[0] == -1 and unit[-1] == 1
    assert torch.equal(signed_unit_to_uint8(unit), every_value)


def test_floats_are_clamped_and_rounded_like_a_saved_image():
    images = torch.tensor([-3.0, -1.0, 0.0, 0.999, 1.0, 7.0])
    assert signed_unit_to_uint8(images).tolist() == [0, 0, 128, 255, 255, 255]  # 0 -> 127.5 rounds to even: 128
    uint8 = torch.tensor([3, 200], dtype=torch.uint8)
    assert signed_unit_to_uint8(uint8) is uint8

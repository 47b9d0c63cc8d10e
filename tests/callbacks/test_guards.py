"""The batch and non-finite guards name the culprit and never write a checkpoint with non-finite weights."""

from __future__ import annotations

import pytest
import torch

from callbacks.run.input_guard import batch_problem
from callbacks.run.nan_guard import NonFiniteCheckpointError, NonFiniteGuard


@pytest.mark.parametrize(
    "batch, culprit",
    [
        ({"image": torch.rand(2, 1, 8, 8) * 255}, "but the models take images scaled to [-1, 1]"),
        ({"image": torch.full((2, 1, 8, 8), float("nan"))}, "NaN/Inf"),
        ({"tokens": torch.tensor([[0, 64]])}, "outside [0, 64)"),
        ({"image": torch.rand(2, 1, 8, 8) * 2 - 1, "tokens": torch.tensor([[0, 63]])}, None),
    ],
)
def test_batch_problems_are_named(batch, culprit):
    problem = batch_problem(batch, num_bits=6)
    assert (problem is None) if culprit is None else (culprit in problem)


def test_no_checkpoint_is_written_with_non_finite_weights():
    class FakeTrainer:
        global_step, current_epoch, checkpoint_callback = 5, 1, None
        fit_loop = type("F", (), {"epoch_loop": type("E", (), {"batch_idx": 2})()})()

    guard = NonFiniteGuard()
    guard.on_save_checkpoint(FakeTrainer(), None, {"state_dict": {"w": torch.ones(2)}})
    with pytest.raises(NonFiniteCheckpointError, match=r"global step 5 .*weight w is not finite"):
        guard.on_save_checkpoint(FakeTrainer(), None, {"state_dict": {"w": torch.tensor([1.0, float("inf")])}})

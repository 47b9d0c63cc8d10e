"""The training data order resumes mid-epoch: a loader rebuilt from a state continues with exactly the batches the
original would have served next, on any number of ranks, without touching the global random stream."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from datamodules.resumable_loader import EpochShuffle, ResumableLoader


class Rows(torch.utils.data.Dataset):
    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index


def loader(size: int = 40, batch_size: int = 4, world: int = 1, rank: int = 0, seed: int = 7, **kwargs) -> ResumableLoader:
    dataset = Rows(size)
    return ResumableLoader(
        dataset, batch_size=batch_size, drop_last=True, sampler=EpochShuffle(dataset, num_replicas=world, rank=rank, seed=seed), **kwargs
    )


def batches(data: ResumableLoader, epoch: int) -> list[list[int]]:
    data.sampler.set_epoch(epoch)  # what Lightning does before every epoch
    return [batch.tolist() for batch in data]


def test_the_order_is_lightnings_distributed_order_and_the_same_for_every_world_size():
    ours = EpochShuffle(Rows(40), num_replicas=2, rank=1, seed=7)
    theirs = DistributedSampler(Rows(40), num_replicas=2, rank=1, seed=7, shuffle=True)
    ours.set_epoch(3), theirs.set_epoch(3)
    assert list(ours) == list(theirs)  # a DDP run keeps the order Lightning's own sampler gave it
    one = batches(loader(world=1, batch_size=8), epoch=2)
    two = [batches(loader(world=2, rank=r, batch_size=4), epoch=2) for r in (0, 1)]
    assert [sorted(a + b) for a, b in zip(*two, strict=True)] == [sorted(step) for step in one]  # step j: the same global batch
    assert batches(loader(), 0) != batches(loader(), 1) and batches(loader(), 1) == batches(loader(), 1)
    assert batches(loader(seed=8), 0) != batches(loader(seed=7), 0)


@pytest.mark.parametrize("stop_after", [0, 3, 10])
def test_a_loader_rebuilt_from_its_state_serves_what_the_original_would_have(stop_after):
    reference = loader()
    expected = batches(reference, epoch=4)
    original = loader()
    original.sampler.set_epoch(4)
    iterator = iter(original)
    served = [next(iterator).tolist() for _ in range(stop_after)]
    state = original.state_dict()
    assert state["epoch"] == 4 and state["position"] == 4 * stop_after

    rebuilt = loader()
    rebuilt.load_state_dict(state)
    assert rebuilt.state_dict() == state  # loaded, not started: the checkpoint still says where it is
    rebuilt.sampler.set_epoch(4)  # Lightning sets the epoch again before the first batch
    rest = [batch.tolist() for batch in rebuilt]
    assert served + rest == expected
    assert batches(rebuilt, 5) == batches(loader(), 5)  # the next epoch is whole again


def test_a_state_written_at_an_epoch_end_resumes_into_the_next_epoch_whole():
    original = loader()
    batches(original, epoch=1)
    rebuilt = loader()
    rebuilt.load_state_dict(original.state_dict())
    assert batches(rebuilt, 2) == batches(loader(), 2)  # Lightning moves to epoch 2 before the first batch


def test_two_ranks_resume_their_own_shares_and_a_new_world_size_keeps_the_global_order():
    full = [batches(loader(world=2, rank=r), epoch=0) for r in (0, 1)]
    states = []
    for rank in (0, 1):
        first = loader(world=2, rank=rank)
        first.sampler.set_epoch(0)
        iterator = iter(first)
        next(iterator), next(iterator)
        states.append(first.state_dict())
    assert states[0] == states[1] and states[0]["position"] == 16  # 2 steps x global batch 8: every rank agrees
    for rank in (0, 1):
        rebuilt = loader(world=2, rank=rank)
        rebuilt.load_state_dict(states[rank])
        assert batches(rebuilt, 0) == full[rank][2:]
    one = loader(world=1, batch_size=8)  # the same global batch on one process
    one.load_state_dict(states[0])
    rest = batches(one, 0)
    assert [sorted(step) for step in rest] == [sorted(a + b) for a, b in zip(full[0][2:], full[1][2:], strict=True)]


def test_other_data_restarts_the_epoch_with_a_warning():
    original = loader()
    original.sampler.set_epoch(0)
    next(iter(original))
    state = original.state_dict()
    smaller = loader(size=36)
    with pytest.warns(UserWarning, match="the training data changed since the checkpoint .*dataset_size 40 -> 36"):
        smaller.load_state_dict(state)
    assert batches(smaller, 0) == batches(loader(size=36), 0)


def test_creating_and_iterating_the_loader_never_moves_the_global_random_stream():
    """The model's noise and dropout draw from the global generator: a resumed run creates its iterator at
    another moment than an uninterrupted one, so that must not shift the stream."""
    torch.manual_seed(0)
    before = torch.get_rng_state()
    data = loader()
    for epoch in range(2):
        batches(data, epoch)
    assert torch.equal(torch.get_rng_state(), before)


def test_worker_processes_resume_like_the_main_process():
    reference = batches(loader(num_workers=2, persistent_workers=True), epoch=1)
    original = loader(num_workers=2)
    original.sampler.set_epoch(1)
    iterator = iter(original)
    head = [next(iterator).tolist() for _ in range(4)]
    rebuilt = loader(num_workers=2)
    rebuilt.load_state_dict(original.state_dict())
    assert head + batches(rebuilt, 1) == reference


def test_with_a_foreign_sampler_it_is_a_plain_loader():
    """What Lightning builds for overfit_batches (a SequentialSampler): no state, nothing to resume."""
    plain = ResumableLoader(Rows(8), batch_size=4, sampler=torch.utils.data.SequentialSampler(Rows(8)))
    assert plain.state_dict() == {} and [b.tolist() for b in plain] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    plain.load_state_dict({"epoch": 3, "position": 4})  # ignored
    assert [b.tolist() for b in plain] == [[0, 1, 2, 3], [4, 5, 6, 7]]

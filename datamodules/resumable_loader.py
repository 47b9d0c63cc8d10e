"""A training data order that a checkpoint can resume mid-epoch, on any number of ranks.

``EpochShuffle`` draws epoch e's order as ``randperm(N)`` of a generator seeded with ``seed + e`` (the
permutation Lightning's own ``DistributedSampler`` draws), and rank r of W takes positions r, r + W,
r + 2W, ... of it. Step j of an epoch then consumes positions [j·B, (j+1)·B) of that one order (B the
global batch) on any W, so "how far into the epoch" is a single number, ``position``. It is a
``DistributedSampler``, so Lightning neither replaces it under DDP nor forgets its ``set_epoch``.

``ResumableLoader`` is a ``DataLoader`` with Lightning's stateful-loader interface: Lightning 2.6 saves
``state_dict()`` of every train loader that has one into the checkpoint's fit-loop state and hands it to
``load_state_dict()`` on resume, before it creates the epoch's iterator. The loader counts the batches it
has handed out in the current pass. Its iterator starts lazily, at the first batch, so the epoch is
the one Lightning set last (a checkpoint written at an epoch end resumes into the next epoch, whose
``set_epoch`` comes after the iterator is created), and it draws its workers' base seed from a
generator of its own, seeded from (seed, epoch): creating it never moves the global random stream
that the model's noise and dropout draw from.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any, cast

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, DistributedSampler

STATE_VERSION = 1
_EPOCH_SEED_STRIDE = 1_000_003  # a prime: base seeds of nearby (seed, epoch) pairs never collide


class EpochShuffle(DistributedSampler):
    """Epoch e's seeded order, this rank's share of it, from global position ``start`` on (one pass)."""

    def __init__(self, dataset: Any, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0
        """Global position where the next pass begins (a multiple of num_replicas); back to 0 after it."""

    def order(self) -> list[int]:
        """The epoch's global order, padded by wrapping around to a multiple of num_replicas."""
        size = len(cast(Sized, self.dataset))  # a map-style dataset, as DistributedSampler requires
        if self.shuffle:
            indices = torch.randperm(size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            indices = list(range(size))
        padding = self.total_size - size
        return indices + (indices * math.ceil(padding / max(size, 1)))[:padding]

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(self.order()[start + self.rank : self.total_size : self.num_replicas])


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over an ``EpochShuffle`` whose position in the epoch goes into the checkpoint.

    Takes exactly ``DataLoader``'s arguments (so Lightning can rebuild it, e.g. for ``overfit_batches``);
    with a sampler of another kind it behaves as a plain, non-resumable ``DataLoader``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(*args, **kwargs)
        self._pending: dict[str, Any] | None = None
        self._pass_start = 0
        self._served = 0

    @property
    def shuffle_sampler(self) -> EpochShuffle | None:
        sampler = getattr(self.batch_sampler, "sampler", None) or self.sampler
        return sampler if isinstance(sampler, EpochShuffle) else None

    def _global_batch(self, sampler: EpochShuffle) -> int:
        return (self.batch_size or 1) * sampler.num_replicas

    @property
    def position(self) -> int:
        """Global samples of the current epoch handed out so far (by all ranks together)."""
        sampler = self.shuffle_sampler
        return 0 if sampler is None else self._pass_start + self._served * self._global_batch(sampler)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]  # a generator pass, not _BaseDataLoaderIter
        if self.shuffle_sampler is None:
            return super().__iter__()
        return self._pass()

    def _pass(self) -> Iterator[Any]:
        """One epoch pass, created when its first batch is asked for (see the module docstring)."""
        sampler = self.shuffle_sampler
        assert sampler is not None  # __iter__ makes a pass only over an EpochShuffle
        pending, self._pending = self._pending, None
        start = pending["position"] if pending is not None and pending["epoch"] == sampler.epoch else 0
        self._pass_start, self._served = start, 0
        sampler.start = start
        self.generator.manual_seed(sampler.seed * _EPOCH_SEED_STRIDE + sampler.epoch)
        for batch in DataLoader.__iter__(self):
            self._served += 1
            yield batch

    # --- Lightning's stateful-loader interface ---------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        sampler = self.shuffle_sampler
        if sampler is None:
            return {}
        if self._pending is not None:  # loaded, not started yet: still the loaded position
            return dict(self._pending)
        return {
            "version": STATE_VERSION,
            "epoch": sampler.epoch,
            "position": self.position,
            "seed": sampler.seed,
            "dataset_size": len(cast(Sized, sampler.dataset)),
            "global_batch": self._global_batch(sampler),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sampler = self.shuffle_sampler
        if not state or sampler is None:
            return
        now = {"seed": sampler.seed, "dataset_size": len(cast(Sized, sampler.dataset)), "global_batch": self._global_batch(sampler)}
        changed = {key: (state.get(key), value) for key, value in now.items() if state.get(key) != value}
        if {"seed", "dataset_size"} & set(changed):
            rank_zero_warn(
                f"the training data changed since the checkpoint ({_described(changed)}): epoch"
                f" {state.get('epoch')} restarts with this run's order, not the checkpoint's"
            )
            return
        if changed:
            rank_zero_warn(
                f"resuming with another global batch ({_described(changed)}): the data order is kept, the"
                " batches are cut differently, so the run is not bit-identical to an uninterrupted one"
            )
        position = int(state["position"]) - int(state["position"]) % sampler.num_replicas
        self._pending = {**state, "position": position, **now}
        sampler.set_epoch(int(state["epoch"]))


def _described(changed: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items())

"""Base class for metrics that keep 1-D per-sample "cat" states, robust to DDP corner cases.

torchmetrics gathers a "cat" list state by padding every rank's tensor to the largest shape, so
it needs the same number of dimensions *and the same dtype* on every rank (docs/metrics.md).
A rank with zero updates sends `torch.tensor([], dtype=self.dtype)`, and `self.dtype` is whatever
the last `.to(dtype)` of the module made it (Lightning's "bf16-true" does one). So every
per-sample value here is flattened to 1-D and stored as float64 (exact integers up to 2^53,
enough for indices and Hamming distances), and `_sync_dist` pins the dtype of every rank's
contribution, the empty one included, before the gather; `.to(dtype)` casts never touch them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

STATE_DTYPE = torch.float64


class PerSampleMetric(Metric):
    """A Metric whose listed states are flat float64 per-sample values joined by concatenation."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._per_sample_names: list[str] = []

    def add_per_sample_state(self, *names: str) -> None:
        for name in names:
            self.add_state(name, default=[], dist_reduce_fx="cat")
            self._per_sample_names.append(name)

    def append_per_sample(self, **values: Tensor) -> None:
        for name, value in values.items():
            # on the metric's device: a caller's CPU tensor (cached token grids, an empty share) must not reach an NCCL gather
            getattr(self, name).append(value.detach().reshape(-1).to(device=self.device, dtype=STATE_DTYPE))

    def gathered(self, name: str) -> Tensor:
        """One per-sample state as a flat float64 tensor (after sync: all ranks, rank order)."""
        value = getattr(self, name)
        if isinstance(value, list) and not value:
            return torch.zeros(0, dtype=STATE_DTYPE, device=self.device)
        return dim_zero_cat(value).to(STATE_DTYPE)

    def synced_per_sample(self) -> dict[str, Tensor]:
        """Every per-sample state gathered over all ranks, like `compute()` sees them.

        A collective in DDP: call it on every rank, exactly like `compute()`.
        """
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync):
            return {name: self.gathered(name).clone() for name in self._per_sample_names}

    def _sync_dist(self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None) -> None:
        for name in self._per_sample_names:
            setattr(self, name, [self.gathered(name)])  # (n_rank,) float64, possibly empty
        super()._sync_dist(dist_sync_fn, process_group=process_group)

    def _apply(self, fn: Callable, exclude_state: Any = ()) -> PerSampleMetric:
        """Device moves apply to per-sample states; dtype casts (`.to(torch.bfloat16)`) do not."""
        per_sample = tuple(getattr(self, "_per_sample_names", ()))
        this = cast(PerSampleMetric, super()._apply(fn, exclude_state=(*exclude_state, *per_sample)))  # Module._apply returns self
        for name in per_sample:
            value = getattr(this, name)
            moved = value.to(this.device) if isinstance(value, Tensor) else [v.to(this.device) for v in value]
            setattr(this, name, moved)
        return this

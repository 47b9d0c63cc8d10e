"""Random generator state: per-rank seeds, and the global generators captured and restored for an exact resume.

States are stored as tensors and plain Python values, so a checkpoint holding them still loads with
``torch.load(weights_only=True)`` (Lightning's default on torch >= 2.6).
"""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Trainer

RANK_SEED_STRIDE = 7919  # a prime, so rank streams of nearby base seeds do not collide


def rank_seed(base_seed: int, global_rank: int) -> int:
    """The seed of one DDP rank: every rank its own stream (latent noise, dropout, sampling)."""
    return base_seed + RANK_SEED_STRIDE * global_rank


def rng_state() -> dict[str, Any]:
    """This process's global generators: torch CPU, CUDA (current device), numpy, Python."""
    # the global RandomState is an MT19937, whose legacy state is this tuple (never the dict form)
    legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    kind, keys, pos, has_gauss, cached_gaussian = legacy
    version, python_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "state": list(python_state), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def gather_from_ranks(trainer: Trainer, value: Any) -> list[Any]:
    """``value`` of every global rank, in rank order (a collective when there are several)."""
    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        values: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(values, value)
        return values
    return [value]


def resume_seed(base_seed: int, rank: int, step: int) -> int:
    """The seed of a rank resumed at ``step`` by a job of another size (its stored streams do not fit)."""
    return rank_seed(base_seed, rank) + 104_729 * step

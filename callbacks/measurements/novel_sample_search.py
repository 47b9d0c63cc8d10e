"""Draw samples until a target number of novel (non-copied) ones, or a cap: every row scored at equal n.

A model that memorizes leaves few novel samples among a fixed number drawn, so with a fixed draw
the rows of a γ sweep would be scored at different n (the interval widths, and FID's bias, differ
with n). The authors' code samples until it keeps 5,000 non-memorized images; here the draw goes
on in rounds, continuing the global sample index (sample i has seed `seed + i` whichever rank draws
it, lightning_modules/sample_seeds.py), until `target` novel samples are found or `cap` samples
are drawn. The chosen ones are the first `target` novel samples in global order.

DDP: each round's novelty flags are all-gathered, so every rank sees the same global flags and
takes the same decisions (another round or not, its size) from them alone: every rank runs the same
rounds and the same collectives, a rank with no share in a round included. The round sizes depend
on the flags only, never on the world size, so the samples drawn and chosen are those of one process.
Generation and the nearest-neighbour search are cheap; the caller computes Inception features only
for the chosen samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor

from callbacks.measurements.base import in_batches, rank_sample_indices
from lightning_modules.sample_seeds import sample_seeds


class NovelDraw(NamedTuple):
    images: Tensor  # (k, C, H, W): this rank's chosen novel samples, in global order (k may be 0)
    indices: Tensor  # (k,) long: their global sample indices
    found: int  # novel samples chosen over all ranks: min(target, novel samples among those drawn)
    drawn: int  # samples drawn (and searched) over all ranks


def next_round_size(found: int, drawn: int, target: int, cap: int, min_round: int) -> int:
    """How many samples the next round draws: what the novel rate so far says is missing, plus a
    quarter (a round too few costs another round); twice as many as drawn when none was novel yet;
    at least `min_round`, at most what the cap leaves."""
    if found == 0:
        wanted = drawn
    else:
        wanted = math.ceil(1.25 * (target - found) * drawn / found)
    return min(cap - drawn, max(min_round, wanted))


def draw_novel_samples(
    trainer: Trainer,
    pl_module: LightningModule,
    is_novel: Callable[[Tensor], Tensor],
    first_round: Tensor,
    num_samples: int,
    seed: int,
    target: int,
    cap: int,
    batch_size: int,
) -> NovelDraw:
    """The first `target` novel samples of the global sequence, drawing past `num_samples` up to `cap`.

    first_round: this rank's share (rank_sample_indices) of samples 0..num_samples-1, already drawn
    (shared with the memorization callback). is_novel: (B, C, H, W) images -> (B,) bool. A collective
    under DDP: call it on every rank.
    """
    rank, world_size = trainer.global_rank, trainer.world_size
    start, size, images = 0, num_samples, first_round
    novel: list[int] = []  # global indices of every novel sample found so far, ascending
    kept_images: list[Tensor] = []  # this rank's novel samples, (k_i, C, H, W) per round
    kept_indices: list[Tensor] = []  # their global indices, (k_i,) per round
    while True:
        share = rank_sample_indices(size, rank, world_size)  # positions within this round
        flags = torch.zeros(0, dtype=torch.bool, device=pl_module.device)
        if len(share):
            flags = is_novel(images)  # (len(share),)
            local = flags.nonzero().flatten().to(images.device)
            kept_images.append(images[local])
            kept_indices.append(start + share.start + local.cpu())
        novel += (start + gather_round_flags(trainer, flags, size).nonzero().flatten()).tolist()
        start += size
        if len(novel) >= target or start >= cap:
            break
        size = next_round_size(len(novel), start, target, cap, min_round=max(1, num_samples // 4))
        indices = [start + i for i in rank_sample_indices(size, rank, world_size)]
        images = in_batches(pl_module.generate, sample_seeds(seed, indices), batch_size).images if indices else torch.empty(0)
    chosen = torch.tensor(novel[:target], dtype=torch.long)
    if not kept_indices:
        return NovelDraw(torch.empty(0), torch.zeros(0, dtype=torch.long), len(chosen), start)
    indices_kept = torch.cat(kept_indices)  # (K,) ascending: rounds and shares are in global order
    mine = torch.isin(indices_kept, chosen)  # (K,) bool
    kept = torch.cat(kept_images)  # (K, C, H, W)
    return NovelDraw(kept[mine.to(kept.device)], indices_kept[mine], len(chosen), start)


def gather_round_flags(trainer: Trainer, flags: Tensor, size: int) -> Tensor:
    """Every rank's (len(share),) novelty flags of one round -> (size,) bool in global sample order, on every rank."""
    world_size = trainer.world_size
    per_rank = len(rank_sample_indices(size, 0, world_size))
    padded = torch.cat([flags.to(torch.uint8), flags.new_zeros(per_rank - len(flags), dtype=torch.uint8)])  # equal shapes for all_gather
    gathered = trainer.strategy.all_gather(padded).reshape(world_size, per_rank).cpu()  # (world, per_rank)
    shares = [gathered[r, : len(rank_sample_indices(size, r, world_size))] for r in range(world_size)]
    return torch.cat(shares).bool()

"""SampleWriter: `train.py predict` on a generative model writes its samples to a folder it names.

Each rank writes its own shard, then global rank 0 merges the shards (after a barrier that every
rank reaches) into `samples.npz` (tokens, uint8 images, sample indices) and `samples.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from imaging.grids import make_grid, save_png, to_uint8
from imaging.pixels import uint8_to_signed_unit
from runtime.wandb_run import run_dir


class SampleWriter(BasePredictionWriter):
    def __init__(self, output_dir: str | None = None, grid_images: int = 64):
        super().__init__(write_interval="epoch")
        self.output_dir, self.grid_images = output_dir, grid_images

    def folder(self, trainer) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        return (run_dir(trainer) or Path(trainer.default_root_dir)) / "samples"

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        folder = self.folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        batches = [p for p in predictions if p]
        shard = {key: torch.cat([b[key] for b in batches]).cpu() if batches else torch.empty(0) for key in ("index", "tokens", "images")}
        shard["images"] = to_uint8(shard["images"]) if batches else shard["images"]
        np.savez(folder / f"shard_rank{trainer.global_rank}.npz", **{k: v.numpy() for k, v in shard.items()})
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self.merge_shards(folder, trainer.world_size)
        trainer.strategy.barrier()

    def merge_shards(self, folder: Path, world_size: int) -> None:
        shards = [np.load(folder / f"shard_rank{r}.npz") for r in range(world_size)]
        merged = {key: np.concatenate([s[key] for s in shards if s[key].size]) for key in ("index", "tokens", "images")}
        order = np.argsort(merged["index"])
        merged = {key: value[order] for key, value in merged.items()}
        np.savez(folder / "samples.npz", **cast(dict[str, Any], merged))  # Any: else mypy checks the arrays against allow_pickle
        for r in range(world_size):
            (folder / f"shard_rank{r}.npz").unlink()
        images = uint8_to_signed_unit(torch.from_numpy(merged["images"][: self.grid_images]))
        save_png(make_grid(images), folder / "samples.png", scale=4)
        print(f"samples: {folder / 'samples.npz'} ({len(order)} samples), grid: {folder / 'samples.png'}", flush=True)

"""ProbesCallback: how a γ-ARVM copies (prefix extraction) and how far a change reaches (forward–backward).

Two probes of a token model from the inside (docs/probes.md), keys under `extract/` and `fb/`:

- prefix extraction (metrics/extraction.py): the first k rows of each of `num_sources` training grids
  (k = round(f·h) for f in `prefix_fractions`) are kept and the model draws the rest in raster
  order; the same for `num_control` held-out grids (`control_split`), the control.
  `extract/rate_rows{k}`, `extract/control_rate_rows{k}`, `extract/hamming_median_rows{k}`,
  `extract/control_hamming_median_rows{k}`; `extract/ceiling_rate` / `extract/control_ceiling_rate`
  are the source grids' own decodings (every row kept), what a perfect copier reaches.
- forward–backward (metrics/forward_backward.py): `fb_sources` training grids, a fraction p of their
  cells erased for p in `noise_levels`, restored by `pl_module.resample` with `conditioning` (None:
  the model's richest, "window" for the kernel model, "causal" for the neural one).
  `fb/changed_fraction_p{p}`, `fb/corrupted_changed_fraction_p{p}`, `fb/exact_rate_p{p}`,
  `fb/correlation_length_p{p}`, `fb/correlation_d{d}_p{p}` (p written with "_" for ".", e.g. p0_05),
  and `fb/window_conditioning` (1 = the full window, 0 = causal).

Seeds per sample, as MemorizationCallback's: sample i of a probe draws from `seed` + its global index
(and erasure orders from their own seeds), each rank a contiguous share of the sources, so the
figures do not depend on the number of ranks; the metrics sync their states (collectives on every
rank, also on a rank whose share is empty).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, cast

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn

from callbacks.measurements.base import MeasurementCallback, data_module, rank_sample_indices, reference_images
from lightning_modules.sample_seeds import sample_seeds
from metrics.extraction import PrefixExtraction
from metrics.forward_backward import ChangeCorrelation, erased_cells, erasure_order

if TYPE_CHECKING:
    from datamodules.token_datamodule import LatentTokenDataModule
    from lightning_modules.token_model import LatentTokenModel

FB_SEED_BLOCK = 2**24  # forward-backward seeds of noise level l: seed + 2^24 (l + 1) + source index


def level_name(p: float) -> str:
    """0.05 -> "0_05": a noise level in a metric key."""
    return f"{p:g}".replace(".", "_")


def prefix_rows_of(fractions: Sequence[float], height: int) -> list[int]:
    """Fractions of the rows -> distinct prefix lengths in 1..height-1 (something is always completed)."""
    rows = sorted({min(height - 1, max(1, round(f * height))) for f in fractions})
    if not fractions or height < 2:
        raise ValueError(f"prefix extraction needs prefix_fractions and a grid of at least 2 rows, got {list(fractions)}, {height}")
    return rows


class ProbesCallback(MeasurementCallback):
    def __init__(
        self,
        prefix_fractions: Sequence[float] = (0.25, 0.5, 0.75),
        num_sources: int | None = 100,
        control_split: str = "val",
        num_control: int | None = 100,
        noise_levels: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9),
        fb_sources: int | None = 100,
        max_distance: int | None = None,
        conditioning: str | None = None,
        threshold_db: float = 25.0,
        seed: int = 4321,
        batch_size: int = 256,
        every_n_val_epochs: int | None = None,
    ):
        super().__init__(every_n_val_epochs)
        if any(not 0.0 <= p <= 1.0 for p in noise_levels):
            raise ValueError(f"noise_levels must lie in [0, 1], got {list(noise_levels)}")
        if any(not 0.0 < f < 1.0 for f in prefix_fractions):
            raise ValueError(f"prefix_fractions must lie in (0, 1), got {list(prefix_fractions)}")
        self.prefix_fractions, self.noise_levels = list(prefix_fractions), list(noise_levels)
        self.num_sources, self.control_split, self.num_control = num_sources, control_split, num_control
        self.fb_sources, self.max_distance, self.conditioning = fb_sources, max_distance, conditioning
        self.threshold_db, self.seed, self.batch_size = threshold_db, seed, batch_size

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not hasattr(pl_module, "resample"):
            raise TypeError(f"ProbesCallback needs a token model with `resample`, got {type(pl_module).__name__}")
        model = cast("LatentTokenModel", pl_module)  # `resample` is LatentTokenModel's (the γ-ARVMs)
        self.log_scalars(pl_module, "extract", self.extraction(trainer, model))
        self.log_scalars(pl_module, "fb", self.forward_backward(trainer, model))

    # --- prefix extraction ----------------------------------------------------------------------
    def sources(self, trainer: Trainer, split: str, limit: int | None):
        """(tokens (N, h, w), uint8 images (N, C, H, W)) of a split's first `limit` rows, aligned."""
        tokens = cast("LatentTokenDataModule", data_module(trainer)).token_grids(split)[:limit]  # a token model's data
        return tokens, reference_images(trainer, split, limit)

    def extraction(self, trainer: Trainer, pl_module: LatentTokenModel) -> dict:
        height, width = pl_module.grid_shape
        rows = prefix_rows_of(self.prefix_fractions, height)
        metric = PrefixExtraction([*rows, height], pl_module.num_bits, self.threshold_db).to(pl_module.device)
        splits = [
            (self.sources(trainer, "train", self.num_sources), False),
            (self.sources(trainer, self.control_split, self.num_control), True),
        ]
        block = max(len(tokens) for (tokens, _), _ in splits)  # global sample index = block · probe + source
        for split_index, ((tokens, images), held_out) in enumerate(splits):
            share = rank_sample_indices(len(tokens), trainer.global_rank, trainer.world_size)
            for start in range(share.start, share.stop, self.batch_size):
                chunk = slice(start, min(start + self.batch_size, share.stop))
                source_tokens, source_images = tokens[chunk].to(pl_module.device), images[chunk]
                metric.update(pl_module.decode_tokens(source_tokens), source_images, source_tokens, source_tokens, height, held_out)
                for k_index, k in enumerate(rows):
                    probe = split_index * len(rows) + k_index
                    seeds = sample_seeds(self.seed, [block * probe + i for i in range(chunk.start, chunk.stop)])
                    redraw = torch.zeros_like(source_tokens, dtype=torch.bool)
                    redraw[:, k:] = True  # every row from k on
                    completed = pl_module.resample(source_tokens, redraw, seeds, "causal")
                    metric.update(pl_module.decode_tokens(completed), source_images, completed, source_tokens, k, held_out)
        values = metric.compute()  # collective: every rank
        values["ceiling_rate"] = values.pop(f"rate_rows{height}")
        values["control_ceiling_rate"] = values.pop(f"control_rate_rows{height}")
        for key in [k for k in values if k.endswith(f"_rows{height}")]:
            values.pop(key)
        return values

    # --- forward-backward -----------------------------------------------------------------------
    def forward_backward(self, trainer: Trainer, pl_module: LatentTokenModel) -> dict:
        height, width = pl_module.grid_shape
        conditioning = self.conditioning or pl_module.conditionings[0]
        pl_module.check_conditioning(conditioning)
        tokens = cast("LatentTokenDataModule", data_module(trainer)).token_grids("train")[: self.fb_sources]
        metrics = nn.ModuleList([ChangeCorrelation(height, width, self.max_distance) for _ in self.noise_levels]).to(pl_module.device)
        levels = cast(Iterable[ChangeCorrelation], metrics)  # the ModuleList holds ChangeCorrelations
        share = rank_sample_indices(len(tokens), trainer.global_rank, trainer.world_size)
        for start in range(share.start, share.stop, self.batch_size):
            indices = list(range(start, min(start + self.batch_size, share.stop)))
            clean = tokens[indices].to(pl_module.device)
            orders = torch.stack([erasure_order(self.seed + i, height * width) for i in indices]).to(pl_module.device)  # (B, T)
            for level, (p, metric) in enumerate(zip(self.noise_levels, levels, strict=True)):
                erased = erased_cells(orders, p).view_as(clean)  # (B, h, w)
                seeds = sample_seeds(self.seed + FB_SEED_BLOCK * (1 + level), indices)  # apart from the extraction's
                restored = pl_module.resample(clean, erased, seeds, conditioning) if erased.any() else clean
                metric.update(clean, restored, erased)
        values = {"window_conditioning": torch.tensor(float(conditioning == "window"))}
        for p, metric in zip(self.noise_levels, levels, strict=True):
            result = metric.compute()  # collective: every rank
            name = level_name(p)
            for key in ("changed_fraction", "corrupted_changed_fraction", "exact_rate", "correlation_length"):
                values[f"{key}_p{name}"] = result[key]
            for d, value in enumerate(result["correlation"].tolist(), start=1):
                values[f"correlation_d{d}_p{name}"] = torch.tensor(value)
        return values

"""Give every DDP rank its own RNG stream (training noise, dropout, sampling).

LightningCLI seeds every rank with the same seed, so without this all ranks would
inject identical latent noise. The DistributedSampler is unaffected: it seeds itself from
PL_GLOBAL_SEED, which we leave alone so all ranks still agree on the data order.
"""

import os
import random

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from runtime.rng_state import rank_seed


class PerRankSeed(Callback):
    def __init__(self, base_seed: int | None = None):
        self.base_seed = base_seed

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        base = self.base_seed if self.base_seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        seed = rank_seed(base, trainer.global_rank)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        pl_module.rank_seed = seed  # type: ignore[assignment]  # Module.__setattr__ stub: tensors/modules only

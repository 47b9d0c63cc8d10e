"""MembershipCallback: can a γ-ARVM's likelihood tell its training images from held-out ones? (keys under `mia/`)

A likelihood-threshold membership inference attack. Every γ-ARVM gives an exact log-likelihood of a
token grid, log2 p(z) = -Σ_t NLL_t (bits; `nll_bits`, teacher forcing). Members are the first
`num_members` training grids (`datamodule.token_grids()`, the grids the model was fitted to, as
`train/nll_bits` reads them); non-members the first `num_nonmembers` grids of the held-out
`nonmember_split` ("val": the grids `val/nll_bits` is measured on). Each rank scores its round-robin
share of both; metrics/membership.py turns the scores into

- `mia/auc`, `mia/auc_low`, `mia/auc_high`: ROC AUC (0.5: the likelihood cannot tell members from
  non-members; 1: every member is more likely than every non-member) and its 95 % stratified bootstrap interval;
- `mia/tpr_at_1pct_fpr` (+ `_low`, `_high`) and `mia/fpr_reached`: the members flagged at a threshold
  letting through at most 1 % of the non-members (needs >= 100 non-members to reach 1 %; below it is
  the TPR at FPR 0);
- `mia/members`, `mia/nonmembers`: how many grids were scored.

Models without tokens (BL-AE, VAE) or a data module without token grids are skipped. By default it
measures the final model only (`every_n_val_epochs: null`): the kernel model under `validate`, the
neural one at the last validation of its fit.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from callbacks.measurements.base import MeasurementCallback
from metrics.membership import DEFAULT_FPR, DEFAULT_NUM_BOOTSTRAP, MembershipInference


def log_likelihood_bits(pl_module: Any, grids: Tensor, batch_size: int) -> Tensor:
    """(N, h, w) token grids -> (N,) float64 log2-likelihood of each whole grid under the model.

    `nll_bits` gives per-token NLLs (B, T) (the neural model) or their mean per grid (B,) (the kernel
    model): a mean is scaled back to the sum by the T tokens of a grid.
    """
    tokens_per_grid = grids[0].numel() if len(grids) else 0
    scores = []
    for chunk in grids.split(batch_size):
        nll = pl_module.nll_bits(chunk.long().to(pl_module.device))[0].double()  # (B, T) or (B,)
        scores.append(-(nll.sum(1) if nll.dim() == 2 else nll * tokens_per_grid))  # (B,)
    return torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64)


class MembershipCallback(MeasurementCallback):
    def __init__(
        self,
        num_members: int | None = 1000,
        num_nonmembers: int | None = 1000,
        nonmember_split: str = "val",
        num_bootstrap: int = DEFAULT_NUM_BOOTSTRAP,
        seed: int = 0,
        fpr: float = DEFAULT_FPR,
        batch_size: int = 256,
        every_n_val_epochs: int | None = None,
    ):
        super().__init__(every_n_val_epochs)
        self.num_members, self.num_nonmembers, self.nonmember_split = num_members, num_nonmembers, nonmember_split
        self.num_bootstrap, self.seed, self.fpr, self.batch_size = num_bootstrap, seed, fpr, batch_size

    def grids(self, trainer: Trainer, pl_module: LightningModule) -> tuple[Tensor, Tensor] | None:
        """(members, non-members) token grids, all ranks' (None: a model or data module without tokens, or no held-out split)."""
        datamodule: Any = getattr(trainer, "datamodule", None)  # duck-typed: any data module with token_grids(split)
        if not hasattr(pl_module, "nll_bits") or not hasattr(datamodule, "token_grids"):
            return None
        if self.nonmember_split not in getattr(datamodule, "split_names", [self.nonmember_split]):
            rank_zero_warn(f"MembershipCallback: no {self.nonmember_split!r} split to draw non-members from; mia/ is not measured")
            return None
        return datamodule.token_grids("train")[: self.num_members], datamodule.token_grids(self.nonmember_split)[: self.num_nonmembers]

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        grids = self.grids(trainer, pl_module)
        if grids is None:
            return
        if len(grids[1]) * self.fpr < 1:
            rank_zero_warn(
                f"MembershipCallback: {len(grids[1])} non-members cannot resolve a {self.fpr:.0%} FPR (needs >= {1 / self.fpr:.0f}); "
                "mia/tpr_at_*_fpr is the TPR at FPR 0 (mia/fpr_reached)"
            )
        rank, world = trainer.global_rank, trainer.world_size
        members, nonmembers = (g[rank::world] for g in grids)
        metric = MembershipInference(self.num_bootstrap, self.seed, self.fpr).to(pl_module.device)
        metric.update(
            members=log_likelihood_bits(pl_module, members, self.batch_size),
            nonmembers=log_likelihood_bits(pl_module, nonmembers, self.batch_size),
        )
        self.log_scalars(pl_module, "mia", metric.compute())  # compute: a collective on every rank

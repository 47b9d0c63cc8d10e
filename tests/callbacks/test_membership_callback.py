"""MembershipCallback on the real kernel estimator (networks/kernel_estimator.py) behind a token model's interface.

Tests of meaning: a copier (the kernel model at global γ: its likelihood singles out its training grids)
gives AUC ≈ 1; γ = 1 on independent tokens with many training grids per context gives AUC ≈ 0.5, and the
same model with few training grids per context does leak (its own grid weighs in its histogram).
"""

import math
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader

from callbacks.measurements.membership import MembershipCallback, log_likelihood_bits
from networks.kernel_estimator import KernelARVM

MIA_KEYS = ("mia/auc", "mia/auc_low", "mia/auc_high", "mia/tpr_at_1pct_fpr", "mia/members", "mia/nonmembers")


def iid_grids(count: int, side: int, num_bits: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 2**num_bits, (count, side, side), generator=torch.Generator().manual_seed(seed))


class TokenData(LightningDataModule):
    """The token data module's side that the callback reads: token_grids(split), split_names, a val loader of grids."""

    def __init__(self, train: torch.Tensor, val: torch.Tensor, batch_size: int = 500):
        super().__init__()
        self.splits, self.batch_size = {"train": train, "val": val}, batch_size

    @property
    def split_names(self) -> list[str]:
        return list(self.splits)

    def token_grids(self, split: str = "train") -> torch.Tensor:
        return self.splits[split].long()

    def loader(self, split: str) -> DataLoader:
        grids = self.splits[split]
        rows: Any = [{"tokens": g, "index": i} for i, g in enumerate(grids)]  # a list serves as a map-style dataset
        return DataLoader(rows, batch_size=self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")


class KernelTokens(LightningModule):
    """The kernel γ-ARVM's evaluation interface: nll_bits -> ((B,) mean bits per token, None).

    Its validation step only counts grids (the callback scores them itself; val/nll_bits would double the cost)."""

    def __init__(self, train: torch.Tensor, num_bits: int, gamma):
        super().__init__()
        self.num_bits = num_bits
        self.estimator = KernelARVM(train, num_bits, gamma)

    def nll_bits(self, tokens: torch.Tensor):
        return self.estimator.nll_bits(tokens), None

    def validation_step(self, batch, batch_idx):
        self.log("val/nll_bits", self.nll_bits(batch["tokens"])[0].mean())


class TableTokens(LightningModule):
    """A trainable token model (a logit table per position, no context): nll_bits -> ((B, T) bits, argmax)."""

    def __init__(self, num_tokens: int, num_bits: int):
        super().__init__()
        self.num_bits = num_bits
        self.logits = nn.Parameter(torch.zeros(num_tokens, 2**num_bits))

    def nll_bits(self, tokens: torch.Tensor):
        log_p = self.logits.log_softmax(-1) / math.log(2)  # (T, V) bits
        flat = tokens.flatten(1)  # (B, T)
        return -log_p.gather(1, flat.T).T, log_p.argmax(-1).expand_as(flat)

    def training_step(self, batch, batch_idx):
        return self.nll_bits(batch["tokens"])[0].mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/nll_bits", self.nll_bits(batch["tokens"])[0].mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def validate(model: LightningModule, data: TokenData, **callback_args) -> dict[str, float]:
    trainer = Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[MembershipCallback(**callback_args)],
        accelerator="cpu",
        devices=1,
    )
    trainer.validate(model, datamodule=data)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_a_copier_gives_auc_near_one():
    """Global γ with a near-hard kernel: each training grid's context singles it out, a held-out one matches none."""
    train, val = iid_grids(300, 4, 3, seed=0), iid_grids(200, 4, 3, seed=1)
    values = validate(KernelTokens(train, 3, None), TokenData(train, val), num_members=200)
    assert all(key in values for key in MIA_KEYS)
    assert values["mia/auc_low"] > 0.95
    assert values["mia/tpr_at_1pct_fpr"] > 0.9
    assert (values["mia/members"], values["mia/nonmembers"]) == (200, 200)


def test_gamma_1_on_independent_tokens_with_many_grids_per_context_gives_auc_near_half():
    """i.i.d. uniform bits, γ = 1 on 3 × 3 grids: at most 16 contexts, ~2000 training grids each."""
    train, val = iid_grids(32000, 3, 1, seed=10), iid_grids(400, 3, 1, seed=11)
    values = validate(KernelTokens(train, 1, 1), TokenData(train, val), num_members=400)
    assert values["mia/auc_low"] < 0.5 < values["mia/auc_high"]
    assert values["mia/auc_high"] - values["mia/auc_low"] < 0.1  # an interval that says something


def test_gamma_1_with_few_grids_per_context_leaks_membership():
    """The same model on 200 training grids (~12 per context): a member's own tokens weigh in its histogram."""
    train, val = iid_grids(200, 3, 1, seed=10), iid_grids(400, 3, 1, seed=11)
    values = validate(KernelTokens(train, 1, 1), TokenData(train, val), num_members=200)
    assert values["mia/auc_low"] > 0.5


def test_models_without_tokens_are_skipped():
    class NoTokens(LightningModule):
        def validation_step(self, batch, batch_idx):
            self.log("val/loss", batch["tokens"].float().mean())

    data = TokenData(iid_grids(20, 3, 1, seed=0), iid_grids(20, 3, 1, seed=1))
    values = validate(NoTokens(), data)
    assert "val/loss" in values and not any(key.startswith("mia/") for key in values)


def test_log_likelihood_sums_per_token_nll_and_scales_a_per_grid_mean():
    grids = iid_grids(7, 3, 2, seed=3)
    table = TableTokens(9, 2)
    with torch.no_grad():
        table.logits.copy_(torch.randn(9, 4, generator=torch.Generator().manual_seed(0)))
        per_token = table.nll_bits(grids)[0]  # (B, T)

    class MeanOnly:
        device = torch.device("cpu")

        def nll_bits(self, tokens):
            return table.nll_bits(tokens)[0].mean(1), None  # (B,) like the kernel model

    with torch.no_grad():
        summed = log_likelihood_bits(table, grids, batch_size=3)
        scaled = log_likelihood_bits(MeanOnly(), grids, batch_size=4)
    torch.testing.assert_close(summed, -per_token.double().sum(1))
    torch.testing.assert_close(scaled, summed)


def test_a_fitted_model_is_measured_at_the_end_of_fit():
    """The neural models' cadence: not at every validation by default, at the last one of the fit."""
    train, val = iid_grids(40, 3, 1, seed=0), iid_grids(120, 3, 1, seed=1)
    callback = MembershipCallback(num_bootstrap=50)
    trainer = Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[callback],
        max_steps=4,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(TableTokens(9, 1), datamodule=TokenData(train, val, batch_size=10))
    assert callback.measured_at_step == 4
    assert trainer.callback_metrics["mia/members"].item() == 40
    assert not math.isnan(trainer.callback_metrics["mia/auc"].item())


@pytest.mark.parametrize("nonmembers", [50])
def test_too_few_non_members_for_1pct_fpr_is_flagged(nonmembers):
    train, val = iid_grids(60, 3, 2, seed=0), iid_grids(nonmembers, 3, 2, seed=1)
    with pytest.warns(UserWarning, match="cannot resolve"):
        values = validate(KernelTokens(train, 2, None), TokenData(train, val), num_members=60)
    assert values["mia/fpr_reached"] == 0.0

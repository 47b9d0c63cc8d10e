"""Where a fit ended, for resume tests: a resumed run must end at the uninterrupted run's global step and epoch with
its val/ metrics, exactly (issue 22: a resume that ended with the right metrics keys but one epoch short went unseen)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch


class FinalState(NamedTuple):
    """The final global step, epoch and val/ metrics of one fit."""

    global_step: int
    epoch: int
    val: dict[str, float]

    def same_as(self, uninterrupted: FinalState) -> str:
        """Asserts this (resumed) run ended as ``uninterrupted`` did; returns the fault table's outcome text."""
        ended, expected = (self.global_step, self.epoch), (uninterrupted.global_step, uninterrupted.epoch)
        assert ended == expected, f"resumed run ended at (step, epoch) {ended}, the uninterrupted one at {expected}"
        assert self.val and self.val == uninterrupted.val, f"resumed {self.val}, uninterrupted {uninterrupted.val}"  # exact
        return (
            f"final step {self.global_step} = {uninterrupted.global_step}, epoch {self.epoch} = {uninterrupted.epoch},"
            " val/ metrics identical"
        )


def val_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items() if key.startswith("val/")}


def of_cli(cli: Any) -> FinalState:
    """Where an in-process ``train.main`` fit ended (epoch: ``trainer.current_epoch``, the epochs completed)."""
    trainer = cli.trainer
    return FinalState(trainer.global_step, trainer.current_epoch, val_metrics(trainer.callback_metrics))


def of_job(job: Path, results: str = "results.json") -> FinalState:
    """Where a ``train.py fit`` run in folder ``job`` ended: results.json (``ResultsFile``) for the step and the
    metrics, the epoch recorded in its final last.ckpt (the epoch that checkpoint was written in)."""
    record = json.loads((job / results).read_text())
    last = torch.load(job / record["last_checkpoint"], map_location="cpu", weights_only=True)
    return FinalState(record["global_step"], last["epoch"], val_metrics(record["metrics"]))

"""ResumableRun: RNG states in checkpoints, last.ckpt kept current, and a resume from any checkpoint (mid-epoch, at an epoch
end, at a validation, at the end) that ends where an uninterrupted run ends, with its weights and metrics."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

import train
from callbacks.run.preemption import save_resumable_checkpoint
from callbacks.run.resumable_run import ResumableRun
from datamodules.resumable_loader import EpochShuffle, ResumableLoader
from runtime.rng_state import rng_state, set_rng_state
from tests import final_state
from tests.helpers import DEBUG_PRESET, REPO_ROOT

VAE_CONFIG = str(REPO_ROOT / "configs" / "vae" / "digits.yaml")
QUICK = ["-c", DEBUG_PRESET, "--trainer.logger", "false", "--trainer.enable_model_summary", "false"]
TWO_EPOCHS = ["fit", "-c", VAE_CONFIG, *QUICK, "--trainer.max_steps", "100", "--trainer.max_epochs", "2"]
TWO_EPOCHS += ["--trainer.limit_train_batches", "4", "--trainer.check_val_every_n_epoch", "1"]
"""A VAE fit of two 4-step epochs, validated after each; ``max_steps`` set, as in every config (Lightning restores a
fit loop differently without it)."""


def checkpoint_every_step(folder: str) -> list[str]:
    """A ModelCheckpoint writing every step's checkpoint and last.ckpt into ``folder``: a file to resume from at each step."""
    every_step = ["--trainer.callbacks.init_args.every_n_train_steps", "1", "--trainer.callbacks.init_args.save_last", "true"]
    return [
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        *every_step,
        "--trainer.callbacks.init_args.dirpath",
        folder,
    ]


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.randn(1)  # a cached gaussian in numpy's state
    state = rng_state()
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.save({"rng": state}, tmp_path / "s.ckpt")
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    set_rng_state(torch.load(tmp_path / "s.ckpt", weights_only=True)["rng"])
    assert torch.equal(torch.rand(4), expected[0]) and np.array_equal(np.random.rand(4), expected[1])
    assert [random.random() for _ in range(4)] == expected[2]


class PlateauModel(BoringModel):
    """The monitored metric never improves after epoch 0."""

    def validation_step(self, batch, batch_idx):
        self.log("v", -float(self.current_epoch))


@pytest.mark.parametrize("check_val_every_n_epoch", [1, 2])
def test_last_ckpt_stays_current_when_the_metric_plateaus(tmp_path, check_val_every_n_epoch):
    """Lightning 2.6 alone leaves last.ckpt at the last improvement (step 2 here); ResumableRun keeps it at the end."""
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="v", mode="max", save_last=True, filename="best")
    trainer = Trainer(
        max_epochs=4,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        check_val_every_n_epoch=check_val_every_n_epoch,
        callbacks=[checkpoint, ResumableRun()],
    )
    trainer.fit(PlateauModel())
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["global_step"] == 8 and last["callbacks"]["ResumableRun"]["mid_epoch"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"best.ckpt", "last.ckpt"})
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["global_step"] == 2 * check_val_every_n_epoch


def test_a_mid_epoch_checkpoint_resumes_exactly(tmp_path, monkeypatch):
    """``ModelCheckpoint(every_n_train_steps)`` writes mid-epoch; with the resumable data order that resumes exactly."""
    from tests.helpers import InjectedFault

    monkeypatch.chdir(tmp_path)

    def args(steps: str) -> list[str]:
        return [*TWO_EPOCHS, *checkpoint_every_step(steps)]

    def fit(extra: list[str], folder: str) -> final_state.FinalState:
        return final_state.of_cli(train.main([*extra, "--trainer.default_root_dir", str(tmp_path / folder)]))

    expected = fit(args("steps-a"), "uninterrupted")
    with pytest.raises(InjectedFault):
        fit([*args("steps-b"), "--trainer.callbacks+=tests.helpers.FaultInjector", "--trainer.callbacks.init_args.step", "6"], "crashed")
    last = torch.load(tmp_path / "steps-b" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6  # epoch 1, 2 of 4 batches: mid-epoch
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["position"] == 2 * 128
    fit([*args("steps-b"), "--ckpt_path", str(tmp_path / "steps-b" / "last.ckpt")], "crashed").same_as(expected)


# --- a kill right after any checkpoint, then a resume: the same final step, epoch, weights and metrics ---------------------


class NoisyRegression(LightningModule):
    """A tiny model whose training draws from the global generators (input noise, dropout) over a shuffled,
    resumable data order: a resume is exact only when the step, the data position and the streams all are."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
        self.data = torch.utils.data.TensorDataset(torch.randn(24, 4), torch.randn(24, 1))

    def train_dataloader(self) -> ResumableLoader:
        return ResumableLoader(self.data, batch_size=4, sampler=EpochShuffle(self.data, seed=5))

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.data, batch_size=12)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x + 0.1 * torch.randn_like(x)), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=0.01)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 5), "interval": "step"}}


class Killed(BaseException):
    """Stands for SIGKILL: the run ends at once, and nothing it would have written afterwards exists."""


class KillAfterSave(Callback):
    """Copies the first checkpoint that ``written`` picks the moment it is on disk, then kills the run.

    The copy is what a ``--ckpt_path`` after a SIGKILL at that moment finds: the run wrote nothing after it.
    """

    def __init__(self, written: Callable[[Trainer, Path], bool], snapshot: Path) -> None:
        self.written, self.snapshot = written, snapshot

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        save = trainer.save_checkpoint

        def save_then_maybe_die(filepath, weights_only=None, storage_options=None) -> None:
            save(filepath, weights_only, storage_options)
            if not self.snapshot.exists() and self.written(trainer, Path(filepath)):
                shutil.copyfile(filepath, self.snapshot)
                raise Killed(f"after {Path(filepath).name} at step {trainer.global_step}")

        trainer.save_checkpoint = save_then_maybe_die  # type: ignore[method-assign]  # deliberate: observes every save


class PreemptedAt(Callback):
    """Writes the preemption checkpoint (``save_resumable_checkpoint``, what SIGTERM writes) at one step:
    mid-epoch at ``on_train_batch_end``, or at the epoch end when ``at_epoch_end``."""

    def __init__(self, step: int, at_epoch_end: bool = False) -> None:
        self.step, self.at_epoch_end = step, at_epoch_end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.at_epoch_end and trainer.global_step == self.step:
            save_resumable_checkpoint(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.at_epoch_end and trainer.global_step == self.step:
            save_resumable_checkpoint(trainer)


class TinyRunEnd(NamedTuple):
    global_step: int
    current_epoch: int
    weights: dict[str, torch.Tensor]
    val_metrics: dict[str, float]
    """The metrics a validation of the final weights reports."""


def fit_tiny(folder: Path, *extra: Callback, ckpt_path: Path | None = None) -> TinyRunEnd:
    """4 epochs of 6 steps, validation after epochs 1 and 3, ``max_steps`` set (as every config here sets it)."""
    checkpoint = ModelCheckpoint(dirpath=folder, monitor="val/loss", save_last=True, filename="best-{step}")
    trainer = Trainer(
        max_epochs=4,
        max_steps=1000,
        check_val_every_n_epoch=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoint, ResumableRun(), *extra],
    )
    model = NoisyRegression()
    torch.manual_seed(1234)
    trainer.fit(model, ckpt_path=ckpt_path)
    metrics = trainer.validate(model, verbose=False)[0]
    weights = {name: value.detach().clone() for name, value in model.state_dict().items()}
    return TinyRunEnd(trainer.global_step, trainer.current_epoch, weights, {k: float(v) for k, v in metrics.items()})


KILLS = {  # kind -> (callbacks that write the checkpoint, which written file is the last one before the kill)
    "epoch-end last.ckpt": ((), lambda trainer, path: path.name == "last.ckpt" and trainer.global_step == 6),
    "top-k at validation": ((), lambda trainer, path: path.name.startswith("best") and trainer.global_step == 12),
    "preemption mid-epoch": ((PreemptedAt(15),), lambda trainer, path: path.name == "last.ckpt" and trainer.global_step == 15),
    "step checkpoint at an epoch's last batch": ((PreemptedAt(6),), lambda t, p: p.name == "last.ckpt" and t.global_step == 6),
    "step checkpoint before a validation": ((PreemptedAt(12),), lambda t, p: p.name == "last.ckpt" and t.global_step == 12),
    "preemption at an epoch end": ((PreemptedAt(18, at_epoch_end=True),), lambda t, p: p.name == "last.ckpt" and t.global_step == 18),
    "end of training": ((), lambda trainer, path: path.name == "last.ckpt" and trainer.global_step == 24),
}


@pytest.mark.parametrize("kind", list(KILLS))
def test_a_kill_after_any_checkpoint_resumes_to_the_uninterrupted_end(tmp_path, kind):
    """SIGKILL right after a checkpoint, then a resume from it: the run ends at the uninterrupted run's global step
    and epoch with the same weights and metrics (issue 22: a kill after the epoch-end last.ckpt lost an epoch)."""
    uninterrupted = fit_tiny(tmp_path / "uninterrupted")
    assert (uninterrupted.global_step, uninterrupted.current_epoch) == (24, 4)
    writers, written = KILLS[kind]
    snapshot = tmp_path / "at-kill.ckpt"
    with pytest.raises(Killed):
        fit_tiny(tmp_path / "killed", *writers, KillAfterSave(written, snapshot))
    resumed = fit_tiny(tmp_path / "resumed", ckpt_path=snapshot)
    assert (resumed.global_step, resumed.current_epoch) == (uninterrupted.global_step, uninterrupted.current_epoch)
    assert resumed.val_metrics == uninterrupted.val_metrics
    assert all(torch.equal(resumed.weights[name], value) for name, value in uninterrupted.weights.items())


def test_how_often_validation_runs_never_shifts_the_training_streams(tmp_path):
    """Validation draws from a copy of the generators, its loader's iterator included (Lightning builds it before
    ``on_validation_start``): a run that validates after every epoch trains exactly as one that validates every 2."""

    def weights(check_val_every_n_epoch: int) -> dict[str, torch.Tensor]:
        trainer = Trainer(
            max_epochs=4,
            max_steps=1000,
            check_val_every_n_epoch=check_val_every_n_epoch,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[ResumableRun()],
        )
        model = NoisyRegression()
        torch.manual_seed(1234)
        trainer.fit(model)
        return model.state_dict()

    every, every_other = weights(1), weights(2)
    assert all(torch.equal(every[name], value) for name, value in every_other.items())

"""ResumableRun: RNG states in checkpoints, last.ckpt kept current, an exact resume from a mid-epoch checkpoint."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from callbacks.run.resumable_run import ResumableRun
from runtime.rng_state import rng_state, set_rng_state
from tests.helpers import DEBUG_PRESET, REPO_ROOT
from tests.lightning_modules.test_determinism import final_metrics

VAE_CONFIG = str(REPO_ROOT / "configs" / "vae" / "digits.yaml")
QUICK = ["-c", DEBUG_PRESET, "--trainer.logger", "false", "--trainer.enable_model_summary", "false"]


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
        return [
            "fit",
            "-c",
            VAE_CONFIG,
            *QUICK,
            "--trainer.max_steps",
            "-1",
            "--trainer.max_epochs",
            "2",
            "--trainer.limit_train_batches",
            "4",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.init_args.every_n_train_steps",
            "1",
            "--trainer.callbacks.init_args.save_last",
            "true",
            "--trainer.callbacks.init_args.dirpath",
            steps,
        ]

    expected = final_metrics(args("steps-a"), tmp_path / "uninterrupted")
    with pytest.raises(InjectedFault):
        final_metrics(
            [*args("steps-b"), "--trainer.callbacks+=tests.helpers.FaultInjector", "--trainer.callbacks.init_args.step", "6"],
            tmp_path / "crashed",
        )
    last = torch.load(tmp_path / "steps-b" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6  # epoch 1, 2 of 4 batches: mid-epoch
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["position"] == 2 * 128
    resumed = final_metrics([*args("steps-b"), "--ckpt_path", str(tmp_path / "steps-b" / "last.ckpt")], tmp_path / "crashed")
    assert {k: v for k, v in resumed.items() if k.startswith("val/")} == {k: v for k, v in expected.items() if k.startswith("val/")}

"""When fits stop and when measurements run: TrainToPlateau and the MeasurementCallback cadence."""

import math
import warnings

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from callbacks.measurements.base import MeasurementCallback
from callbacks.run.train_to_plateau import TrainToPlateau


class ScriptedLoss(LightningModule):
    """Its training loss is a function of the step we choose (the parameter only carries a gradient)."""

    def __init__(self, loss_at_step, lr: float = 0.1, scheduler: bool = False):
        super().__init__()
        self.loss_at_step, self.lr, self.scheduler = loss_at_step, lr, scheduler
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return self.weight.sum() * 0 + self.loss_at_step(self.global_step)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", torch.tensor(0.0))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        if self.scheduler:
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 10)}
        return optimizer


class RecordSteps(MeasurementCallback):
    def __init__(self, every_n_val_epochs=1):
        super().__init__(every_n_val_epochs)
        self.steps: list[int] = []

    def measure(self, trainer, pl_module):
        self.steps.append(trainer.global_step)


def loader(n=3):
    return DataLoader(TensorDataset(torch.zeros(n, 1)), batch_size=1)


def fit(model, callbacks, max_steps=400, val_check_interval=50):
    trainer = Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        check_val_every_n_epoch=None,
        val_check_interval=val_check_interval,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(model, loader(), loader(1))
    return trainer


def test_a_loss_that_flattens_decays_the_lr_then_stops_the_fit_and_is_measured_at_its_end():
    # falls to 1.0 by step 60, flat afterwards: 2 stale windows -> decay (x2), then 2 more -> plateau
    model = ScriptedLoss(lambda step: max(1.0, 4.0 - step / 20))
    plateau = TrainToPlateau(window=10, min_improvement=0.02, patience=2, lr_factor=0.5, max_decays=2)
    record = RecordSteps(every_n_val_epochs=None)  # only at the end of fit
    trainer = fit(model, [plateau, record])
    assert plateau.plateaued and plateau.decays == 2
    assert 60 < trainer.global_step < 150  # long before max_steps = 400
    assert trainer.callback_metrics["fit/plateaued"] == 1.0
    assert record.steps == [trainer.global_step]  # one measurement: the final model
    assert model.lrs[0] == pytest.approx(0.1) and model.lrs[-1] == pytest.approx(0.025)  # 0.1 x 0.5^2
    assert sorted(set(round(lr, 6) for lr in model.lrs)) == [0.025, 0.05, 0.1]


def test_a_loss_that_keeps_falling_runs_to_the_budget_and_is_not_fitted():
    model = ScriptedLoss(lambda step: 4.0 * math.exp(-step / 30))  # -28 % per window of 10 steps, forever
    plateau = TrainToPlateau(window=10, min_improvement=0.02, patience=2)
    record = RecordSteps(every_n_val_epochs=None)
    trainer = fit(model, [plateau, record], max_steps=95, val_check_interval=1000)
    assert not plateau.plateaued and plateau.decays == 0
    assert trainer.global_step == 95 and trainer.callback_metrics["fit/plateaued"] == 0.0
    assert record.steps == [95]  # the budget's end is validated and measured, whatever the cadence


def test_an_epoch_cap_before_the_plateau_is_recorded_as_not_fitted():
    """A recipe's epoch cap (or the debug preset's max_epochs) ends the fit before any window: fit/plateaued = 0, not missing."""
    model = ScriptedLoss(lambda step: 4.0 * math.exp(-step / 30))
    plateau, record = TrainToPlateau(window=100), RecordSteps(every_n_val_epochs=None)
    trainer = Trainer(
        max_epochs=4, check_val_every_n_epoch=None, val_check_interval=1000, callbacks=[plateau, record], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(model, loader(), loader(1))
    assert trainer.global_step == 12 and trainer.callback_metrics["fit/plateaued"] == 0.0
    assert record.steps == [12]  # the cap's last step is validated and measured


def test_warmup_ramps_the_lr_linearly():
    model = ScriptedLoss(lambda step: 4.0 * math.exp(-step / 30))
    fit(model, [TrainToPlateau(window=10, warmup_steps=5)], max_steps=8)
    assert model.lrs[:6] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1, 0.1])


def test_the_rule_refuses_a_second_lr_schedule_and_bad_settings():
    with pytest.raises(ValueError, match="scheduler"):
        fit(ScriptedLoss(lambda step: 1.0, scheduler=True), [TrainToPlateau()], max_steps=5)
    with pytest.raises(ValueError, match="lr_factor"):
        TrainToPlateau(lr_factor=1.5)


def test_resume_state_round_trips():
    plateau = TrainToPlateau()
    plateau.best, plateau.decays, plateau.stale_windows, plateau.base_lrs = 0.5, 1, 1, [[0.003]]
    copy = TrainToPlateau()
    copy.load_state_dict(plateau.state_dict())
    assert copy.state_dict() == plateau.state_dict()


def test_measurements_follow_the_validation_cadence_and_always_take_the_final_model():
    every_second = RecordSteps(every_n_val_epochs=2)
    only_at_end = RecordSteps(every_n_val_epochs=None)
    fit(ScriptedLoss(lambda step: 1.0), [every_second, only_at_end], max_steps=250, val_check_interval=50)
    assert every_second.steps == [100, 200, 250]  # cadence, plus the last validation (max_steps)
    assert only_at_end.steps == [250]


def test_a_fit_that_ends_between_validations_warns_that_its_figures_are_stale():
    record = RecordSteps(every_n_val_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(ScriptedLoss(lambda step: 1.0), [record], max_steps=120, val_check_interval=50)
    assert record.steps == [50, 100]
    assert any("last measured at step 100" in str(w.message) for w in caught)


def test_every_n_val_epochs_must_be_positive():
    with pytest.raises(ValueError, match="every_n_val_epochs"):
        RecordSteps(every_n_val_epochs=0)


def test_a_spent_cpu_budget_stops_the_fit_as_not_fitted():
    model = ScriptedLoss(lambda step: 4.0 * math.exp(-step / 30))  # never plateaus
    plateau = TrainToPlateau(window=10, max_cpu_seconds=0.0)  # spent at the first window
    record = RecordSteps(every_n_val_epochs=None)
    trainer = fit(model, [plateau, record], max_steps=400, val_check_interval=1000)
    assert trainer.global_step == 10 and not plateau.plateaued
    assert trainer.callback_metrics["fit/plateaued"] == 0.0 and trainer.callback_metrics["fit/cpu_s"] > 0
    assert record.steps == [10]  # measured at the budget's end

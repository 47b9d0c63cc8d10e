"""TrainToPlateau: train until the training loss stops improving, decaying the learning rate on the way.

Memorization is a property of a model that has fitted its training set: a γ-ARVM is trained to the
plateau of its own training loss, not for a number of epochs that suits one γ (a γ = 1 model
plateaus high and early, a global one keeps falling towards the floor of a memorizer,
ln(N) / T nats per token for N training grids of T tokens).

The rule, on the mean training loss over windows of `window` optimizer steps (averaged over ranks,
so every rank takes the same decision):

- the learning rate warms up linearly over `warmup_steps`, then holds the optimizer's value;
- a window *improves* when its mean is below (1 - `min_improvement`) x the best window so far;
- after `patience` windows without improvement the learning rate is multiplied by `lr_factor`
  (ReduceLROnPlateau's rule, on the training loss); once it has decayed `max_decays` times, the next
  `patience` windows without improvement end the fit: the loss has plateaued (`fit/plateaued` = 1).
- if the budget ends first, `fit/plateaued` stays 0 and a report calls the model "not fitted" rather
  than reading its memorization. The budget is `max_steps`, the last epoch of `max_epochs` (both logged as
  `fit/plateaued` = 0 at their last step), Lightning's `max_time` (wall clock), or `max_cpu_seconds`: this
  process's CPU seconds (user + system, all threads) since the fit started, which on a CPU with one thread
  per run is what the fit would take alone on a quiet core, however loaded the machine is (roughly:
  contention inflates it too, much less than the wall clock). On a GPU, `max_cpu_seconds` is null and a
  wall budget is `max_time`.

The fit stops through `trainer.should_stop`, also at the step budget, so Lightning validates the
final model before it stops and the measurement callbacks measure that model (see
callbacks/measurements/base.py). The learning rate is this callback's to set: it refuses a module that
also configures an LR scheduler.

Logged per window: `fit/window_loss`, `fit/lr`, `fit/lr_decays`, `fit/plateaued`, `fit/cpu_s`.
"""

from __future__ import annotations

import math
import resource

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


class TrainToPlateau(Callback):
    def __init__(
        self,
        window: int = 50,
        min_improvement: float = 0.02,
        patience: int = 2,
        lr_factor: float = 0.3,
        max_decays: int = 2,
        warmup_steps: int = 0,
        max_cpu_seconds: float | None = None,
    ):
        if window < 1 or patience < 1 or max_decays < 0 or warmup_steps < 0:
            raise ValueError(
                f"TrainToPlateau: window ({window}) and patience ({patience}) must be >= 1, "
                f"max_decays ({max_decays}) and warmup_steps ({warmup_steps}) >= 0"
            )
        if not 0 <= min_improvement < 1 or not 0 < lr_factor < 1:
            raise ValueError(f"TrainToPlateau: min_improvement ({min_improvement}) must lie in [0, 1), lr_factor ({lr_factor}) in (0, 1)")
        self.window, self.min_improvement, self.patience = window, min_improvement, patience
        self.lr_factor, self.max_decays, self.warmup_steps = lr_factor, max_decays, warmup_steps
        self.max_cpu_seconds = max_cpu_seconds
        self.cpu_spent = 0.0  # CPU seconds of the fit so far (carried over a resume)
        self.cpu_mark: float | None = None
        self.base_lrs: list[list[float]] | None = None  # per optimizer, per param group
        self.best = math.inf
        self.stale_windows = 0
        self.decays = 0
        self.plateaued = False
        self.loss_sum, self.loss_count = 0.0, 0

    # --- state (exact resume: ResumableRun restores callbacks with the checkpoint) ---------------
    def state_dict(self) -> dict:
        keys = ("base_lrs", "best", "stale_windows", "decays", "plateaued", "loss_sum", "loss_count", "cpu_spent")
        return {key: getattr(self, key) for key in keys}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)

    # --- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.lr_scheduler_configs:
            raise ValueError(
                "TrainToPlateau sets the learning rate itself: drop the model's scheduler "
                "(--model.init_args.scheduler null) or drop TrainToPlateau"
            )
        if self.base_lrs is None:
            self.base_lrs = [[group["lr"] for group in optimizer.param_groups] for optimizer in trainer.optimizers]
        self.cpu_mark = process_cpu_seconds()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.set_lr(trainer, self.lr_scale(trainer.global_step))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.loss_sum += float(loss.detach())
            self.loss_count += 1
        step = trainer.global_step
        budget_spent = False
        if step % self.window == 0 and step > self.warmup_steps and self.loss_count:
            budget_spent = self.end_window(trainer, pl_module)
        budget_spent = budget_spent or trainer.max_steps is not None and 0 < trainer.max_steps <= step or last_batch_of_fit(trainer)
        if budget_spent and not self.plateaued:
            pl_module.log("fit/plateaued", 0.0, on_step=True, on_epoch=False)
        if self.plateaued or budget_spent:
            trainer.should_stop = True  # Lightning validates the final model before stopping

    # --- the rule -------------------------------------------------------------------------------
    def lr_scale(self, step: int) -> float:
        """Multiplier of the base learning rate at optimizer step `step` (0-based)."""
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return warmup * self.lr_factor**self.decays

    def set_lr(self, trainer: Trainer, scale: float) -> None:
        for optimizer, base_lrs in zip(trainer.optimizers, self.base_lrs or [], strict=False):
            for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=False):
                group["lr"] = base_lr * scale

    def end_window(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        """Apply the rule to the window that just ended; True when the CPU budget is spent."""
        assert self.cpu_mark is not None and self.base_lrs is not None  # on_train_start sets both
        now = process_cpu_seconds()
        self.cpu_spent += now - self.cpu_mark
        self.cpu_mark = now
        window = torch.tensor([self.loss_sum / self.loss_count, self.cpu_spent], dtype=torch.float64, device=pl_module.device)
        mean, cpu_spent = trainer.strategy.reduce(window, reduce_op="mean").tolist()  # every rank decides alike
        self.loss_sum, self.loss_count = 0.0, 0
        if mean < self.best * (1 - self.min_improvement):
            self.best, self.stale_windows = mean, 0
        else:
            self.stale_windows += 1
        if self.stale_windows >= self.patience:
            if self.decays < self.max_decays:
                self.decays += 1
                self.stale_windows = 0
                rank_zero_info(
                    f"TrainToPlateau: step {trainer.global_step}, window loss {mean:.4f} (best {self.best:.4f}): "
                    f"learning rate x {self.lr_factor} (decay {self.decays} of {self.max_decays})"
                )
            else:
                self.plateaued = True
                rank_zero_info(
                    f"TrainToPlateau: step {trainer.global_step}, window loss {mean:.4f} (best {self.best:.4f}): "
                    "the training loss has plateaued, stopping"
                )
        pl_module.log_dict(
            {
                "fit/window_loss": mean,
                "fit/lr": self.base_lrs[0][0] * self.lr_scale(trainer.global_step),
                "fit/lr_decays": float(self.decays),
                "fit/plateaued": float(self.plateaued),
                "fit/cpu_s": cpu_spent,
            },
            on_step=True,
            on_epoch=False,
            sync_dist=False,
        )
        over_budget = self.max_cpu_seconds is not None and cpu_spent >= self.max_cpu_seconds and not self.plateaued
        if over_budget:
            rank_zero_info(
                f"TrainToPlateau: step {trainer.global_step}, window loss {mean:.4f}: the CPU budget of "
                f"{self.max_cpu_seconds:g} s is spent before the training loss plateaued, stopping (not fitted)"
            )
        return over_budget


def last_batch_of_fit(trainer: Trainer) -> bool:
    """The last batch of the last epoch of ``max_epochs`` (an epoch cap, e.g. a recipe's safety cap or the debug preset)."""
    max_epochs, last_batch = trainer.max_epochs, trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
    return max_epochs is not None and 0 < max_epochs <= trainer.current_epoch + 1 and last_batch


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

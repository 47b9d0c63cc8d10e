"""Stop at the first non-finite loss or gradient, naming the step, and never checkpoint NaN weights.

A diverged run that keeps going overwrites ``last.ckpt`` with NaN weights at its next save, and the
last good state is lost. ``NonFiniteGuard`` (added to every run by ``train.py``):

- checks the loss before ``backward`` (so the step that produced it never updates the weights) and,
  without a fp16 GradScaler (which skips inf steps itself), the gradients before the optimizer step;
  under DDP the ranks agree first, so they all stop at the same step with the same message;
- refuses to write any checkpoint whose weights are not finite, so ``last.ckpt`` keeps the last good
  state whatever else saves.

Each check is one host-device sync per step: a little throughput for never losing a run to NaNs.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from runtime.errors import MepsFault


class NonFiniteLossError(MepsFault):
    """The loss or the gradients of a training step are NaN/Inf."""


class NonFiniteCheckpointError(MepsFault):
    """A checkpoint was about to be written with NaN/Inf weights."""


def _where(trainer: Trainer) -> str:
    batch = trainer.fit_loop.epoch_loop.batch_idx
    return f"global step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch})"


def _last_good(trainer: Trainer) -> str:
    checkpoint = trainer.checkpoint_callback
    path = getattr(checkpoint, "last_model_path", "") or getattr(checkpoint, "best_model_path", "")
    return f"the last good checkpoint is kept: {path}" if path else "no checkpoint was written yet"


class NonFiniteGuard(Callback):
    def __init__(self, check_gradients: bool = True):
        self.check_gradients = check_gradients

    def _any_rank(self, trainer: Trainer, bad: bool) -> bool:
        if trainer.world_size > 1:
            return trainer.strategy.reduce_boolean_decision(bad, all=False)
        return bad

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        local_bad = not bool(torch.isfinite(loss.detach()).all())
        if self._any_rank(trainer, local_bad):
            value = loss.detach().float().flatten()[0].item() if local_bad else "non-finite on another rank"
            raise NonFiniteLossError(
                f"training loss is {value} at {_where(trainer)}: stopped before this step changed the weights; {_last_good(trainer)}"
            )

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        if not self.check_gradients or getattr(trainer.precision_plugin, "scaler", None) is not None:
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
        if not bool(finite):  # gradients are already synced across DDP ranks: every rank decides the same
            names = {id(p): n for n, p in pl_module.named_parameters()}
            first = next(
                (
                    names.get(id(p), "?")
                    for group in optimizer.param_groups
                    for p in group["params"]
                    if p.grad is not None and not bool(torch.isfinite(p.grad).all())
                ),
                "?",
            )
            raise NonFiniteLossError(
                f"non-finite gradient of {first} at {_where(trainer)}: stopped before the optimizer step; {_last_good(trainer)}"
            )

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        tensors = {k: v for k, v in checkpoint.get("state_dict", {}).items() if torch.is_tensor(v) and v.is_floating_point()}
        if not tensors or bool(torch.stack([torch.isfinite(v).all() for v in tensors.values()]).all()):
            return
        first = next(k for k, v in tensors.items() if not bool(torch.isfinite(v).all()))
        raise NonFiniteCheckpointError(
            f"refusing to write a checkpoint at {_where(trainer)}: weight {first} is not finite; {_last_good(trainer)}"
        )

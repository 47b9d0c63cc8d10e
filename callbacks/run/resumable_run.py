"""Runs that survive a kill: what a checkpoint needs for an exact resume, and ``last.ckpt`` kept current.

Lightning's checkpoint holds the weights, optimizer and scheduler states, the loop counters, the
callbacks' states and the train loader's position (``datamodules/resumable_loader.py``: the epoch's
seeded order and how far into it the run got). It does not hold the global random generators, and
Lightning 2.6 refreshes ``last.ckpt`` only when a top-k checkpoint is written (i.e. when the monitored
metric improved), so after a plateau ``last.ckpt`` can be many epochs old, and a run that stops
between validations (``max_steps`` mid-epoch) leaves no checkpoint of its final state. ``ResumableRun``
(added to every run by ``train.py``) closes these gaps:

- **RNG states of every rank** (torch, CUDA of the rank's device, numpy, Python) are gathered into
  the checkpoint and rank r gets rank r's states back on ``fit --ckpt_path``. With the loader's
  position this makes a run resumed from any step, mid-epoch included, bit-identical to an
  uninterrupted one on CPU.
- **last.ckpt at every training-epoch end and at the end of training**, and a checkpoint written at an
  epoch end resumes with the next epoch when ``max_steps`` is set too (Lightning 2.6 then lost an epoch:
  ``resume_a_finished_epoch_with_the_next``).
- **the run id** (= W&B run id = run folder name), so ``--ckpt_path <run>/checkpoints/last.ckpt``
  continues that run (see ``runtime/resume.py``).
- **validation draws from a copy** of the generators: how often it runs and what it does (sampling
  callbacks, a frozen model built on first use, the base seed of its loader's iterator, which Lightning
  draws before ``on_validation_start``) never shifts the training run's random streams, so a resumed
  run, which may build such a model at another point or skip a validation Lightning counts as done,
  stays on the same streams. A checkpoint written during validation stores the training streams, not
  the copy.

The states are stored as tensors and plain Python values, so the checkpoint still loads with
``torch.load(weights_only=True)`` (Lightning's default on torch >= 2.6).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loops.loop import _Loop
from lightning.pytorch.loops.progress import _ProcessedTracker
from lightning.pytorch.utilities import rank_zero_warn

from runtime.errors import mark_loop_started
from runtime.rng_state import gather_from_ranks, resume_seed, rng_state, set_rng_state
from runtime.wandb_run import run_dir

if TYPE_CHECKING:
    from lightning.pytorch.loops import _FitLoop

STATE_VERSION = 1


def fast_dev_run(trainer: Trainer) -> int | bool:
    """``trainer.fast_dev_run``, which ``Trainer.__init__`` sets without declaring it on the class."""
    return trainer.fast_dev_run  # type: ignore[attr-defined]  # Lightning sets it at run time


def resume_a_finished_epoch_with_the_next(fit_loop: _FitLoop) -> None:
    """Make a fit loop restored from a checkpoint written after its epoch's last batch resume with the next epoch.

    Such a checkpoint (``last.ckpt`` written at a training-epoch end: ``ResumableRun``, a preemption at the
    epoch's last step, ``ModelCheckpoint(save_on_train_epoch_end=True)``) says the epoch was processed but not
    yet completed. Lightning 2.6 resumes it as "restarting on the epoch end" whenever ``max_steps`` is set
    (``_FitLoop.restarting``: ``... or self._iteration_based_training()``), and that path is built for a
    checkpoint written at a validation: the epoch loop finds its progress counters at the epoch's end, trains
    one batch of the next epoch's data as the old epoch's, and counts the next epoch as done without training
    it (a resume at step 50 of 50-step epochs ended at step 351, not 400). Without ``max_steps`` Lightning
    resumes the same checkpoint by completing the epoch and starting the next one afresh, which is exactly
    what an uninterrupted run does next; this applies that rule whatever ``max_steps`` is. A checkpoint of an
    unfinished epoch (mid-epoch, at a validation) keeps Lightning's restart.
    """
    if getattr(fit_loop, "_finished_epoch_resume_hooked", False):
        return
    load = fit_loop.load_state_dict

    def load_state_dict(state_dict: dict, prefix: str = "") -> None:
        load(state_dict, prefix)
        progress = cast(_ProcessedTracker, fit_loop.epoch_progress.current)  # what _FitLoop builds; typed as its base
        if progress.ready == progress.started == progress.processed:  # the epoch's batches are all done
            _Loop.restarting.fset(fit_loop, False)  # type: ignore[attr-defined]  # the base setter, without the max_steps override

    fit_loop.load_state_dict = load_state_dict  # type: ignore[method-assign]  # deliberate: corrects one restore rule
    fit_loop._finished_epoch_resume_hooked = True  # type: ignore[attr-defined]  # deliberate: marks the wrap


class ResumableRun(Callback):
    """Stores what an exact resume needs and keeps ``last.ckpt`` current (see the module docstring).

    Args:
        refresh_last_every_n_epochs: write ``last.ckpt`` at the end of every n-th training epoch
            (unless a ModelCheckpoint already wrote it at that step). 0 turns this off.
    """

    def __init__(self, refresh_last_every_n_epochs: int = 1):
        if refresh_last_every_n_epochs < 0:
            raise ValueError(f"refresh_last_every_n_epochs must be >= 0, got {refresh_last_every_n_epochs}")
        self.refresh_last_every_n_epochs = refresh_last_every_n_epochs
        self._trainer: Trainer | None = None
        self._stage: str | None = None
        self._pending: dict[str, Any] | None = None  # the loaded state, until training has restarted from it
        self._order_drawn = False  # whether the resumed epoch drew its data order from the restored streams
        self._training_rng: dict[str, Any] | None = None  # the generators while validation runs inside fit
        self._after_step: dict[str, Any] | None = None  # the generators at the end of the last training step
        self.restored: dict[str, Any] | None = None
        """What the last resume restored (for tests and logs): run_id, global_step, mid_epoch, rng."""

    # --- bookkeeping ----------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer, self._stage = trainer, stage
        mark_loop_started(False)
        if stage == "fit":
            resume_a_finished_epoch_with_the_next(trainer.fit_loop)
        if stage == "fit" and self.refresh_last_every_n_epochs:
            self._run_after_checkpoint_epoch_end(trainer)

    def _run_after_checkpoint_epoch_end(self, trainer: Trainer) -> None:
        """Hook ``refresh_last`` in right after the first ModelCheckpoint's own ``on_train_epoch_end``.

        Lightning calls checkpoint callbacks after all others at epoch end, and a ModelCheckpoint skips its
        top-k save at a step that was saved already, so refreshing last.ckpt any earlier would cost the
        best checkpoint; any later there is no hook before the next epoch starts.
        """
        checkpoint = trainer.checkpoint_callback
        if not isinstance(checkpoint, ModelCheckpoint) or getattr(checkpoint, "_refresh_last_hooked", False):
            return
        original = checkpoint.on_train_epoch_end

        def on_train_epoch_end(trainer: Trainer, pl_module: LightningModule) -> None:
            original(trainer, pl_module)
            every = self.refresh_last_every_n_epochs
            resumed_here = self.restored is not None and self.restored.get("global_step") == trainer.global_step
            if every and (trainer.current_epoch + 1) % every == 0 and not fast_dev_run(trainer) and not resumed_here:
                self.refresh_last(trainer)  # (a resumed run re-enters the epoch end it was saved at: nothing new)

        checkpoint.on_train_epoch_end = on_train_epoch_end  # type: ignore[method-assign]  # deliberate: wraps the hook
        checkpoint._refresh_last_hooked = True  # type: ignore[attr-defined]  # deliberate: marks the wrap

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = None

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            mark_loop_started()
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            # as the step left them: Lightning has built the validation loader's iterator (a draw) before this hook
            self._training_rng = self._after_step or rng_state()
            self._after_step = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Validation inside fit draws from a copy of the generators: how often it runs, and what it does
        (a callback that samples, a model loaded on first use), never changes the training run's streams."""
        if self._training_rng is not None:
            set_rng_state(self._training_rng)
            self._training_rng = None

    def on_test_start(self, trainer, pl_module):
        mark_loop_started()

    def on_predict_start(self, trainer, pl_module):
        mark_loop_started()

    # --- saving ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None:
            return {}
        folder = run_dir(trainer)
        epoch_loop = trainer.fit_loop.epoch_loop
        return {
            "version": STATE_VERSION,
            "run_id": folder.name if folder is not None else None,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "mid_epoch": trainer.state.fn == "fit" and not epoch_loop.batch_progress.is_last_batch,
            "rng": gather_from_ranks(trainer, self._training_rng or rng_state()),  # inside validation: the training streams
        }

    @staticmethod
    def refresh_last(trainer: Trainer) -> str | None:
        """Write the first ModelCheckpoint's ``last.ckpt`` now, unless it was written at this step already."""
        checkpoint = trainer.checkpoint_callback
        if not isinstance(checkpoint, ModelCheckpoint) or checkpoint.dirpath is None:
            return None
        if checkpoint.save_last is False or checkpoint.save_last == "link":
            return None  # the user opted out of last.ckpt, or wants it as a link to the top-k file
        default = str(Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}")
        path = checkpoint.last_model_path or default
        if Path(path).parent != Path(checkpoint.dirpath):
            path = default
        if getattr(checkpoint, "_last_global_step_saved", None) == trainer.global_step and checkpoint.last_model_path == path:
            return None
        checkpoint.last_model_path = path  # so ModelCheckpoint later overwrites it instead of writing last-v1.ckpt
        trainer.save_checkpoint(path, weights_only=False)
        return path

    # --- resuming -------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the stored states; they are applied when training (re)starts, see ``_apply``."""
        trainer = self._trainer
        if not state_dict or trainer is None or self._stage != "fit":
            return  # validate/test/predict keep their own seeding: their result depends on the weights only
        self._pending, self._order_drawn = state_dict, False
        self.restored = {key: state_dict.get(key) for key in ("run_id", "global_step", "mid_epoch")}
        if len(state_dict.get("rng") or []) != trainer.world_size:
            rank_zero_warn(
                f"the checkpoint was written by {len(state_dict.get('rng') or [])} process(es), this job has"
                f" {trainer.world_size}: random streams are reseeded per rank, so the resumed run is valid but"
                " not bit-identical to an uninterrupted one"
            )

    def _apply(self, trainer: Trainer) -> None:
        state = self._pending
        assert state is not None and self.restored is not None  # callers check _pending; load_state_dict set both
        states = state.get("rng") or []
        if len(states) == trainer.world_size:
            set_rng_state(states[trainer.global_rank])
            self.restored["rng"] = "restored"
        else:
            base = int(os.environ.get("PL_GLOBAL_SEED", 0))
            torch.manual_seed(resume_seed(base, trainer.global_rank, int(state.get("global_step") or 0)))
            self.restored["rng"] = "reseeded"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The generators as they were at the save. A loader that draws its order from the global generator
        (a plain ``DataLoader(shuffle=True)``; this project's loaders never do) has drawn it since: Lightning
        creates the train iterator before this hook. When the resumed epoch starts afresh it is drawn again,
        from the restored state, in ``on_train_epoch_start``, which is where an uninterrupted run draws it too."""
        mark_loop_started()
        if self._pending is not None:
            self._apply(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The resumed epoch starts: restore the generators and draw its data order from them.

        An uninterrupted run creates the epoch's train iterator right after this hook (which draws the
        DataLoader's base seed and the shuffle permutation from the global generator). On the first epoch
        after a resume Lightning reuses the iterator it created before ``on_train_start`` instead, so it is
        created again here, from the restored state.
        """
        if self._pending is None or trainer.global_step != self._pending.get("global_step"):
            return
        self._apply(trainer)
        fit_loop = trainer.fit_loop
        lightning_iterates = trainer.current_epoch > 0 and not fit_loop.is_resuming and not fit_loop.epoch_loop.restarting
        fetcher = getattr(fit_loop, "_data_fetcher", None)
        if not lightning_iterates and fetcher is not None:
            iter(fetcher)
        self._order_drawn = True

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """The first step after a resume that did not start an epoch afresh: the generators as they were at the save.

        Lightning's restart within an epoch may draw from them before this step: resumed from a checkpoint of an
        epoch's last batch, it treats the next epoch's first batch as a validation point and builds the
        validation loader's iterator, whose base seed comes from the global generator (an uninterrupted run
        builds it inside the validation, which draws from a copy)."""
        if self._pending is not None and not self._order_drawn and trainer.global_step == self._pending.get("global_step"):
            self._apply(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._pending = None
        self._after_step = rng_state()  # what a validation right after this step hands back to training (~50 µs)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The final state as last.ckpt: training may stop between epoch ends (``max_steps``) and validations."""
        if self.refresh_last_every_n_epochs and not fast_dev_run(trainer):
            self.refresh_last(trainer)

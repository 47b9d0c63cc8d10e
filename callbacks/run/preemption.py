"""Preemption: SIGTERM, SIGUSR1 or Ctrl-C mid-epoch -> a checkpoint of the step reached, exit code 75, exact resume.

Lightning's own SIGTERM handling sets a flag on the rank that got the signal and stops that rank at the
end of its step; under DDP the other ranks then wait in the next collective, and the exit code is 0.
``Preemption`` (added to every run by ``train.py``) installs ``runtime.signals.StopRequests`` while
training runs and, after every optimizer step, asks all ranks whether any of them was signalled (one
tiny all-reduce under DDP). When one was, every rank stops at that same step:

- the checkpoint callbacks first do what they would have done at this point (a top-k file after a
  validation), then ``last.ckpt`` is written with the state of the step reached: weights, optimizer, every
  rank's generators (``ResumableRun``) and the data loader's position (``datamodules/resumable_loader.py``);
- a step that validates stops after its validation (Lightning resumes such a step as validated), a step
  that ends an epoch after the epoch-end checkpoints (ModelCheckpoint often writes its top-k there);
- rank 0 writes ``status.json`` (``preempted``), marks the W&B run as preempting, and on SLURM asks for
  the job to be requeued when the signal was the requeue signal (``SLURMEnvironment(requeue_signal=...)``,
  SIGUSR1 by default; SIGTERM preemption is requeued by SLURM itself): ``runtime.slurm.requeue_at_exit``,
  as the process's last act, since ``scontrol requeue`` ends the job at once;
- ``Preempted`` is raised; ``train.py`` exits with 75 (``runtime/exit_codes.py``) and prints the command
  that resumes the run.

A second Ctrl-C stops at once (``runtime.errors.StoppedAtOnce``): ``on_exception`` records on it the
step reached and the newest checkpoint on disk, if any, so the command line tells whether a resume has
anything to continue. After an error, ``status.json`` is ``failed`` with the global step reached.

The status file also says ``running`` while training and ``finished`` after a complete fit, which is how
``--ckpt_path last`` picks the newest run that is not done (``runtime/resume.py``).

Everything is read through Lightning's public hooks and properties but two things Lightning keeps only
privately: whether validation runs right after this step (``_TrainingEpochLoop._should_check_val_fx``, a
rule that also reads the loop's private data fetcher and time interval) and, for a one-device run, the
cluster environment that says which signal requeues a SLURM job (``Trainer._accelerator_connector``;
only a multi-device strategy exposes it).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch.distributed as dist
from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from callbacks.run.resumable_run import ResumableRun, fast_dev_run
from runtime import exit_codes
from runtime.errors import Preempted, StoppedAtOnce, one_line_error, squeeze
from runtime.run_status import last_checkpoint, write_status
from runtime.signals import StopRequests
from runtime.slurm import requeue_at_exit, slurm_job_key
from runtime.wandb_run import run_dir

if TYPE_CHECKING:
    from lightning.pytorch.loops.fetchers import _DataFetcher


class Preemption(Callback):
    """Turns a stop request into a checkpoint of the step reached and ``Preempted`` (see the module docstring)."""

    def __init__(self) -> None:
        self.requests = StopRequests()
        self._training = False
        self._stop_at: str | None = None
        """The hook at which every rank stops, once they agreed to (a step that validates or ends an epoch
        stops after that validation, or after the epoch-end checkpoints)."""
        self._saved_step: int | None = None
        """The global step of the last full checkpoint written (by any callback or ``trainer.save_checkpoint``)."""

    # --- while training runs, signals are requests -----------------------------------------------
    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.requests.install()  # from here on, not Lightning's handler (its DDP broadcast runs inside the handler)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.requests.install()
        self._training = True
        self._status(
            trainer,
            "running",
            global_step=trainer.global_step,
            signal=None,
            checkpoint=None,
            resumed_from_step=trainer.global_step if trainer.ckpt_path else None,
            error=None,  # a resumed run that failed before: its error is history (status.json merges its fields)
        )
        _survive_lost_wandb(trainer, self.requests)
        if self._any_rank(trainer, self.requests.received is not None):
            self._stop(trainer, pl_module, hook=None)  # signalled during the sanity check: nothing new to save

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.requests.restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.requests.restore()
        if isinstance(exception, StoppedAtOnce):
            exception.step = trainer.global_step if self._training else None
            exception.checkpoint = resumable_checkpoint(trainer)
        if not self._training or isinstance(exception, Preempted):  # an error before training leaves no run behind
            return
        with contextlib.suppress(OSError):  # on a full disk the status may not be writable: the error itself goes on
            if isinstance(exception, StoppedAtOnce):
                self._status(trainer, "preempted", signal="SIGINT (second Ctrl-C)", global_step=trainer.global_step)
            else:
                line = one_line_error(exception)  # a disk full: its OSError, not torch's "unexpected pos"
                error = line.message if line is not None else squeeze(exception)
                self._status(trainer, "failed", global_step=trainer.global_step, error=error[:300])

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._status(trainer, "finished", global_step=trainer.global_step)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.requests.restore()

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._saved_step = trainer.global_step  # Lightning calls this for every checkpoint with the callbacks' states

    # --- acting on a request at a step boundary --------------------------------------------------
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._stop_at is not None or _accumulating(trainer, batch_idx):
            return
        if not self._any_rank(trainer, self.requests.received is not None):
            return
        if _epoch_ends_now(trainer):
            self._stop_at = "on_train_epoch_end"  # after the epoch's validation and its checkpoints
        elif _validates_now(trainer):
            self._stop_at = "on_validation_end"  # Lightning resumes a step that validates as validated
        else:
            self._stop(trainer, pl_module, "on_train_batch_end", outputs, batch, batch_idx)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        if self._stop_at is None and self._any_rank(trainer, self.requests.received is not None):
            self._stop_at = "on_train_epoch_end" if _epoch_ends_now(trainer) else "on_validation_end"
        if self._stop_at == "on_validation_end":
            self._stop(trainer, pl_module, "on_validation_end")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._stop_at == "on_train_epoch_end":
            self._stop(trainer, pl_module, "on_train_epoch_end")

    @staticmethod
    def _any_rank(trainer: Trainer, local: bool) -> bool:
        """Whether any rank was asked to stop: every rank calls this at the same step, so they all agree."""
        if trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(local, all=False))
        return local

    def _stop(self, trainer: Trainer, pl_module: LightningModule, hook: str | None, *args: Any) -> None:
        name = self.requests.name or "a stop request on another rank"
        if hook is not None:
            for checkpoint in trainer.checkpoint_callbacks:  # the files they would write here (a top-k after validation)
                getattr(checkpoint, hook)(trainer, pl_module, *args)
        path = save_resumable_checkpoint(trainer, self._saved_step) if hook is not None else (trainer.ckpt_path or None)
        where = f"global step {trainer.global_step} (epoch {trainer.current_epoch}, batch {trainer.fit_loop.epoch_loop.batch_idx})"
        how = "interrupted by Ctrl-C" if self.requests.received == signal.SIGINT else f"preempted by {name}"
        message = f"{how} at {where}: " + (f"checkpoint {path}" if path else "no checkpoint (nothing trained yet)")
        if trainer.is_global_zero:
            self._status(trainer, "preempted", signal=name, global_step=trainer.global_step, checkpoint=str(path) if path else None)
            _mark_preempting(trainer, name)
            if self.requests.received is not None and self.requests.received == _requeue_signal(trainer) and (job := slurm_job_key()):
                requeue_at_exit(job)  # after W&B and this process are done: the requeue ends the job at once
        _leave_process_group(trainer)
        raise Preempted(message, name, trainer.global_step, str(path) if path else None, exit_code=_exit_code(trainer))

    @staticmethod
    def _status(trainer: Trainer, state: str, **fields: Any) -> None:
        folder = run_dir(trainer)
        if trainer.is_global_zero and folder is not None and not fast_dev_run(trainer):
            write_status(folder, state, run_id=folder.name, slurm_job=slurm_job_key(), **fields)


def resumable_checkpoint(trainer: Trainer) -> str | None:
    """The newest ``last*.ckpt`` on disk that ``--ckpt_path last`` continues from (the run folder's, the
    ModelCheckpoint's, or the one this fit started from), or None when nothing was saved."""
    checkpoint = trainer.checkpoint_callback
    candidates = [
        last_checkpoint(folder) if (folder := run_dir(trainer)) is not None else None,
        Path(checkpoint.last_model_path) if isinstance(checkpoint, ModelCheckpoint) and checkpoint.last_model_path else None,
        Path(trainer.ckpt_path) if trainer.ckpt_path else None,
    ]
    existing = [path for path in candidates if path is not None and path.is_file()]
    return str(max(existing, key=lambda path: path.stat().st_mtime).resolve()) if existing else None


def save_resumable_checkpoint(trainer: Trainer, saved_step: int | None = None) -> Path:
    """``last.ckpt`` of the state reached: the first ModelCheckpoint's (unless it wrote this step already), or a
    ``last.ckpt`` beside the run's other checkpoints when no ModelCheckpoint keeps one. ``saved_step``: the
    global step of the last full checkpoint written (``Preemption.on_save_checkpoint``)."""
    written = ResumableRun.refresh_last(trainer)
    checkpoint = trainer.checkpoint_callback
    if written is None and isinstance(checkpoint, ModelCheckpoint) and checkpoint.last_model_path and saved_step == trainer.global_step:
        return Path(checkpoint.last_model_path)  # written at this very step already
    if written is not None:
        return Path(written)
    folder = (
        Path(checkpoint.dirpath)
        if isinstance(checkpoint, ModelCheckpoint) and checkpoint.dirpath
        else (run_dir(trainer) or Path(trainer.default_root_dir)) / "checkpoints"
    )
    path = folder / "last.ckpt"
    trainer.save_checkpoint(path)
    return path


def _accumulating(trainer: Trainer, batch_idx: int) -> bool:
    """Mid gradient accumulation: the accumulated gradients are not in a checkpoint, so this is no step boundary."""
    every = trainer.accumulate_grad_batches
    return every > 1 and (batch_idx + 1) % every != 0 and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


def _epoch_ends_now(trainer: Trainer) -> bool:
    """Whether this step ends the epoch (its last batch, or ``max_steps``): then the epoch-end hooks come next.

    Lightning's own rule (``_TrainingEpochLoop._is_training_done``), from its public counters."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    max_steps_reached = trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps
    return max_steps_reached or progress.is_last_batch or progress.current.ready == trainer.num_training_batches


def _validates_now(trainer: Trainer) -> bool:
    """Whether Lightning runs validation right after this training step (its own rule, evaluated the same on every rank)."""
    epoch_loop = trainer.fit_loop.epoch_loop
    try:
        fetcher = cast("_DataFetcher", trainer.fit_loop._data_fetcher)  # set while the epoch loop runs its batches
        return bool(epoch_loop._should_check_val_fx(fetcher))
    except (AttributeError, TypeError):  # another Lightning version: stop after the step, without the top-k of a validation
        return False


def _requeue_signal(trainer: Trainer) -> int | None:
    """The signal that requeues this SLURM job, or None (no SLURM, or ``auto_requeue=False``)."""
    environment = trainer._accelerator_connector.cluster_environment  # private: a one-device strategy has none
    if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
        return environment.requeue_signal or signal.SIGUSR1
    return None


def _mark_preempting(trainer: Trainer, name: str) -> None:
    """Tell W&B the run will be resumed (its UI shows it as preempted instead of crashed).

    SLURM's SIGTERM (preemption, ``scontrol requeue``, ``scancel``) reaches every process of the job step, W&B's
    service process among them, which exits: W&B's records of the last moments are lost then, but not the stop.
    Its exit hook would fail on the lost connection too (a traceback), so W&B is let go here (``wandb.teardown``
    unregisters that hook before it tries)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            if isinstance(log := getattr(run, "log", None), _LogAfterStop) and log.failed:
                continue  # W&B was let go already: its service process is gone
            try:
                if hasattr(run, "mark_preempting"):
                    run.mark_preempting()
                if hasattr(run, "summary"):
                    run.summary.update({"preempted_at_step": trainer.global_step, "preempted_by": name})
            except lost_service_errors() as err:  # the W&B service is gone (SLURM's SIGTERM); any other failure is raised
                print(f"W&B could not record the stop (its service process is gone: {squeeze(err)[:200]})", file=sys.stderr, flush=True)
                _let_wandb_go()


def _survive_lost_wandb(trainer: Trainer, requests: StopRequests) -> None:
    """A W&B log call that fails on a lost service process, and a stop was requested, is skipped (said once) instead
    of ending the run (``_LogAfterStop``).

    SLURM's SIGTERM reaches W&B's service process too, and it exits: the steps up to the stop (a step that ends
    an epoch runs its validation first) would otherwise fail in their W&B logging, with exit code 1 and no
    checkpoint of the step reached, instead of stopping with it (found on a real cluster: ``scontrol requeue``)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            run = logger.experiment
            log = getattr(run, "log", None)
            if log is not None and not isinstance(log, _LogAfterStop):
                run.log = _LogAfterStop(log, requests)


class _LogAfterStop:
    """A W&B run's ``log`` that skips a call that fails because W&B's service process is gone after a stop request.

    Every call is tried: the SIGTERM that ends W&B's service may land during a call, so whether a stop was requested
    is decided after the failure, waiting up to ``LOST_SERVICE_WAIT_S`` for this process's own SIGTERM (SLURM signals
    the job's processes one after the other). Only a lost connection is skipped (``lost_service_errors``); any other
    failure, or a lost connection without a stop request, is raised as before. Once skipped, W&B is let go and the
    calls that follow are skipped without trying."""

    def __init__(self, log: Any, requests: StopRequests) -> None:
        self.log, self.requests, self.failed = log, requests, False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return None
        try:
            return self.log(*args, **kwargs)
        except lost_service_errors() as err:
            if not _stop_requested(self.requests, within_s=LOST_SERVICE_WAIT_S):
                raise
            self.failed = True
            print(f"W&B could not log after the stop request ({squeeze(err)[:200]}): skipped", file=sys.stderr, flush=True)
            _let_wandb_go()
            return None


LOST_SERVICE_WAIT_S = 1.0
"""How long a failed W&B call waits for the stop request that explains it (this process's SIGTERM)."""


def lost_service_errors() -> tuple[type[BaseException], ...]:
    """What a W&B call raises when W&B's service process is gone: its socket's ``OSError`` (``ConnectionResetError``,
    ``BrokenPipeError``), or W&B's mailbox closed or abandoned on the lost connection."""
    errors: list[type[BaseException]] = [OSError]
    with contextlib.suppress(ImportError):
        from wandb.sdk.mailbox.mailbox import MailboxClosedError

        errors.append(MailboxClosedError)
    with contextlib.suppress(ImportError):
        from wandb.sdk.mailbox.mailbox_handle import HandleAbandonedError

        errors.append(HandleAbandonedError)
    return tuple(errors)


def _stop_requested(requests: StopRequests, within_s: float) -> bool:
    """Whether a stop was requested, now or within ``within_s`` seconds (its signal handler runs meanwhile)."""
    deadline = time.monotonic() + within_s
    while requests.received is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return requests.received is not None


def _let_wandb_go() -> None:
    """End W&B's side of this process without waiting for its lost service process."""
    import wandb

    with contextlib.suppress(Exception):
        wandb.teardown()


def _leave_process_group(trainer: Trainer) -> None:
    """Every rank is here, at the same step: end the process group now. Left to the interpreter's exit, a
    gloo group waits about 5 s per process for peers that are gone."""
    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
            dist.destroy_process_group()


def _exit_code(trainer: Trainer) -> int:
    """75, except on the ranks that Lightning's own launcher started: they exit 0, because the launcher SIGKILLs
    its main process (rank 0, whose code is the job's, 75) as soon as it sees a rank exit with any other code."""
    environment = getattr(trainer.strategy, "cluster_environment", None)  # a multi-device strategy's (ParallelStrategy)
    launched_by_lightning = type(environment) is LightningEnvironment and trainer.local_rank > 0
    return exit_codes.OK if launched_by_lightning else exit_codes.RESUMABLE

"""Entry point: `python train.py {fit,validate,test,predict} -c CONFIG.yaml [--key value ...]`.

LightningCLI in subclass mode: every model and data module of the project is chosen by
`class_path` in the config, networks and optimizers are injected through typed __init__
arguments, values that must agree between data and model are linked (C5).

Every run also gets (``trainer_defaults``): per-rank seeds, ``ResumableRun`` (RNG states of every
rank and the run id in each checkpoint, ``last.ckpt`` refreshed each epoch), ``NonFiniteGuard`` and
``BatchGuard``, and atomic checkpoint writes (``AtomicCheckpointIO``). ``fit --ckpt_path`` continues
the run it names (same run id, same W&B run): see ``MepsCLI.resolve_resume``.

From the command line, a bad input (a ValueError/FileNotFoundError/... before the loop starts) or a
detected fault (``MepsFault``: non-finite loss, bad batch) is one line ``error: ...`` on stderr, exit
code 2 (input) or 1 (fault); ``MEPS_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from jsonargparse import set_parsing_settings
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from callbacks.checkpoint_io import AtomicCheckpointIO
from callbacks.input_guard import BatchGuard
from callbacks.nan_guard import NonFiniteGuard
from callbacks.rank_seed import PerRankSeed
from callbacks.resilience import (
    MepsFault,
    ResumableRun,
    loop_started,
    mark_loop_started,
    require_checkpoint_file,
    resume_run_id,
)
from callbacks.wandb_run import (
    RUN_ID_ENV,
    WandbSaveConfigCallback,
    ensure_wandb_mode,
    job_run_id,
    run_dir,
    wandb_files_dir,
)

DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.WandbLogger",
    "init_args": {"project": "meps-ldh", "save_dir": "outputs"},
}


def share_autoencoder_path(config) -> None:
    """`--data.init_args.autoencoder` also tells a token model which BL-AE it decodes with.

    A link would not do: links apply to every model class, and only the γ-ARVMs have this argument.
    """
    data_args, model_args = config.data.get("init_args"), config.model.get("init_args")
    if not data_args or not model_args or "autoencoder" not in data_args or "autoencoder" not in model_args:
        return
    if model_args.autoencoder is None:
        model_args.autoencoder = data_args.autoencoder
    elif data_args.autoencoder is not None and model_args.autoencoder != data_args.autoencoder:
        raise ValueError(
            f"--model.init_args.autoencoder={model_args.autoencoder} and --data.init_args.autoencoder="
            f"{data_args.autoencoder} differ: the tokens and the decoder must come from the same BL-AE"
        )


class MepsCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")
        parser.link_arguments("data.init_args.channels", "model.init_args.channels")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        share_autoencoder_path(config)
        self.resolve_resume(config, self.subcommand)
        self.share_run_id(config)

    @staticmethod
    def wandb_logger_args(config) -> list:
        loggers = config.trainer.logger
        return [logger.init_args for logger in (loggers if isinstance(loggers, list) else [loggers])
                if getattr(logger, "class_path", "").endswith("WandbLogger")]

    @classmethod
    def resolve_resume(cls, config, subcommand: str | None) -> None:
        """``fit --ckpt_path`` continues a run: same run id, so the same run folder and the same W&B run.

        ``--ckpt_path last`` takes the run from MEPS_RUN_ID or --trainer.logger.init_args.id;
        ``--ckpt_path <file>`` adopts the run id stored in the checkpoint (an explicit id wins: a fork).
        A --ckpt_path that names no file fails here, before any run or folder is created.
        """
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path:
            return
        loggers = cls.wandb_logger_args(config)
        if subcommand != "fit" or not loggers:
            require_checkpoint_file(str(ckpt_path))  # without W&B, Lightning looks for "last" in default_root_dir
            return
        explicit = next((str(a.get("id") or a.get("version")) for a in loggers if a.get("id") or a.get("version")), None)
        runs_root = Path(loggers[0].get("save_dir") or "outputs") / str(loggers[0].get("project") or "lightning_logs")
        run_id = resume_run_id(str(ckpt_path), explicit, runs_root, env_id=os.environ.get(RUN_ID_ENV))
        if run_id is None:
            return
        for init_args in loggers:
            init_args["id"] = run_id
        os.environ[RUN_ID_ENV] = run_id  # DDP children inherit it
        if _is_main_process():
            folder = runs_root / run_id
            if ckpt_path == "last" and not any((folder / "checkpoints").glob("last*.ckpt")):
                message = f"resume: run {run_id} has no last.ckpt in {folder / 'checkpoints'}: it STARTS FROM SCRATCH"
            else:
                source = "the last checkpoint" if ckpt_path == "last" else str(ckpt_path)
                message = f"resume: run {run_id} goes on from {source} (run folder {folder})"
            print(message, file=sys.stderr, flush=True)

    @staticmethod
    def share_run_id(config) -> None:
        """Give the job's WandbLogger the run id that every DDP rank shares."""
        loggers = config.trainer.logger
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if getattr(logger, "class_path", "").endswith("WandbLogger"):
                init_args = logger.init_args
                if not (init_args.get("id") or init_args.get("version")):
                    init_args["id"] = job_run_id()

    def instantiate_trainer(self, **kwargs) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        install_atomic_checkpoint_io(trainer)
        return trainer

    def after_fit(self) -> None:
        self.report_where_things_are()

    def report_where_things_are(self) -> None:
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        lines = []
        if any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
            lines.append(f"W&B run: {wandb_files_dir(trainer)}")
        if (folder := run_dir(trainer)) is not None:
            lines.append(f"run folder (config.yaml, checkpoints/): {folder}")
        if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path:
            lines.append(f"best checkpoint: {trainer.checkpoint_callback.best_model_path}")
        print("\n".join(lines), flush=True)


def main(args: ArgsType = None, run: bool = True) -> MepsCLI:
    ensure_wandb_mode()
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    return MepsCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=WandbSaveConfigCallback,
        parser_kwargs={"parser_mode": "omegaconf+"},
        seed_everything_default=1234,
        auto_configure_optimizers=False,
        trainer_defaults={
            "logger": DEFAULT_LOGGER,
            "default_root_dir": "outputs",
            "callbacks": [PerRankSeed(), ResumableRun(), NonFiniteGuard(), BatchGuard()],
        },
        args=args,
        run=run,
    )


def install_atomic_checkpoint_io(trainer: Trainer) -> None:
    """Atomic, fsynced checkpoint writes, unless the user configured a CheckpointIO of their own."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def _is_main_process() -> bool:
    return all(os.environ.get(var, "0") == "0" for var in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"))


INPUT_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, MisconfigurationException)
"""Raised before the loop starts, these are bad inputs (a path, a value, a checkpoint): one line, exit code 2."""
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


PEER_FAILURE_SIGNS = ("Connection closed by peer", "remote worker crash", "Connection reset by peer", "ncclRemoteError")


def one_line_error(err: BaseException) -> tuple[str, int] | None:
    """The line and exit code that stand for ``err`` on the command line, or None to show the traceback."""
    message = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, MepsFault):
        return message, err.exit_code
    if isinstance(err, RuntimeError) and any(sign in message for sign in PEER_FAILURE_SIGNS):
        return f"another rank of this job failed (its error is above), so this rank stopped too: {message[:200]}", 1
    if isinstance(err, OSError) and err.errno in DISK_FULL:
        return f"{message} (disk full: nothing partial was kept; free space and run again)", 1
    if isinstance(err, INPUT_ERRORS) and not loop_started():
        return message, 2
    return None


def stop_when_launcher_dies(poll_s: float = 2.0) -> None:
    """A DDP rank > 0 exits when the process that launched it is gone (rank 0 under Lightning's launcher,
    torchrun's agent, slurmstepd): a killed or crashed rank 0 would otherwise leave it blocked in a
    collective until the process-group timeout (30 min), holding its GPU."""
    if os.environ.get("LOCAL_RANK", "0") == "0":
        return
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                print(f"error: rank {os.environ.get('RANK', os.environ['LOCAL_RANK'])}: the process that launched it"
                      f" (pid {parent}) is gone, stopping this rank too", file=sys.stderr, flush=True)
                os._exit(1)

    threading.Thread(target=watch, name="launcher-watchdog", daemon=True).start()


def console_main(argv: list[str] | None = None) -> int:
    """``python train.py ...``: like ``main``, but a bad input or a detected fault is one line, not a traceback."""
    stop_when_launcher_dies()
    mark_loop_started(False)
    try:
        main(argv)
    except Exception as err:  # SystemExit (argument errors, --help) passes through untouched
        line = None if os.environ.get("MEPS_DEBUG") else one_line_error(err)
        if line is None:
            raise
        message, code = line
        print(f"error: {message}  [MEPS_DEBUG=1 shows the traceback]", file=sys.stderr, flush=True)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(console_main())

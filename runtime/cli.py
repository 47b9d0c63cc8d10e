"""The project's LightningCLI: links between data and model, which run a resume continues, one-line input errors.

``MepsCLI`` is LightningCLI in subclass mode (every model and data module is chosen by ``class_path``)
with these additions, each a small method:

- ``add_arguments_to_parser``: the ``links`` that ``train.py`` gives (values that must agree between
  data and model have one source); ``share_init_args`` gives the model an argument of its data.
- ``parse_arguments`` / ``settle_checkpoint``: a link target given on the command line is refused (it
  would be silently replaced); ``--ckpt_path`` is resolved to the run it continues
  (``runtime/resume.py``) and a checkpoint of another model is refused, before LightningCLI reads the
  checkpoint's hyper-parameters into the config.
- ``instantiate_classes``: an error raised in a model's or data module's ``__init__`` is one line,
  the culprit first (``runtime/errors.py``).
- ``instantiate_trainer``: ``validate``/``test``/``predict`` of a model with trainable weights need
  ``--ckpt_path`` (``runtime/trained_weights.py``); atomic checkpoint writes
  (``runtime/checkpoint_files.py``) and the data module's world-size check, before any process, W&B
  run or folder exists.
- ``after_instantiate_classes`` / ``_run_subcommand``: the run folder is held by one process
  (``runtime/run_lock.py``) while the command runs, and a bad input found before the first step
  leaves nothing behind (``runtime/leftovers.py``).

``MepsArgumentParser`` turns a parse error into one line naming the culprit. Nothing here names a model
or a data module: ``train.py`` builds the CLI with the project's links, help text and defaults; see
docs/design.md and docs/reliability.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import cast

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from runtime import exit_codes
from runtime.argument_errors import argument_error_line
from runtime.checkpoint_files import AtomicCheckpointIO, model_mismatch, plain, read_checkpoint_metadata
from runtime.errors import BadInput, MepsFault, input_errors, loop_started, mark_loop_started, one_line_error, root_cause, squeeze
from runtime.held_logs import HeldLogs
from runtime.leftovers import CreatedFolders, remove_leftovers
from runtime.output_folder import require_writable_output_folders
from runtime.ranks import is_main_process
from runtime.resume import LIGHTNING_CKPT_KEYWORDS, Resume, require_checkpoint_file, resume, slurm_resume
from runtime.run_location import DEFAULT_ROOT_DIR, place_run_folders, prepare_wandb_init, wandb_logger_args
from runtime.run_lock import RunLock, take_run_lock
from runtime.run_status import command_fingerprint
from runtime.slurm import restart_count, slurm_job_key, slurm_run_id
from runtime.trained_weights import require_trained_weights
from runtime.wandb_run import (
    PROJECT,
    RUN_ID_ENV,
    announce_wandb_mode,
    check_wandb_mode,
    ensure_wandb_mode,
    job_run_id,
    run_dir,
    wandb_agent_run_id,
    wandb_files_dir,
)

DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.WandbLogger",
    "init_args": {"project": PROJECT, "save_dir": None},  # None: --trainer.default_root_dir (runtime/run_location.py)
}


def help_first(intro: str, summaries: dict[str, str], script: str = "train.py") -> dict:
    """Parser settings per subcommand: a short usage, then ``intro`` (the project's own options, before
    Lightning's Trainer's); ``intro``'s ``{what}`` becomes ``summaries[subcommand]``."""
    return {
        subcommand: {
            "description": intro.format(what=f"`{script} {subcommand}`: {what}"),
            "usage": f"{script} {subcommand} -c CONFIG [-c PRESET ...] [--KEY VALUE ...]",
        }
        for subcommand, what in summaries.items()
    }


def share_init_args(config, shared: dict[str, str]) -> None:
    """Each ``--data.init_args.<name>`` of ``shared`` also goes to the model, when both take it; a model
    given another value is refused with the reason ``shared[name]``.

    A link would not do: links apply to every model class, and only some models take such an argument.
    """
    data_args, model_args = config.data.get("init_args"), config.model.get("init_args")
    for name, reason in shared.items():
        if not data_args or not model_args or name not in data_args or name not in model_args:
            continue
        if model_args[name] is None:
            model_args[name] = data_args[name]
        elif data_args[name] is not None and model_args[name] != data_args[name]:
            raise ValueError(f"--model.init_args.{name}={model_args[name]} and --data.init_args.{name}={data_args[name]} differ: {reason}")


def without_init_args(key: str) -> str:
    """``model.init_args.net.init_args.x`` -> ``model.net.x``: the forms jsonargparse takes for one key."""
    return ".".join(part for part in key.split(".") if part != "init_args")


class MepsArgumentParser(LightningArgumentParser):
    """A parse error is one line naming the culprit (``did you mean``), not the usage followed by a nested report.

    Exits with 2 like any argparse error (``MEPS_DEBUG=1``: jsonargparse's own usage and report).
    """

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or os.environ.get("MEPS_DEBUG"):  # jsonargparse's nested parsers catch these
            return super().error(message, ex)
        argv = list(getattr(self, "args", None) or sys.argv[1:])
        known = sorted({action.dest.split(".")[0] for action in self._actions if action.dest and action.dest != "help"})
        print(f"error: {argument_error_line(message, argv, known)}", file=sys.stderr, flush=True)
        raise SystemExit(exit_codes.BAD_INPUT)


class MepsCLI(LightningCLI):
    """LightningCLI with this project's links, resume rules and one-line input errors (see the module docstring)."""

    def __init__(
        self,
        *args,
        links: dict[str, str] | None = None,
        shared_init_args: dict[str, str] | None = None,
        log_file_progress: type[Callback] | None = None,
        **kwargs,
    ) -> None:
        self.links = dict(links or {})  # target key -> its source key
        self.shared_init_args = dict(shared_init_args or {})  # data argument -> why the model must agree
        self.log_file_progress = log_file_progress  # the progress callback when stdout is a log file, not a terminal
        self.held_logs = HeldLogs()  # released once the classes are built: an input error is then the only line
        self.run_lock: RunLock | None = None  # held while the subcommand runs (runtime/run_lock.py)
        self.resume_message: str | None = None  # which run a fit continues (runtime/resume.py)
        self.created_folders = CreatedFolders(None, [])  # what a bad input found before the first step removes
        with self.held_logs:
            super().__init__(*args, **kwargs)

    def after_instantiate_classes(self) -> None:
        self.run_lock = self.hold_run_folder()
        if self.resume_message and is_main_process():
            print(self.resume_message, file=sys.stderr, flush=True)
        self.held_logs.release()

    def hold_run_folder(self) -> RunLock | None:
        """The run folder's lock (``runtime/run_lock.py``), taken by the job's first process before the W&B run starts or
        anything is written; None for ``run=False`` (the caller runs the Trainer), other ranks and runs without a folder."""
        folder = run_dir(self.trainer) if self.subcommand and is_main_process() else None
        if folder is None:
            return None
        lock = take_run_lock(folder)
        if lock.took_over:
            print(lock.took_over, file=sys.stderr, flush=True)
        return lock

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it holding the run folder; a bad input found before the first step leaves nothing (``runtime/leftovers.py``)."""
        mark_loop_started(False)  # this command's loop (an earlier one in this process may have run)
        try:
            super()._run_subcommand(subcommand)
        except Exception as err:
            if self.run_lock is not None and failed_on_input_before_start(err):
                remove_leftovers(self.trainer, self.created_folders)
            raise
        finally:
            if self.run_lock is not None:
                self.run_lock.release()
                self.run_lock = None

    def add_arguments_to_parser(self, parser) -> None:
        for target, source in self.links.items():
            parser.link_arguments(source, target)

    def parse_arguments(self, parser, args) -> None:
        """Parse, then settle which run and checkpoint this command continues, before LightningCLI reads the
        checkpoint's hyper-parameters into the config (which would otherwise swap in another model)."""
        argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
        targets = {without_init_args(target): source for target, source in self.links.items()}
        for flag in (arg.split("=")[0] for arg in argv if arg.startswith("--")):
            if (source := targets.get(without_init_args(flag[2:]))) is not None:  # jsonargparse would replace it silently
                parser.error(f"{flag}: follows --{source} (linked); set that instead")
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:
            self.settle_checkpoint(self.config[subcommand], subcommand, argv)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        share_init_args(config, self.shared_init_args)
        place_run_folders(config)
        self.share_run_id(config)

    def settle_checkpoint(self, config, subcommand: str, argv: list[str]) -> None:
        """Resolve ``--ckpt_path`` to the run it continues and refuse a file that is not this command's model."""
        share_init_args(config, self.shared_init_args)
        place_run_folders(config)
        require_writable_output_folders(config)  # before any folder, lock or W&B run exists
        if wandb_logger_args(config):  # decided once the command has parsed: --help never waits on the network
            ensure_wandb_mode(announce=False)  # offline without a key or a reachable server; DDP children inherit it
            check_wandb_mode()  # WANDB_MODE=online without an API key: a bad input, before anything is built
        loggers = wandb_logger_args(config) if subcommand == "fit" else []
        choice = self.resolve_resume(config, loggers, argv) if loggers else Resume(None, config.get("ckpt_path"))
        check_checkpoint_fits(choice.ckpt_path, config.model)
        if choice.run_id is not None:
            for init_args in loggers:
                init_args["id"] = choice.run_id
            os.environ[RUN_ID_ENV] = choice.run_id  # DDP children inherit it
        config.ckpt_path = choice.ckpt_path
        self.resume_message = choice.message  # said once the run folder is held (a refused process says only why)

    @staticmethod
    def resolve_resume(config, loggers: list, argv: list[str]) -> Resume:
        """``fit``: the run id (so the run folder and the W&B run) and the checkpoint it goes on from."""
        explicit = next((str(a.get("id") or a.get("version")) for a in loggers if a.get("id") or a.get("version")), None)
        runs_root = Path(loggers[0].get("save_dir") or DEFAULT_ROOT_DIR) / str(loggers[0].get("project") or "lightning_logs")
        ckpt_path = config.get("ckpt_path")
        env_id = os.environ.get(RUN_ID_ENV) or wandb_agent_run_id()  # a W&B agent in a SLURM job: W&B's run id names the folder
        job = slurm_job_key()
        if job and not explicit and not env_id and not ckpt_path:
            return slurm_resume(slurm_run_id(job, command_fingerprint(argv), runs_root), runs_root, job, restart_count())
        model_class = plain(config.model).get("class_path") if config.get("model") else None
        return resume(str(ckpt_path) if ckpt_path else None, explicit, runs_root, env_id=env_id, model_class=model_class)

    @staticmethod
    def share_run_id(config) -> None:
        """Give the job's WandbLogger the run id that every DDP rank shares."""
        loggers = config.trainer.logger
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if getattr(logger, "class_path", "").endswith("WandbLogger"):
                init_args = logger.init_args
                if not (init_args.get("id") or init_args.get("version")):
                    init_args["id"] = job_run_id()

    def instantiate_classes(self) -> None:
        """An error raised in a model's or data module's ``__init__`` as one line: the class, then its message."""
        try:
            super().instantiate_classes()
        except Exception as err:
            cause = root_cause(err)
            if cause is err:
                raise
            if not isinstance(cause, (*input_errors(), MepsFault)):
                raise cause from None  # a bug: its own traceback, not jsonargparse's wrapper
            raise BadInput(f"{self.culprit(str(err))}{squeeze(cause)}") from cause

    def culprit(self, wrapper_message: str) -> str:
        """``"--data <class path>: "`` for an error jsonargparse reports under that subtype."""
        group = "data" if "LightningDataModule" in wrapper_message else "model" if "LightningModule" in wrapper_message else None
        config = self.config[self.subcommand] if self.subcommand else self.config
        class_path = plain(config.get(group)).get("class_path") if group and config.get(group) else None
        return f"--{group} {class_path}: " if class_path else (f"--{group}: " if group else "")

    def instantiate_trainer(self, **kwargs) -> Trainer:
        if self.subcommand:  # the model is built, nothing is written yet
            config = self.config[self.subcommand]
            require_trained_weights(self.subcommand, self.model, str(plain(config.model).get("class_path")), config.get("ckpt_path"))
        if self.log_file_progress is not None:
            config = self.config_init[self.subcommand] if self.subcommand else self.config_init
            kwargs.update(progress_for_a_log_file(config, self.log_file_progress))
        trainer = super().instantiate_trainer(**kwargs)
        self.created_folders = CreatedFolders.before_start(trainer)
        install_atomic_checkpoint_io(trainer)
        prepare_wandb_init(trainer)
        if callable(check := getattr(self.datamodule, "check_world_size", None)):
            check(trainer.world_size)  # before any process, W&B run or folder exists
        return trainer

    def before_fit(self) -> None:
        announce_wandb_mode()

    before_validate = before_test = before_predict = before_fit

    def after_fit(self) -> None:
        self.report_where_things_are()

    def report_where_things_are(self) -> None:
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        lines = []
        if any(isinstance(lg, WandbLogger) for lg in trainer.loggers) and (files := wandb_files_dir(trainer)) is not None:
            offline = os.environ.get("WANDB_MODE") == "offline"
            lines.append(f"W&B run: {files.resolve()}" + (f"  (offline: `wandb sync {files.resolve()}`)" if offline else ""))
        if (folder := run_dir(trainer)) is not None:
            lines.append(f"run folder (config.yaml, checkpoints/): {folder.resolve()}")
        # Lightning types it as any Checkpoint; its documented (and here the only) kind is ModelCheckpoint
        checkpoint_callback = cast(ModelCheckpoint | None, trainer.checkpoint_callback)
        if checkpoint_callback is not None and checkpoint_callback.best_model_path:
            lines.append(f"best checkpoint: {Path(checkpoint_callback.best_model_path).resolve()}")
        print("\n".join(lines), flush=True)


def failed_on_input_before_start(err: BaseException) -> bool:
    """A bad input (exit code 2) found before any loop started: the run produced nothing worth keeping."""
    line = one_line_error(err)
    return line is not None and line.exit_code == exit_codes.BAD_INPUT and not loop_started()


def check_checkpoint_fits(ckpt_path, model_config) -> None:
    """A ``--ckpt_path`` file must be a checkpoint of the model this command builds (class and settings)."""
    if not ckpt_path or str(ckpt_path) in LIGHTNING_CKPT_KEYWORDS or "://" in str(ckpt_path):
        return
    require_checkpoint_file(str(ckpt_path))
    problem = model_mismatch(read_checkpoint_metadata(ckpt_path), model_config)
    if problem:
        raise BadInput(f"--ckpt_path {str(ckpt_path)!r}: {problem}")


def progress_for_a_log_file(config, progress: type[Callback]) -> dict:
    """Lightning's progress bar in a terminal; in a log file (stdout not a TTY) a line every N steps instead
    (``progress``), unless the progress bar is off or the config names one of its own."""
    trainer = config.get("trainer") or {}
    callbacks = list(trainer.get("callbacks") or [])
    if trainer.get("enable_progress_bar") is False or sys.stdout.isatty() or any(isinstance(c, ProgressBar) for c in callbacks):
        return {}
    return {"callbacks": [*callbacks, progress()]}


def install_atomic_checkpoint_io(trainer: Trainer) -> None:
    """Atomic, fsynced checkpoint writes, unless the user configured a CheckpointIO of their own."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()

"""Entry point: `python train.py {fit,validate,test,predict} -c CONFIG.yaml [--key value ...]`.

LightningCLI in subclass mode: every model and data module of the project is chosen by
`class_path` in the config, networks and optimizers are injected through typed __init__
arguments, values that must agree between data and model are linked (C5).

Every run also gets (``trainer_defaults``): per-rank seeds, ``ResumableRun`` (RNG states of every
rank and the run id in each checkpoint, ``last.ckpt`` refreshed each epoch and at the end),
``NonFiniteGuard`` and ``BatchGuard``, ``Preemption`` (SIGTERM/SIGUSR1/Ctrl-C: a checkpoint of the step
reached, exit code 75), and atomic checkpoint writes (``AtomicCheckpointIO``).

Resuming (``runtime/resume.py``): ``fit --ckpt_path last`` continues the newest unfinished run of the
same model under the run folder root (or the one MEPS_RUN_ID / --trainer.logger.init_args.id names),
``--ckpt_path <file>`` the run stored in the checkpoint; inside a SLURM job the identical command
continues the run it started before a requeue. Same run folder, same W&B run. A checkpoint of another
model class or with other model settings is refused before anything is built.

From the command line every bad input (a typo in a config key, a value a model's ``__init__`` rejects,
a checkpoint that is not one) is one line ``error: ...`` naming the culprit, exit code 2, nothing
written; a detected fault (non-finite loss, bad batch) exit code 1; see ``runtime/exit_codes.py``.
``MEPS_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from jsonargparse import set_parsing_settings
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from callbacks.checkpoint_io import AtomicCheckpointIO
from callbacks.input_guard import BatchGuard
from callbacks.line_progress import LineProgress
from callbacks.nan_guard import NonFiniteGuard
from callbacks.preemption import Preemption
from callbacks.rank_seed import PerRankSeed
from callbacks.resilience import ResumableRun
from callbacks.wandb_run import (
    RUN_ID_ENV,
    WandbSaveConfigCallback,
    announce_wandb_mode,
    ensure_wandb_mode,
    job_run_id,
    run_dir,
    wandb_files_dir,
)
from runtime import exit_codes
from runtime.argument_errors import argument_error_line
from runtime.checkpoint_file import model_mismatch, plain, read_checkpoint_metadata
from runtime.errors import INPUT_ERRORS, BadInput, MepsFault, Preempted, mark_loop_started, one_line_error, root_cause, squeeze
from runtime.held_logs import HeldLogs
from runtime.quiet import quiet_known_noise
from runtime.resume import LIGHTNING_CKPT_KEYWORDS, Resume, require_checkpoint_file, resume, slurm_resume
from runtime.run_location import DEFAULT_ROOT_DIR, prepare_wandb_init, place_run_folders, wandb_logger_args
from runtime.run_status import command_fingerprint
from runtime.signals import stop_at_once
from runtime.slurm import restart_count, slurm_job_key, slurm_run_id

NETWORKS_SEEING_IMAGES = ("encoder", "decoder")
"""Injected networks (of the autoencoders) whose ``image_channels`` is linked from ``--data.init_args.channels``;
a model without them (the token models) is left alone by the link."""

HELP_FIRST = """{what} This project's options are --model and --data, each a class (with -c CONFIG they are
filled in; `--model.help lightning_modules.BinaryLatentAutoencoder`, `--model.help
lightning_modules.GammaARVM`, `--data.help datamodules.HFImageDataModule`, `--data.help
datamodules.LatentTokenDataModule` list a class's arguments). Experiments: configs/{{blae,vae,arvm}}/*.yaml,
built from configs/data/, configs/model/, configs/callbacks/; stack configs/presets/*.yaml with more -c.
`--print_config` prints the resolved config. Docs: README.md, docs/. Below: Lightning's Trainer options."""

DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.WandbLogger",
    "init_args": {"project": "meps-ldh", "save_dir": None},  # None: --trainer.default_root_dir (runtime/run_location.py)
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

    def __init__(self, *args, **kwargs) -> None:
        self.held_logs = HeldLogs()  # released once the classes are built: an input error is then the only line
        with self.held_logs:
            super().__init__(*args, **kwargs)

    def after_instantiate_classes(self) -> None:
        self.held_logs.release()

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")
        parser.link_arguments("data.init_args.channels", "model.init_args.channels")
        for network in NETWORKS_SEEING_IMAGES:  # the networks' image channels follow the data (one source)
            parser.link_arguments("data.init_args.channels", f"model.init_args.{network}.init_args.image_channels")

    def parse_arguments(self, parser, args) -> None:
        """Parse, then settle which run and checkpoint this command continues, before LightningCLI reads the
        checkpoint's hyper-parameters into the config (which would otherwise swap in another model)."""
        argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
        if given := next((arg for arg in argv if ".image_channels" in arg), None):
            parser.error(f"{given.split('=')[0]}: the networks' image channels follow --data.init_args.channels; set that instead")
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:
            self.settle_checkpoint(self.config[subcommand], subcommand, argv)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        share_autoencoder_path(config)
        place_run_folders(config)
        self.share_run_id(config)

    @classmethod
    def settle_checkpoint(cls, config, subcommand: str, argv: list[str]) -> None:
        """Resolve ``--ckpt_path`` to the run it continues and refuse a file that is not this command's model."""
        share_autoencoder_path(config)
        place_run_folders(config)
        loggers = wandb_logger_args(config) if subcommand == "fit" else []
        choice = cls.resolve_resume(config, loggers, argv) if loggers else Resume(None, config.get("ckpt_path"))
        check_checkpoint_fits(choice.ckpt_path, config.model)
        if choice.run_id is not None:
            for init_args in loggers:
                init_args["id"] = choice.run_id
            os.environ[RUN_ID_ENV] = choice.run_id  # DDP children inherit it
        config.ckpt_path = choice.ckpt_path
        if choice.message and _is_main_process():
            print(choice.message, file=sys.stderr, flush=True)

    @staticmethod
    def resolve_resume(config, loggers: list, argv: list[str]) -> Resume:
        """``fit``: the run id (so the run folder and the W&B run) and the checkpoint it goes on from."""
        explicit = next((str(a.get("id") or a.get("version")) for a in loggers if a.get("id") or a.get("version")), None)
        runs_root = Path(loggers[0].get("save_dir") or DEFAULT_ROOT_DIR) / str(loggers[0].get("project") or "lightning_logs")
        ckpt_path = config.get("ckpt_path")
        env_id = os.environ.get(RUN_ID_ENV)
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
            if not isinstance(cause, (*INPUT_ERRORS, MepsFault)):
                raise cause from None  # a bug: its own traceback, not jsonargparse's wrapper
            raise BadInput(f"{self.culprit(str(err))}{squeeze(cause)}") from cause

    def culprit(self, wrapper_message: str) -> str:
        """``"--data datamodules.HFImageDataModule: "`` for an error jsonargparse reports under that subtype."""
        group = "data" if "LightningDataModule" in wrapper_message else "model" if "LightningModule" in wrapper_message else None
        config = self.config[self.subcommand] if self.subcommand else self.config
        class_path = plain(config.get(group)).get("class_path") if group and config.get(group) else None
        return f"--{group} {class_path}: " if class_path else (f"--{group}: " if group else "")

    def instantiate_trainer(self, **kwargs) -> Trainer:
        kwargs.update(progress_for_a_log_file(self.config_init[self.subcommand] if self.subcommand else self.config_init))
        trainer = super().instantiate_trainer(**kwargs)
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
        if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path:
            lines.append(f"best checkpoint: {Path(trainer.checkpoint_callback.best_model_path).resolve()}")
        print("\n".join(lines), flush=True)


def main(args: ArgsType = None, run: bool = True) -> MepsCLI:
    ensure_wandb_mode(announce=False)
    quiet_known_noise()
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    return MepsCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=WandbSaveConfigCallback,
        parser_class=MepsArgumentParser,
        parser_kwargs={"parser_mode": "omegaconf+", **{
            subcommand: {"description": HELP_FIRST.format(what=f"`train.py {subcommand}`: {what}"),
                         "usage": f"train.py {subcommand} -c CONFIG [-c PRESET ...] [--KEY VALUE ...]"}
            for subcommand, what in SUBCOMMAND_SUMMARY.items()}},
        seed_everything_default=1234,
        auto_configure_optimizers=False,
        trainer_defaults={
            "logger": DEFAULT_LOGGER,
            "default_root_dir": DEFAULT_ROOT_DIR,
            "callbacks": [PerRankSeed(), ResumableRun(), NonFiniteGuard(), BatchGuard(), Preemption()],
        },
        args=args,
        run=run,
    )


SUBCOMMAND_SUMMARY = {
    "fit": "train a model (BL-AE, VAE, neural γ-ARVM).",
    "validate": "measure a model on the validation split (the kernel γ-ARVM's run: nothing to train).",
    "test": "measure a model on the test split.",
    "predict": "sample a token model (samples.npz, samples.png).",
}


def check_checkpoint_fits(ckpt_path, model_config) -> None:
    """A ``--ckpt_path`` file must be a checkpoint of the model this command builds (class and settings)."""
    if not ckpt_path or str(ckpt_path) in LIGHTNING_CKPT_KEYWORDS or "://" in str(ckpt_path):
        return
    require_checkpoint_file(str(ckpt_path))
    problem = model_mismatch(read_checkpoint_metadata(ckpt_path), model_config)
    if problem:
        raise BadInput(f"--ckpt_path {str(ckpt_path)!r}: {problem}")


def progress_for_a_log_file(config) -> dict:
    """Lightning's progress bar in a terminal; in a log file (stdout not a TTY) a line every N steps instead
    (``callbacks/line_progress.py``), unless the progress bar is off or the config names one of its own."""
    trainer = config.get("trainer") or {}
    callbacks = list(trainer.get("callbacks") or [])
    if trainer.get("enable_progress_bar") is False or sys.stdout.isatty() or any(isinstance(c, ProgressBar) for c in callbacks):
        return {}
    return {"callbacks": [*callbacks, LineProgress()]}


def install_atomic_checkpoint_io(trainer: Trainer) -> None:
    """Atomic, fsynced checkpoint writes, unless the user configured a CheckpointIO of their own."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def _is_main_process() -> bool:
    return all(os.environ.get(var, "0") == "0" for var in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"))


def resume_command(argv: list[str], script: str = "train.py") -> str:
    """The command that continues a stopped run: the same one with ``--ckpt_path last``."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join(["python", script, *kept, "--ckpt_path", "last"])


_STOPPED_FOR_RESUME = False
"""Set when this process stopped on a stop request, with the checkpoint saved: its launcher may exit before it."""


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
            if os.getppid() != parent and _STOPPED_FOR_RESUME:
                os._exit(exit_codes.OK)  # rank 0 saved, said so and left first; this rank is only finishing its exit
            if os.getppid() != parent:
                print(f"error: rank {os.environ.get('RANK', os.environ['LOCAL_RANK'])}: the process that launched it"
                      f" (pid {parent}) is gone, stopping this rank too", file=sys.stderr, flush=True)
                os._exit(1)

    threading.Thread(target=watch, name="launcher-watchdog", daemon=True).start()


def console_main(argv: list[str] | None = None) -> int:
    """``python train.py ...``: like ``main``, but every bad input, fault or stop request ends in one or two lines."""
    stop_when_launcher_dies()
    mark_loop_started(False)
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    main_process = _is_main_process()
    try:
        with stop_at_once():
            main(None if from_command_line else argv)  # None: LightningCLI reads sys.argv itself
    except Preempted as stop:
        global _STOPPED_FOR_RESUME
        _STOPPED_FOR_RESUME = True
        if main_process:
            print(f"{stop} (exit code {exit_codes.RESUMABLE}: resumable)\nto resume: {resume_command(argv)}",
                  file=sys.stderr, flush=True)
        return stop.exit_code
    except (KeyboardInterrupt, SystemExit) as stop:
        interrupted = isinstance(stop, KeyboardInterrupt) or isinstance(stop.__context__, KeyboardInterrupt)
        if not interrupted:
            raise  # --help, --print_config
        if main_process:
            print(f"stopped at once by a second Ctrl-C: last.ckpt holds the last step saved before it\n"
                  f"to resume: {resume_command(argv)}", file=sys.stderr, flush=True)
        return exit_codes.ABORTED
    except Exception as err:
        line = None if os.environ.get("MEPS_DEBUG") else one_line_error(err)
        if line is None:
            raise
        print(f"error: {line.message}  [MEPS_DEBUG=1 shows the traceback]", file=sys.stderr, flush=True)
        return line.exit_code
    return exit_codes.OK


if __name__ == "__main__":
    code = console_main()
    if _STOPPED_FOR_RESUME:
        exit_codes.exit_now(code)
    sys.exit(code)

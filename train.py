"""Entry point: `python train.py {fit,validate,test,predict} -c CONFIG.yaml [--key value ...]`.

LightningCLI in subclass mode (``runtime/cli.py``): every model and data module of the project is
chosen by ``class_path`` in the config, networks and optimizers are injected through typed __init__
arguments, and values that must agree between data and model are linked.

Every run also gets: per-rank seeds, ``ResumableRun`` (RNG states of every rank and the run id in
each checkpoint, ``last.ckpt`` kept current), ``NonFiniteGuard`` and ``BatchGuard``, ``Preemption``
(SIGTERM/SIGUSR1/Ctrl-C: a checkpoint of the step reached, exit code 75), and atomic checkpoint
writes. ``fit --ckpt_path last`` continues the newest unfinished run of the same model; inside a
SLURM job the identical command continues the run it started before a requeue (docs/reliability.md).

From the command line every bad input is one line ``error: ...`` naming the culprit, exit code 2,
nothing written; a detected fault exit code 1 (``runtime/exit_codes.py``). ``MEPS_DEBUG=1`` shows
the traceback instead.
"""
from __future__ import annotations

from jsonargparse import set_parsing_settings
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import ArgsType

from callbacks.input_guard import BatchGuard
from callbacks.line_progress import LineProgress
from callbacks.nan_guard import NonFiniteGuard
from callbacks.preemption import Preemption
from callbacks.rank_seed import PerRankSeed
from callbacks.resumable_run import ResumableRun
from runtime.cli import DEFAULT_LOGGER, MepsArgumentParser, MepsCLI, help_first
from runtime.console import exit_with, run_command
from runtime.quiet import quiet_known_noise
from runtime.run_location import DEFAULT_ROOT_DIR
from runtime.wandb_run import WandbSaveConfigCallback, ensure_wandb_mode


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
        parser_kwargs={"parser_mode": "omegaconf+", **help_first()},
        seed_everything_default=1234,
        auto_configure_optimizers=False,
        trainer_defaults={
            "logger": DEFAULT_LOGGER,
            "default_root_dir": DEFAULT_ROOT_DIR,
            "callbacks": [PerRankSeed(), ResumableRun(), NonFiniteGuard(), BatchGuard(), Preemption()],
        },
        args=args,
        run=run,
        log_file_progress=LineProgress,
    )


def console_main(argv: list[str] | None = None) -> int:
    """``python train.py ...``: like ``main``, but every bad input, fault or stop request ends in one or two lines."""
    return run_command(lambda args: main(args), argv)  # looked up at call time: tests replace ``main``


if __name__ == "__main__":
    exit_with(console_main())

"""Entry point: `python train.py {fit,validate,test,predict} -c CONFIG.yaml [--key value ...]`.

LightningCLI in subclass mode (``runtime/cli.py``): every model and data module of the project is
chosen by ``class_path`` in the config, networks and optimizers are injected through typed __init__
arguments, and values that must agree between data and model are linked (``LINKS``). The help text and
the links name the project's classes here, so that ``runtime/`` names none.

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

from typing import TYPE_CHECKING

from runtime.console import exit_with, run_command  # imports no Lightning: a Ctrl-C while the rest imports is one line

if TYPE_CHECKING:
    from lightning.pytorch.cli import ArgsType

    from runtime.cli import MepsCLI

HELP_INTRO = """{what} This project's options are --model and --data, each a class (with -c CONFIG they are
filled in; `--model.help lightning_modules.BinaryLatentAutoencoder`, `--model.help
lightning_modules.GammaARVM`, `--data.help datamodules.HFImageDataModule`, `--data.help
datamodules.LatentTokenDataModule` list a class's arguments). Experiments: configs/{{blae,vae,arvm}}/*.yaml,
built from configs/data/, configs/model/, configs/callbacks/; stack configs/presets/*.yaml with more -c.
`--print_config` prints the resolved config. Docs: README.md, docs/. Below: Lightning's Trainer options."""
SUBCOMMANDS = {
    "fit": "train a model (BL-AE, VAE, neural γ-ARVM).",
    "validate": "measure a trained model (--ckpt_path) on the validation split; the kernel γ-ARVM needs no checkpoint.",
    "test": "measure a trained model (--ckpt_path) on the test split.",
    "predict": "sample a trained token model (--ckpt_path; the kernel γ-ARVM needs none): samples.npz, samples.png.",
}
LINKS = {  # target: source; what data and model must agree on has one source, the data
    "model.init_args.image_size": "data.init_args.image_size",
    "model.init_args.channels": "data.init_args.channels",
    **{f"model.init_args.{network}.init_args.image_channels": "data.init_args.channels" for network in ("encoder", "decoder")},
}
SHARED_INIT_ARGS = {"autoencoder": "the tokens and the decoder must come from the same BL-AE"}  # a token model's BL-AE


def main(args: ArgsType = None, run: bool = True) -> MepsCLI:
    # imported here, under run_command's stop handling: Lightning's import alone takes seconds
    from jsonargparse import set_parsing_settings
    from lightning.pytorch import LightningDataModule, LightningModule

    from callbacks.run.input_guard import BatchGuard
    from callbacks.run.line_progress import LineProgress
    from callbacks.run.nan_guard import NonFiniteGuard
    from callbacks.run.preemption import Preemption
    from callbacks.run.rank_seed import PerRankSeed
    from callbacks.run.resumable_run import ResumableRun
    from runtime.cli import DEFAULT_LOGGER, MepsArgumentParser, MepsCLI, help_first
    from runtime.quiet import quiet_known_noise
    from runtime.run_location import DEFAULT_ROOT_DIR
    from runtime.wandb_config import WandbSaveConfigCallback

    quiet_known_noise()
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    return MepsCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=WandbSaveConfigCallback,
        parser_class=MepsArgumentParser,
        parser_kwargs={"parser_mode": "omegaconf+", **help_first(HELP_INTRO, SUBCOMMANDS)},
        seed_everything_default=1234,
        auto_configure_optimizers=False,
        trainer_defaults={
            "logger": DEFAULT_LOGGER,
            "default_root_dir": DEFAULT_ROOT_DIR,
            "callbacks": [PerRankSeed(), ResumableRun(), NonFiniteGuard(), BatchGuard(), Preemption()],
        },
        args=args,
        run=run,
        links=LINKS,
        shared_init_args=SHARED_INIT_ARGS,
        log_file_progress=LineProgress,
    )


def console_main(argv: list[str] | None = None) -> int:
    """``python train.py ...``: like ``main``, but every bad input, fault or stop request ends in one or two lines."""
    return run_command(lambda args: main(args), argv)  # looked up at call time: tests replace ``main``


if __name__ == "__main__":
    exit_with(console_main())

"""Entry point: `python train.py {fit,validate,test,predict} -c CONFIG.yaml [--key value ...]`.

LightningCLI in subclass mode: every model and data module of the project is chosen by
`class_path` in the config, networks and optimizers are injected through typed __init__
arguments, values that must agree between data and model are linked (C5).
"""
from __future__ import annotations


from jsonargparse import set_parsing_settings
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.loggers import WandbLogger

from callbacks.rank_seed import PerRankSeed
from callbacks.wandb_run import WandbSaveConfigCallback, ensure_wandb_mode, job_run_id, run_dir, wandb_files_dir

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
        self.share_run_id(config)

    @staticmethod
    def share_run_id(config) -> None:
        """Give the job's WandbLogger the run id that every DDP rank shares."""
        loggers = config.trainer.logger
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if getattr(logger, "class_path", "").endswith("WandbLogger"):
                init_args = logger.init_args
                if not (init_args.get("id") or init_args.get("version")):
                    init_args["id"] = job_run_id()

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
        trainer_defaults={"logger": DEFAULT_LOGGER, "default_root_dir": "outputs", "callbacks": [PerRankSeed()]},
        args=args,
        run=run,
    )


if __name__ == "__main__":
    main()

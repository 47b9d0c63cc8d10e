"""Inputs a new user gets wrong, through `train.py` and `sweep.py` as typed on the command line: each is one short
line that names the culprit first (``did you mean`` where it applies), exit code 2, and nothing is written."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

import sweep
import train
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, REPO_ROOT, command_in_process

VAE_CONFIG = str(REPO_ROOT / "configs" / "vae" / "digits.yaml")
ARVM_CONFIG = str(REPO_ROOT / "configs" / "arvm" / "digits.yaml")
SWEEP_CONFIG = str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml")
QUICK = ["-c", DEBUG_PRESET, "--trainer.enable_model_summary", "false"]
NARROW = ["--model.init_args.encoder.init_args.width", "32", "--model.init_args.decoder.init_args.width", "32"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Real checkpoints: a BL-AE, a narrower BL-AE (another shape) and a VAE, each from a 4-step run."""
    root = tmp_path_factory.mktemp("checkpoints")
    made = {}
    for name, args in {"blae": ["-c", DIGITS_CONFIG], "narrow": ["-c", DIGITS_CONFIG, *NARROW], "vae": ["-c", VAE_CONFIG]}.items():
        train.main(["fit", *args, *QUICK, "--trainer.logger", "false", "--trainer.default_root_dir", str(root / name)])
        made[name] = str(next((root / name).rglob("last.ckpt")))
    return made


@pytest.fixture
def cli(tmp_path, monkeypatch, capfd):
    """A command run the way a shell runs it, in an empty folder: (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    for var in ("MEPS_DEBUG", "MEPS_RUN_ID"):
        monkeypatch.delenv(var, raising=False)

    def run(entry, args: list[str]) -> tuple[int, str]:
        return command_in_process(entry, args, capfd)

    return run


def assert_one_line(err: str, starts_with: str, *says: str, limit: int = 320) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith(f"error: {starts_with}"), lines[0]
    assert all(part in lines[0] for part in says), lines[0]
    assert len(lines[0]) <= limit and "usage:" not in err and "Traceback" not in err


def assert_nothing_written(folder: Path) -> None:
    assert not (folder / "outputs").exists(), sorted(str(p) for p in (folder / "outputs").rglob("*"))
    assert not list(folder.rglob("offline-run-*")) and not list(folder.rglob("*.ckpt"))


BLAE = ["fit", "-c", DIGITS_CONFIG, *QUICK]


@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_ckpt_path_at_a_text_file(cli, tmp_path, subcommand):
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    code, err = cli(train.console_main, [subcommand, "-c", DIGITS_CONFIG, *QUICK, "--ckpt_path", "notes.txt"])
    assert code == 2
    assert_one_line(err, "--ckpt_path 'notes.txt' is not a PyTorch checkpoint")
    assert_nothing_written(tmp_path)


def test_a_checkpoint_of_another_model_class_is_refused(cli, checkpoints, tmp_path):
    code, err = cli(train.console_main, [*BLAE, "--ckpt_path", checkpoints["vae"]])
    assert code == 2  # LightningCLI alone would train a VAE from it, under the VAE's run id, and exit 0
    assert_one_line(
        err,
        f"--ckpt_path {checkpoints['vae']!r}: it is a checkpoint of lightning_modules.GaussianVAE",
        "this command builds lightning_modules.BinaryLatentAutoencoder",
        limit=400,
    )
    code, err = cli(train.console_main, ["validate", "-c", DIGITS_CONFIG, *QUICK, "--ckpt_path", checkpoints["vae"]])
    assert code == 2 and "GaussianVAE" in err
    assert_nothing_written(tmp_path)


def test_a_checkpoint_of_another_shape_is_refused_and_its_own_shape_resumes(cli, checkpoints, tmp_path):
    code, err = cli(train.console_main, [*BLAE, "--ckpt_path", checkpoints["narrow"]])
    assert code == 2
    assert_one_line(
        err,
        f"--ckpt_path {checkpoints['narrow']!r}: it was trained with other settings",
        "model.init_args.encoder.init_args.width=32 in the checkpoint, 64 in this command",
        limit=500,
    )
    assert_nothing_written(tmp_path)
    code, err = cli(train.console_main, [*BLAE, *NARROW, "--trainer.logger", "false", "--ckpt_path", checkpoints["narrow"]])
    assert code == 0, err[-3000:]  # the same settings: the check lets it through


@pytest.mark.parametrize(
    "args, culprit, says",
    [
        (
            ["--model.init_args.latnt_penalty", "1"],
            "--model.init_args.latnt_penalty:",
            ("BinaryLatentAutoencoder has no argument 'latnt_penalty'", "did you mean 'latent_penalty'?"),
        ),
        (
            ["--model.init_args.encoder.init_args.widht", "64"],
            "--model.init_args.encoder.init_args.widht:",
            ("PatchMLPEncoder has no argument 'widht'", "did you mean 'width'?"),
        ),
        (["--data.init_args.batchsize", "16"], "--data.init_args.batchsize:", ("did you mean 'batch_size'?",)),
        (["--trainr.max_steps", "1"], "--trainr.max_steps: no such option", ("did you mean '--trainer.max_steps'?",)),
    ],
)
def test_a_typo_in_a_config_key_is_one_line_with_a_suggestion(cli, tmp_path, args, culprit, says):
    code, err = cli(train.console_main, [*BLAE, *args])
    assert code == 2
    assert_one_line(err, culprit, *says)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    "args, culprit, says",
    [
        (
            ["fit", "-c", DIGITS_CONFIG, "--model", "lightning_modules.BinaryLatentAutoencodr"],
            "--model: lightning_modules.BinaryLatentAutoencodr does not exist",
            ("did you mean 'BinaryLatentAutoencoder'?",),
        ),
        (["-c", DIGITS_CONFIG, "fit"], f"-c {DIGITS_CONFIG} comes before the subcommand", (f"`train.py fit -c {DIGITS_CONFIG} ...`",)),
        (["fit"], "fit.data, fit.model required", ("train.py fit -c configs/blae/digits.yaml",)),
        ([*BLAE, "--ckpt_path", "best"], "--ckpt_path best only means something to a Trainer that has fitted already", ()),
    ],
)
def test_other_first_day_mistakes(cli, tmp_path, args, culprit, says):
    code, err = cli(train.console_main, args)
    assert code == 2
    assert_one_line(err, culprit, *says, limit=400)
    assert_nothing_written(tmp_path)


def test_a_typo_inside_a_config_file_names_the_file_and_the_key(cli, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  init_args:\n    latent_penalty: 0.0\n    straight_through_from_stp: 100\n")
    code, err = cli(train.console_main, [*BLAE, "-c", str(config)])
    assert code == 2
    assert_one_line(err, f"{config}: model.init_args.straight_through_from_stp", "did you mean 'straight_through_from_step'?")


def test_a_config_file_that_is_not_yaml_is_named_with_the_line_and_column(cli, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("trainer:\n  max_steps: 3\n  callbacks: [a, b\nmodel: {}\n")  # an unclosed list
    code, err = cli(train.console_main, [*BLAE, "-c", str(config)])
    assert code == 2  # jsonargparse named "<unicode string>", the text it parsed, instead of the file
    assert_one_line(err, f"{config}: not valid YAML at line 4, column 6:", "(while parsing a flow sequence at line 3, column 14)")
    assert_nothing_written(tmp_path)


def test_a_file_named_inside_a_config_that_is_not_yaml_is_named(cli, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "experiments").mkdir()
    (tmp_path / "data" / "digits.yaml").write_text("class_path: datamodules.HFImageDataModule\ninit_args:\n\tbatch_size: 8\n")
    config = tmp_path / "experiments" / "mine.yaml"
    config.write_text(f"data: ../data/digits.yaml\nmodel: {REPO_ROOT / 'configs' / 'model' / 'blae_digits.yaml'}\n")
    code, err = cli(train.console_main, ["fit", "-c", str(config), *QUICK])
    assert code == 2
    assert_one_line(err, f"{tmp_path / 'data' / 'digits.yaml'}: not valid YAML at line 3, column 1:", "'\\t'")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    "args, culprit, says",
    [
        (["--data.init_args.batch_size", "0"], "--data datamodules.HFImageDataModule: batch_size must be >= 1, got 0", ()),
        (
            ["--model.init_args.decoder.init_args.latent_channels", "5"],
            "--model lightning_modules.BinaryLatentAutoencoder:",
            ("encoder latent_channels=6 != decoder latent_channels=5",),
        ),
    ],
)
def test_an_error_in_an_init_is_the_class_then_its_message(cli, tmp_path, args, culprit, says):
    code, err = cli(train.console_main, [*BLAE, *args])
    assert code == 2
    assert_one_line(err, culprit, *says, limit=200)  # was a 700-1,000 character line of parser noise
    assert_nothing_written(tmp_path)


def test_gamma_larger_than_the_grid_is_refused(cli, checkpoints, tmp_path):
    code, err = cli(
        train.console_main,
        [
            "fit",
            "-c",
            ARVM_CONFIG,
            *QUICK,
            "--data.init_args.autoencoder",
            checkpoints["blae"],
            "--data.init_args.token_cache_dir",
            str(tmp_path / "tokens"),
            "--model.init_args.gamma",
            "50",
        ],
    )
    assert code == 2
    assert_one_line(err, "--model lightning_modules.GammaARVM: gamma=50 is larger than the 8x8 token grid", "use gamma=global")
    assert_nothing_written(tmp_path)


def test_ddp_with_an_indivisible_batch_is_one_line_and_no_run(cli, tmp_path):
    code, err = cli(train.console_main, [*BLAE, "--trainer.accelerator", "cpu", "--trainer.devices", "3", "--trainer.strategy", "ddp"])
    assert code == 2  # refused in the launching process: no rank started, so it is said once
    assert_one_line(err, "batch_size=32 is the global batch and must be divisible by world_size=3")
    assert_nothing_written(tmp_path)
    assert "LOCAL_RANK" not in os.environ


def test_ckpt_path_last_with_nothing_to_resume(cli, tmp_path):
    code, err = cli(train.console_main, [*BLAE, "--ckpt_path", "last"])
    assert code == 2
    assert_one_line(err, "--ckpt_path last: no unfinished run of lightning_modules.BinaryLatentAutoencoder", limit=400)


def sweep_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["-c", SWEEP_CONFIG, "--out_dir", str(tmp_path / "sweep"), *extra]


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--gammas", "[]"], "--gammas is empty"),
        (["--gammas", "[1, 1]"], "--gammas lists γ=1 twice"),
        (["--gammas", "[2, global, none]"], "--gammas lists γ=global twice"),
        (["--gammas", "[0]"], "--gammas 0: expected a list of γ, each an integer >= 1"),
    ],
)
def test_sweep_gammas_that_cannot_mean_what_they_say(cli, tmp_path, extra, says):
    code, err = cli(sweep.console_main, sweep_args(tmp_path, *extra))
    assert code == 2
    assert_one_line(err, says)
    assert not (tmp_path / "sweep").exists()


def test_sweep_out_dir_at_a_file(cli, tmp_path):
    (tmp_path / "taken").write_text("a file")
    code, err = cli(sweep.console_main, ["-c", SWEEP_CONFIG, "--out_dir", str(tmp_path / "taken")])
    assert code == 2
    assert_one_line(err, f"--out_dir {tmp_path / 'taken'}: cannot write there ({tmp_path / 'taken'} is a file, not a folder)")
    code, err = cli(sweep.console_main, ["-c", SWEEP_CONFIG, "--out_dir", str(tmp_path / "taken" / "sub")])
    assert code == 2 and "is a file, not a folder" in err
    assert (tmp_path / "taken").read_text() == "a file"


def test_max_train_samples_larger_than_the_dataset_says_so():
    from datamodules import HFImageDataModule

    datamodule = HFImageDataModule(max_train_samples=5000)
    with pytest.warns(
        UserWarning,
        match=r"max_train_samples=5000 but split 'train' of sklearn-digits has 1617 training"
        r" images .*: training on all 1617",
    ):
        datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.dataset("train")) == 1617
    quiet = HFImageDataModule(max_train_samples=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a limit the data can meet is no news
        quiet.prepare_data()
    quiet.setup("fit")
    assert len(quiet.images_uint8()) == 100

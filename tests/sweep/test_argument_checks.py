"""Every sweep argument is checked before the first cell starts: a value a user can get wrong (a type, a range,
a name of a model or γ, a size, a path, a value listed twice, an empty list) is one `error:` line naming the
flag and the value, exit code 2, nothing written: no sweep folder, no cell started."""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path

import pytest

import sweep
from sweep.argument_checks import check_overrides, check_sweep_settings
from sweep.arguments import build_parser
from sweep.cells import Cell, DataOverrides, TrainerOverrides
from sweep.records import missing_promise
from tests.helpers import REPO_ROOT, command_in_process

SWEEP_CONFIG = str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml")
DEBUG = "[MEPS_DEBUG=1 shows the traceback]"


@pytest.fixture
def cli(tmp_path, monkeypatch, capfd):
    """sweep.py -c configs/sweeps/digits.yaml ARGS as a shell runs it, in an empty folder: (exit code, stderr lines).

    The run fails the test if the sweep gets as far as running its plan."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("WANDB_DIR", str(cwd))
    monkeypatch.delenv("MEPS_DEBUG", raising=False)
    monkeypatch.setattr(sweep.Sweep, "__call__", lambda self: pytest.fail("the sweep started: the bad value got through"))

    def run(args: list[str]) -> tuple[int, list[str]]:
        code, err = command_in_process(sweep.console_main, ["-c", SWEEP_CONFIG, "--out_dir", str(cwd / "s"), *args], capfd)
        lines = [line for line in err.splitlines() if line.strip()]
        assert sorted(p.name for p in cwd.iterdir()) == [], "the sweep wrote something"
        return code, lines

    return run


GAMMAS = "an integer >= 1 or global"
BETAS = "a list of KL weights β, each a finite number >= 0, or null (the VAE config's own)"
DEVICES = "an integer >= 1, -1 (every device), or a string such as auto or '0,1'"
CASES = [
    # the cases of issue 22
    (["--threads", "-1"], "--threads -1: expected an integer >= 1 (torch threads per cell) or null (torch's choice)"),
    (
        ["--train_sizes", "[0]"],
        "--train_sizes 0: expected a list of training-set sizes, integers >= 1 or null (the whole training split), got [0]",
    ),
    (
        ["--spread_cells", "[neural-9]"],
        "--spread_cells neural-9: γ=9 is not one of --gammas [1, 2, global]: a spread cell repeats a main cell at other seeds",
    ),
    (["--gammas", "abc"], f"--gammas abc: expected a list of γ, each {GAMMAS}, e.g. --gammas '[1, 2, global]'"),
    (
        ["--trainer.check_val_every_n_epoch", "1"],
        "--trainer.check_val_every_n_epoch: the sweep's --trainer takes max_steps, max_epochs, accelerator, devices, num_nodes,"
        " strategy, precision; give any other train.py option to a stage: --blae.args+=--trainer.check_val_every_n_epoch=1"
        " (or --vae.args+=, --kernel.args+=, --neural.args+=)",
    ),
    # types
    (["--threads", "abc"], "--threads abc: expected an integer >= 1 (torch threads per cell) or null (torch's choice)"),
    (["--threads", "0"], "--threads 0: expected an integer >= 1 (torch threads per cell) or null (torch's choice)"),
    (["--workers", "two"], "--workers two: expected an integer >= 1 (cells run side by side)"),
    (["--workers", "0"], "--workers 0: expected an integer >= 1 (cells run side by side)"),
    (["--spread_seeds", "[a]"], "--spread_seeds [a]: expected a list of seeds, integers from 0 to 4294967295"),
    (
        ["--train_sizes", "[1.5]"],
        "--train_sizes [1.5]: expected a list of training-set sizes, integers >= 1 or null (the whole training split)",
    ),
    (["--vae_betas", "abc"], f"--vae_betas abc: expected {BETAS}"),
    (["--vae_betas", "[true]"], f"--vae_betas [true]: expected {BETAS}"),
    (["--gammas", "[1.5]"], f"--gammas [1.5]: expected a list of γ, each {GAMMAS}, e.g. --gammas '[1, 2, global]'"),
    (["--trainer.max_steps", "x"], "--trainer.max_steps x: expected an integer >= 1, or -1 (no limit)"),
    (["--data.image_size", "x"], "--data.image_size x: expected an integer >= 1 (pixels)"),
    (
        ["--phase_args", "{kernel: 3}"],
        "--phase_args {kernel: 3}: expected a mapping of token models (kernel, neural) to lists of train.py arguments,"
        " e.g. --phase_args '{kernel: [-c, configs/presets/memorization_only.yaml]}'",
    ),
    (["--no_such_flag", "1"], "--no_such_flag: no such option"),
    (["--gamas", "[1]"], "--gamas: no such option; did you mean '--gammas'?"),
    # ranges
    (["--gammas", "[0, 2]"], f"--gammas 0: expected a list of γ, each {GAMMAS}, e.g. --gammas '[1, 2, global]', got [0, 2]"),
    (["--gammas", "[1, wide]"], f"--gammas wide: expected a list of γ, each {GAMMAS}, e.g. --gammas '[1, 2, global]', got [1, wide]"),
    (
        ["--train_sizes", "[100, -5]"],
        "--train_sizes -5: expected a list of training-set sizes, integers >= 1 or null (the whole training split), got [100, -5]",
    ),
    (["--spread_seeds", "[-1]"], "--spread_seeds -1: expected a list of seeds, integers from 0 to 4294967295, got [-1]"),
    (["--trainer.max_steps", "0"], "--trainer.max_steps 0: expected an integer >= 1, or -1 (no limit)"),
    (["--trainer.max_epochs", "-2"], "--trainer.max_epochs -2: expected an integer >= 1, or -1 (no limit)"),
    (["--trainer.devices", "0"], f"--trainer.devices 0: expected {DEVICES}"),
    (["--trainer.devices", "-2"], f"--trainer.devices -2: expected {DEVICES}"),  # not a line about --workers
    (["--trainer.devices", "abc"], f"--trainer.devices abc: expected {DEVICES}"),
    (["--trainer.devices", "0,x", "--workers", "1"], f"--trainer.devices 0,x: expected {DEVICES}"),
    (["--vae_betas", "[-1]"], f"--vae_betas -1: expected {BETAS}, got [-1]"),
    (["--vae_betas", "[0.5, .inf]"], f"--vae_betas inf: expected {BETAS}, got [0.5, inf]"),
    (
        ["--blae_noises", "[0.3, 0]"],
        "--blae_noises 0: expected a list of training noise rates, each a finite number > 0, got [0.3, 0]",
    ),
    (["--trainer.num_nodes", "0"], "--trainer.num_nodes 0: expected an integer >= 1"),
    (["--data.image_size", "0"], "--data.image_size 0: expected an integer >= 1 (pixels)"),
    (["--data.channels", "0"], "--data.channels 0: expected an integer >= 1"),
    (["--data.max_train_samples", "0"], "--data.max_train_samples 0: expected an integer >= 1 or null (the whole training split)"),
    # names of cells, models and γ
    (
        ["--spread_cells", "[vae-global]"],
        "--spread_cells vae-global: expected a list of main cells <model>-<γ>, model one of kernel, neural, e.g. [neural-global]",
    ),
    (
        ["--spread_cells", "[neural]"],
        "--spread_cells neural: expected a list of main cells <model>-<γ>, model one of kernel, neural, e.g. [neural-global]",
    ),
    (["--spread_cells", "[neural-x]"], f"--spread_cells neural-x: γ 'x' is not {GAMMAS}"),
    (["--phase_models", "[kernal]"], "--phase_models kernal: expected a list of token models (kernel, neural), got [kernal]"),
    (["--probe_models", "[vae]"], "--probe_models vae: expected a list of token models (kernel, neural), got [vae]"),
    (
        ["--phase_args", "{kernal: [-c, configs/presets/memorization_only.yaml]}"],
        "--phase_args kernal: expected a mapping of token models (kernel, neural) to lists of train.py arguments,"
        " e.g. --phase_args '{kernel: [-c, configs/presets/memorization_only.yaml]}'",
    ),
    # values listed twice (one cell name each), empty lists
    (["--gammas", "[1, 1]"], "--gammas lists γ=1 twice ([1, 1]): each γ is one cell of the sweep, list it once"),
    (["--gammas", "[global, inf]"], "--gammas lists γ=global twice ([global, inf]): each γ is one cell of the sweep, list it once"),
    (["--gammas", "[]"], "--gammas is empty: a sweep needs at least one γ, e.g. --gammas '[1, 2, global]'"),
    (["--train_sizes", "[300, 300]"], "--train_sizes lists 300 twice ([300, 300]): each value is one cell of the sweep, list it once"),
    (["--train_sizes", "[null, null]"], "--train_sizes lists null twice ([null, null]): each value is one cell of the sweep, list it once"),
    (["--spread_seeds", "[2, 2]"], "--spread_seeds lists 2 twice ([2, 2]): each value is one cell of the sweep, list it once"),
    (
        ["--spread_cells", "[neural-global, neural-global]"],
        "--spread_cells lists neural-global twice ([neural-global, neural-global]): each value is one cell of the sweep, list it once",
    ),
    (
        ["--phase_models", "[kernel, kernel]"],
        "--phase_models lists kernel twice ([kernel, kernel]): each value is one cell of the sweep, list it once",
    ),
    (["--vae_betas", "[]"], "--vae_betas is empty: give at least one β, or null for the VAE config's own"),
    (["--vae_betas", "[0.3, 0.3]"], "--vae_betas lists 0.3 twice ([0.3, 0.3]): each value is one cell of the sweep, list it once"),
    # one cell in two spellings (its cells are named by the γ parsed)
    (
        ["--spread_cells", "[neural-global, neural-inf]"],
        "--spread_cells lists neural-global twice, as neural-global and neural-inf ([neural-global, neural-inf]):"
        " each value is one cell of the sweep, list it once",
    ),
    (
        ["--spread_cells", "[neural-2, neural-02]"],
        "--spread_cells lists neural-2 twice, as neural-2 and neural-02 ([neural-2, neural-02]):"
        " each value is one cell of the sweep, list it once",
    ),
    (
        ["--spread_cells", "[kernel-none, kernel-global]"],
        "--spread_cells lists kernel-global twice, as kernel-none and kernel-global ([kernel-none, kernel-global]):"
        " each value is one cell of the sweep, list it once",
    ),
    # paths
    (["-c", "nope.yaml"], "-c nope.yaml: no such file"),
    (["--blae.config", "nope.yaml"], "--blae.config nope.yaml: no such file"),
    (["--neural.args+=-c", "--neural.args+=nope.yaml"], "--neural.args: -c nope.yaml: no such file"),
    (["--config=nope.yaml"], "-c nope.yaml: no such file"),  # not the -c file before it
    (["--blae.args+=--config=nope.yaml"], "--blae.args: --config nope.yaml: no such file"),
    (["--blae.args+=-c"], "--blae.args: -c ends the arguments: give the config file after it, e.g. -c configs/presets/FILE.yaml"),
    (["--out_dir", ""], "--out_dir '': expected a folder (an empty path is the current folder: name the sweep's own)"),
    # a typo of an option the sweep passes on: the option, not a stage's args+= (where train.py would refuse it)
    (["--trainer.max_stepz", "5"], "--trainer.max_stepz: no such option; did you mean '--trainer.max_steps'?"),
    (["--trainer.max_stepz=5"], "--trainer.max_stepz: no such option; did you mean '--trainer.max_steps'?"),
    (["--data.image_sise", "8"], "--data.image_sise: no such option; did you mean '--data.image_size'?"),
    # several devices run one cell at a time
    (
        ["--workers", "2", "--trainer.devices", "2"],
        "--workers 2 runs cells side by side on one device; with --trainer.devices 2 the cells run one after the other: use --workers 1",
    ),
]


@pytest.mark.parametrize("args, says", CASES, ids=[" ".join(args) for args, _ in CASES])
def test_a_bad_argument_is_one_line_exit_2_before_any_cell_and_nothing_written(cli, args, says):
    code, lines = cli(args)  # (the fixture fails the test if the sweep got as far as running its plan)
    assert (code, lines) == (2, [f"error: {says}  {DEBUG}"])


def test_an_output_folder_that_is_a_file_is_named(cli, tmp_path):
    (tmp_path / "file").write_text("x")
    code, lines = cli(["--out_dir", str(tmp_path / "file" / "s")])
    because = f"{tmp_path / 'file'} is a file, not a folder"
    assert (code, lines) == (
        2,
        [f"error: --out_dir {tmp_path / 'file' / 's'}: cannot write there ({because}); give a folder you can write to  {DEBUG}"],
    )


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in: a read-only one, or (root ignores permission bits) one under /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    for folder in (Path("/sys/fs"), Path("/sys")):
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError:
            return folder
    pytest.skip("no folder here refuses a new file")


def test_a_read_only_output_folder_is_one_line_naming_it_before_any_cell(cli, tmp_path):
    folder = unwritable_folder(tmp_path)
    code, lines = cli(["--out_dir", str(folder / "sweep")])
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: --out_dir {folder / 'sweep'}: cannot write there ("), lines[0]
    assert "Traceback" not in lines[0]


def test_good_arguments_pass_the_checks(tmp_path):
    plan = sweep.sweep_from_args(
        [
            *["-c", SWEEP_CONFIG, "--out_dir", str(tmp_path / "s"), "--threads", "null", "--train_sizes", "[1, null]"],
            *["--spread_cells", "[kernel-1, neural-global]", "--workers", "1", "--trainer.devices", "auto", "--trainer.max_steps", "-1"],
        ]
    ).plan()
    assert {"kernel-gamma-1-seed2", "neural-gamma-global-seed2", "kernel-gamma-1-n1", "kernel-gamma-2-nall"} <= {p.name for p in plan}
    assert not (tmp_path / "s").exists()


def test_the_advice_of_a_stage_that_never_validates_is_a_command_the_sweep_takes(tmp_path):
    """The line the sweep gives for a fit that stopped before it ever validated names sweep options that exist."""
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_text("x")
    record = {"last_checkpoint": str(checkpoint), "metrics": {"train/loss": 1.0}, "global_step": 5}
    cell = Cell("blae-noise-0.3", "fit", [], tmp_path, {"stage": "blae"})
    line = missing_promise(record, cell.subcommand, cell.role["stage"])
    assert line is not None and line.startswith("train.py fit stopped at step 5 before it ever validated (no val/ metrics)")
    advised = line.split(": ", 1)[1].split()
    flags = [word.rstrip(",;)") for word in advised if word.startswith("--")]
    assert flags == [
        "--trainer.max_steps",
        "--blae.args+=--trainer.check_val_every_n_epoch=null",
        "--blae.args+=--trainer.val_check_interval=5",
    ], line
    parsed = build_parser().parse_args(["-c", SWEEP_CONFIG, "--trainer.max_steps", "100", *flags[1:]])
    assert parsed.blae.args[-2:] == ["--trainer.check_val_every_n_epoch=null", "--trainer.val_check_interval=5"]


CONFIG_CASES = [
    ("gamas: [1]\n", "{file}: gamas: no such option; did you mean 'gammas'?"),
    ("gammas: abc\n", "{file}: gammas abc: expected a list of γ, each an integer >= 1 or global, e.g. --gammas '[1, 2, global]'"),
    ("gammas: [1\n", "{file}: not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
    ("spread_cells: [neural-7]\n", "--spread_cells neural-7: γ=7 is not one of --gammas [1, 2, global]"),
    ("config: nope.yaml\n", "{file}: config nope.yaml: no such file"),  # named by the file, not the -c file itself
    # an option the sweep does not take, in a config: with the file, and the advice of the command line
    (
        "trainer: {check_val_every_n_epoch: 1}\n",
        "{file}: trainer.check_val_every_n_epoch: the sweep's --trainer takes max_steps, max_epochs, accelerator, devices, num_nodes,"
        " strategy, precision; give any other train.py option to a stage: --blae.args+=--trainer.check_val_every_n_epoch=1"
        " (or --vae.args+=, --kernel.args+=, --neural.args+=)",
    ),
    ("trainer: {max_step: 5}\n", "{file}: trainer.max_step: no such option; did you mean 'trainer.max_steps'?"),
    ("blae: {config: configs/presets/x.yaml, arg: []}\n", "{file}: blae.arg: no such option; did you mean 'blae.args'?"),
]


@pytest.mark.parametrize("text, says", CONFIG_CASES, ids=[text.strip() for text, _ in CONFIG_CASES])
def test_a_bad_value_in_a_sweep_config_names_the_file_or_the_flag(cli, tmp_path, text, says):
    config = tmp_path / "mine.yaml"
    config.write_text(text)
    code, lines = cli(["-c", str(config)])
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {says.format(file=config)}"), lines[0]


def test_a_missing_config_named_by_a_relative_config_is_named_with_it(cli, tmp_path):
    """jsonargparse reads a config from the config's folder: the file that names the missing one is still found."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.yaml").write_text("config: nope.yaml\n")
    code, lines = cli(["-c", "../sub/mine.yaml"])
    assert (code, lines) == (2, [f"error: {tmp_path / 'sub' / 'mine.yaml'}: config nope.yaml: no such file  {DEBUG}"])


SHIPPED = sorted(p for p in (REPO_ROOT / "configs" / "sweeps").glob("*.yaml") if p.name != "gamma.wandb.yaml")


@pytest.mark.parametrize("config", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_sweep_config_passes_the_checks(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    parser.command_line = ["-c", str(config), "--out_dir", str(tmp_path / "s")]
    settings = parser.instantiate(parser.parse_args(parser.command_line))
    check_sweep_settings(**{name: settings[name] for name in inspect.signature(check_sweep_settings).parameters})
    assert list(tmp_path.iterdir()) == []


def test_the_checks_take_every_setting_of_a_sweep():
    """The command passes each parameter of `check_sweep_settings` by name from the parsed arguments to `Sweep`:
    the three must name the same settings (a new flag the checks do not take would go unchecked)."""
    checked = list(inspect.signature(check_sweep_settings).parameters)
    assert checked == [name for name in inspect.signature(sweep.Sweep.__init__).parameters if name != "self"]
    assert set(checked) == {action.dest.split(".")[0] for action in build_parser()._actions} - {"help", "config", "print_config"}


@pytest.mark.parametrize("devices", ["auto", "0,1", "0,", "3", 2, -1])
def test_the_devices_lightning_takes_pass(devices):
    check_overrides(DataOverrides(), TrainerOverrides(devices=devices))

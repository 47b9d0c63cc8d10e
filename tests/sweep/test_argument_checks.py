"""Every sweep argument is checked before the first cell starts: a value a user can get wrong (a type, a range,
a name of a model or γ, a size, a path, a value listed twice, an empty list) is one `error:` line naming the
flag and the value, exit code 2, nothing written: no sweep folder, no cell started."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

import sweep
from sweep.arguments import build_parser
from sweep.cells import Cell
from sweep.records import missing_promise
from tests.helpers import REPO_ROOT

SWEEP_CONFIG = str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml")
DEBUG = "[MEPS_DEBUG=1 shows the traceback]"


@pytest.fixture
def cli(tmp_path, monkeypatch, capfd):
    """sweep.py -c configs/sweeps/digits.yaml ARGS as a shell runs it, in an empty folder: (exit code, stderr lines, seconds).

    The run fails the test if the sweep gets as far as running its plan."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("WANDB_DIR", str(cwd))
    monkeypatch.delenv("MEPS_DEBUG", raising=False)
    monkeypatch.setattr(sweep.Sweep, "__call__", lambda self: pytest.fail("the sweep started: the bad value got through"))

    def run(args: list[str]) -> tuple[int, list[str], float]:
        capfd.readouterr()
        start = time.perf_counter()
        try:
            code = sweep.console_main(["-c", SWEEP_CONFIG, "--out_dir", str(cwd / "s"), *args])
        except SystemExit as exit:
            code = exit.code
        seconds = time.perf_counter() - start
        lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
        assert sorted(p.name for p in cwd.iterdir()) == [], "the sweep wrote something"
        return code, lines, seconds

    return run


GAMMAS = "an integer >= 1 or global"
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
    (["--vae_betas", "abc"], "--vae_betas abc: expected a list of KL weights β, each a number >= 0, or null (the VAE config's own)"),
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
    (["--trainer.devices", "0"], "--trainer.devices 0: expected an integer >= 1, -1 (every device), or a string such as auto or '0,1'"),
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
    # paths
    (["-c", "nope.yaml"], "-c nope.yaml: no such file"),
    (["--blae.config", "nope.yaml"], "--blae.config nope.yaml: no such file"),
    (["--neural.args+=-c", "--neural.args+=nope.yaml"], "--neural.args: -c nope.yaml: no such file"),
    # several devices run one cell at a time
    (
        ["--workers", "2", "--trainer.devices", "2"],
        "--workers 2 runs cells side by side on one device; with --trainer.devices 2 the cells run one after the other: use --workers 1",
    ),
]


@pytest.mark.parametrize("args, says", CASES, ids=[" ".join(args) for args, _ in CASES])
def test_a_bad_argument_is_one_line_exit_2_before_any_cell_and_nothing_written(cli, args, says):
    code, lines, seconds = cli(args)
    assert (code, lines) == (2, [f"error: {says}  {DEBUG}"])
    assert seconds < 10  # nothing trained: the checks come before any cell (108 s into the sweep on main, for --train_sizes '[0]')


def test_an_output_folder_that_is_a_file_is_named(cli, tmp_path):
    (tmp_path / "file").write_text("x")
    code, lines, _ = cli(["--out_dir", str(tmp_path / "file" / "s")])
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
    code, lines, _ = cli(["--out_dir", str(folder / "sweep")])
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


def test_the_sweep_says_its_argument_error_before_it_imports_lightning(tmp_path):
    """A bad argument is refused within the parser's own start-up, not after the imports of a cell (Lightning, W&B)."""
    import subprocess
    import sys

    probe = (
        "import sys; from sweep.command import console_main; "
        f"code = console_main(['-c', {SWEEP_CONFIG!r}, '--out_dir', {str(tmp_path / 's')!r}, '--threads', '-1']); "
        "print(code, 'lightning' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr[-2000:]
    assert json.dumps(done.stderr).count("error:") == 1


CONFIG_CASES = [
    ("gamas: [1]\n", "{file}: gamas: no such option; did you mean 'gammas'?"),
    ("gammas: abc\n", "{file}: gammas abc: expected a list of γ, each an integer >= 1 or global, e.g. --gammas '[1, 2, global]'"),
    ("gammas: [1\n", "{file}: not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
    ("spread_cells: [neural-7]\n", "--spread_cells neural-7: γ=7 is not one of --gammas [1, 2, global]"),
]


@pytest.mark.parametrize("text, says", CONFIG_CASES, ids=[text.strip() for text, _ in CONFIG_CASES])
def test_a_bad_value_in_a_sweep_config_names_the_file_or_the_flag(cli, tmp_path, text, says):
    config = tmp_path / "mine.yaml"
    config.write_text(text)
    code, lines, _ = cli(["-c", str(config)])
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {says.format(file=config)}"), lines[0]

"""The sweep's console line per cell, and train.py's overrides in the sweep."""

import contextlib
import io

import pytest
import yaml

from sweep import sweep_from_args
from sweep.console import cell_line, headline
from tests.helpers import REPO_ROOT
from train import main as train_main


def test_headline_is_psnr_for_autoencoders_and_memorization_and_nll_for_token_cells():
    blae = {"role": {"stage": "blae"}, "metrics": {"val/psnr": 30.94, "mem/psnr25_rate": 0.9}, "seconds": 12.3, "cpu_s": 11.0}
    assert cell_line("blae", blae) == "blae: done in 12 s (11 CPU s), val/psnr 30.9 dB"
    neural = {
        "role": {"stage": "neural"},
        "metrics": {"mem/psnr25_rate": 0.125, "train/nll_bits": 0.081, "val/nll_bits": 0.4, "fit/plateaued": 0.0},
    }
    assert headline(neural) == "memorization 0.12, nll bits/token train 0.081 / val 0.400, NOT plateaued"
    kernel = {"role": {"stage": "kernel"}, "metrics": {"mem/psnr25_rate": 1.0}}
    assert headline(kernel) == "memorization 1.00"
    assert headline({"role": {"stage": "vae"}, "metrics": {}}) == ""


def test_sweep_takes_the_common_trainer_overrides_in_train_py_syntax(tmp_path):
    overrides = {"max_steps": "7", "max_epochs": "2", "devices": "1", "accelerator": "cpu", "precision": "bf16-mixed"}
    sweep = sweep_from_args(
        [
            "-c",
            str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml"),
            "--out_dir",
            str(tmp_path / "s"),
            *[a for key, value in overrides.items() for a in (f"--trainer.{key}", value)],
        ]
    )
    cell = sweep.plan()[0].build({})
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        train_main([cell.subcommand, *cell.args, "--print_config"])
    trainer = yaml.safe_load(out.getvalue())["trainer"]
    assert {key: str(trainer[key]) for key in overrides} == overrides


def test_sweep_refuses_a_trainer_option_it_does_not_pass_on(tmp_path):
    """One line naming the option, and how a stage's train.py takes it (the whole case table: test_argument_checks.py)."""
    with pytest.raises(
        ValueError, match=r"^--trainer.no_such_option: the sweep's --trainer takes max_steps, .* --blae.args\+=--trainer.no_such_option=1"
    ):
        sweep_from_args(["-c", str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml"), "--trainer.no_such_option", "1"])

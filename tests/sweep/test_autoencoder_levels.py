"""The sweep's autoencoder levels: one BL-AE cell per --blae_noises rate beside the main one (the BL-AE points
of the MEPS frontier) and one VAE cell per --vae_betas β; a value that cannot be a level is one line, exit 2,
before any cell starts."""

from __future__ import annotations

import json

import pytest

import sweep
from lightning_modules.blae import BinaryLatentAutoencoder
from networks.autoencoder import PatchMLPDecoder, PatchMLPEncoder
from networks.binarizer import NoiseInjectionBinarizer
from sweep import sweep_from_args
from sweep.console import headline
from tests.helpers import REPO_ROOT, command_in_process

SWEEP_CONFIG = str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml")
NOISE_FLAG = "--model.init_args.binarizer.init_args.noise_rate"
BLAE = {"best_checkpoint": "/ckpt/blae.ckpt", "last_checkpoint": ""}


def sweep_args(tmp_path, **overrides) -> list[str]:
    return ["-c", SWEEP_CONFIG, "--out_dir", str(tmp_path / "s"), *[a for k, v in overrides.items() for a in (f"--{k}", json.dumps(v))]]


def flag_value(args: list[str], flag: str) -> list[str]:
    """Every value that follows `flag` in a command line, in order."""
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]


def test_each_noise_rate_is_the_blae_cell_again_at_that_rate_and_no_token_cell_waits_on_it(tmp_path):
    plan = {p.name: p for p in sweep_from_args(sweep_args(tmp_path, blae_noises=[0.3, 1.0], vae_betas=[0.25, 1.0, 4.0, 16.0])).plan()}
    assert {"blae", "blae-noise-0.3", "blae-noise-1", "vae-beta-0.25", "vae-beta-1", "vae-beta-4", "vae-beta-16"} <= plan.keys()
    main, noisy = plan["blae"].build({}), plan["blae-noise-0.3"].build({})
    assert noisy.role == {"stage": "blae", "kind": "autoencoder_noise", "noise": 0.3}
    assert main.role == {"stage": "blae", "kind": "autoencoder"}
    assert noisy.subcommand == main.subcommand == "fit"
    # the main cell keeps its config's noise; a noise cell is the main cell's command with one rate appended, so
    # it trains the same recipe and carries the same measurement callbacks (overlap, memorization)
    assert flag_value(main.args, NOISE_FLAG) == [] and flag_value(noisy.args, NOISE_FLAG) == ["0.3"]
    assert flag_value(plan["blae-noise-1"].build({}).args, NOISE_FLAG) == ["1.0"]
    stripped = [a for i, a in enumerate(noisy.args) if a != NOISE_FLAG and noisy.args[i - 1] != NOISE_FLAG]
    assert [a.replace("blae-noise-0.3", "blae") for a in stripped] == main.args
    assert "autoencoder_measurements.yaml" in " ".join(noisy.args)
    assert noisy.key != main.key and noisy.folder.name == "blae-noise-0.3"
    assert plan["blae-noise-0.3"].needs == () and not any(n.startswith("blae-noise") for p in plan.values() for n in p.needs)
    tokens = [p for p in plan.values() if "gamma" in p.name]
    assert tokens and all("blae" in p.needs for p in tokens)
    vae = plan["vae-beta-0.25"].build({})
    assert flag_value(vae.args, "--model.init_args.kl_weight") == ["0.25"] and vae.role == {"stage": "vae", "kind": "vae", "beta": 0.25}


def test_the_demo_sweep_spans_the_frontier(tmp_path):
    """configs/sweeps/digits.yaml as `make demo` runs it: >= 4 VAE β and the BL-AE at >= 3 training noise rates."""
    demo = sweep_from_args(sweep_args(tmp_path))
    names = [p.name for p in demo.plan()]
    assert len([n for n in names if n.startswith("vae-beta-")]) >= 4
    assert "blae" in names and len([n for n in names if n.startswith("blae-noise-")]) >= 2
    assert 0.6 not in demo.blae_noises  # the main cell's own rate (model/blae_digits.yaml) is not run twice


def test_the_noise_cells_start_after_the_main_blae_and_before_the_shorter_vae_cells(tmp_path):
    demo = sweep_from_args(sweep_args(tmp_path, blae_noises=[0.3, 1.0], vae_betas=[1.0, 4.0]))
    pending, started = demo.plan(), []
    while (ready := demo.next_ready(pending, {})) is not None and not ready.needs:
        pending.remove(ready)
        started.append(ready.name)
    assert started == ["blae", "blae-noise-0.3", "blae-noise-1", "vae-beta-1", "vae-beta-4"]


@pytest.fixture
def cli(tmp_path, monkeypatch, capfd):
    """sweep.py as a shell runs it, in an empty folder: (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("MEPS_DEBUG", raising=False)
    monkeypatch.setattr(sweep.Sweep, "__call__", lambda self: pytest.fail("the sweep started: the bad value got through"))

    def run(args: list[str]) -> tuple[int, str]:
        return command_in_process(sweep.console_main, args, capfd)

    return run


@pytest.mark.parametrize(
    "flag, values, says",
    [
        ("blae_noises", [0.3, 0], "--blae_noises 0: expected a list of training noise rates, each a finite number > 0, got [0.3, 0]"),
        ("blae_noises", [-0.5], "--blae_noises -0.5: expected a list of training noise rates, each a finite number > 0, got [-0.5]"),
        ("blae_noises", ["abc"], "--blae_noises abc: expected a list of training noise rates, each a finite number > 0, got [abc]"),
        (
            "blae_noises",
            [0.3, "1e-1x"],
            "--blae_noises 1e-1x: expected a list of training noise rates, each a finite number > 0, got [0.3, 1e-1x]",
        ),
        ("blae_noises", [0.3, 1.0, 0.3], "--blae_noises lists 0.3 twice"),
        ("blae_noises", [1, 1.0], "--blae_noises lists 1 twice"),
        ("blae_noises", [0.3, 0.30000001], "--blae_noises lists 0.3 twice"),  # one cell name, blae-noise-0.3
        (
            "vae_betas",
            [1.0, -2.0],
            "--vae_betas -2: expected a list of KL weights β, each a finite number >= 0, or null (the VAE config's own), got [1, -2]",
        ),
        (
            "vae_betas",
            ["big"],
            "--vae_betas big: expected a list of KL weights β, each a finite number >= 0, or null (the VAE config's own), got [big]",
        ),
        ("vae_betas", [4, 4], "--vae_betas lists 4 twice"),
    ],
)
def test_a_level_that_cannot_be_one_is_one_line_and_exit_2_before_any_cell(cli, tmp_path, flag, values, says):
    code, err = cli(sweep_args(tmp_path, **{flag: values}))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith(f"error: {says}"), lines[0]
    assert "Traceback" not in err and "usage:" not in err
    assert not (tmp_path / "s").exists()  # nothing trained, nothing written


def test_non_finite_levels_are_refused_too(tmp_path):
    for flag, value in (("--blae_noises", ".inf"), ("--blae_noises", ".nan"), ("--vae_betas", ".nan")):
        with pytest.raises(ValueError, match=f"^{flag} .*finite number"):
            sweep_from_args(["-c", SWEEP_CONFIG, "--out_dir", str(tmp_path / "s"), flag, f"[{value}]"])


def test_zero_beta_is_a_level_and_good_levels_pass(tmp_path):
    """β = 0 is a plain autoencoder with a Gaussian encoder (a legitimate end of the VAE curve); rates are floats."""
    plan = sweep_from_args(sweep_args(tmp_path, vae_betas=[0, 0.5], blae_noises=[2])).plan()
    assert {"vae-beta-0", "vae-beta-0.5", "blae-noise-2"} <= {p.name for p in plan}


def test_a_blae_cells_console_line_gives_its_psnr_and_bin_rate():
    record = {"role": {"stage": "blae", "kind": "autoencoder_noise", "noise": 0.3}, "metrics": {"val/psnr": 28.04, "val/bin_rate": 0.813}}
    assert headline(record) == "val/psnr 28.0 dB, bin rate 0.81"
    assert headline({"role": {"stage": "vae"}, "metrics": {"val/psnr": 30.53, "vae/beta": 2.0}}) == "val/psnr 30.5 dB"


@pytest.mark.parametrize("noise, rate, std", [("gaussian", 0.3, 0.3), ("uniform", 0.6, 0.6 / 3**0.5), ("triangular", 1.0, (2 / 12) ** 0.5)])
def test_every_blae_validation_states_the_noise_it_trained_at(noise, rate, std, monkeypatch):
    """What the MEPS frontier reads from each BL-AE record (the main cell's role carries no noise)."""
    model = BinaryLatentAutoencoder(
        PatchMLPEncoder(1, 4, width=8, num_blocks=1), PatchMLPDecoder(1, 4, width=8, num_blocks=1), NoiseInjectionBinarizer(noise, rate)
    )
    logged: dict = {}
    monkeypatch.setattr(model, "log_dict", lambda values, **kwargs: logged.update(values))
    model._log_noise_settings()
    assert logged == {"blae/noise_rate": rate, "blae/noise_std": pytest.approx(std)}

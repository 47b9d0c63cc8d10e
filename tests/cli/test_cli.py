"""LightningCLI: every shipped config parses, overrides and links work, --print_config prints."""

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from train import main

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
GROUPS = ("data", "model", "callbacks")  # pieces the experiment configs below reference by path
MODEL_CONFIGS = sorted(p for p in CONFIG_DIR.glob("*/*.yaml") if p.parent.name not in ("presets", "sweeps", *GROUPS))
PRESETS = sorted((CONFIG_DIR / "presets").glob("*.yaml"))


def print_config(*args) -> dict:
    """The resolved config that `--print_config` prints; a parse error (exit 2) fails the test."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None), f"--print_config exited {exit_info.value.code}"
    return yaml.safe_load(out.getvalue())


@pytest.mark.parametrize("config", MODEL_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_model_config_parses(config):
    printed = print_config("-c", str(config))
    assert printed["model"]["class_path"] and printed["data"]["class_path"]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_presets_stack_on_a_model_config(preset):
    """Every trainer setting of the preset wins over the model config; the rest of it stays."""
    model_config = yaml.safe_load((CONFIG_DIR / "blae" / "digits.yaml").read_text())
    overrides = yaml.safe_load(preset.read_text())["trainer"]
    printed = print_config("-c", str(CONFIG_DIR / "blae" / "digits.yaml"), "-c", str(preset))
    assert overrides
    if "callbacks+" in overrides:  # appended to the config's own list, each entry a group file
        appended = [yaml.safe_load((preset.parent / entry).read_text())["class_path"] for entry in overrides.pop("callbacks+")]
        assert [c["class_path"] for c in printed["trainer"]["callbacks"]][-len(appended) :] == appended
        assert len(printed["trainer"]["callbacks"]) == len(model_config["trainer"]["callbacks"]) + len(appended)
    if "callbacks" in overrides:  # replaces the list; entries may be group files
        overrides["callbacks"] = [
            yaml.safe_load((preset.parent / entry).read_text()) if isinstance(entry, str) else entry for entry in overrides["callbacks"]
        ]
    assert {key: printed["trainer"][key] for key in overrides if key != "callbacks"} == {
        key: value for key, value in overrides.items() if key != "callbacks"
    }
    for given, got in zip(overrides.get("callbacks", []), printed["trainer"]["callbacks"] if "callbacks" in overrides else [], strict=True):
        # a preset's callback list replaces the config's; the printed one spells out every default
        assert got["class_path"] == given["class_path"] and given.get("init_args", {}).items() <= got["init_args"].items()
    kept = {key: value for key, value in model_config["trainer"].items() if key not in overrides and key != "callbacks"}
    assert {key: printed["trainer"][key] for key in kept} == kept
    assert printed["model"]["class_path"].endswith("BinaryLatentAutoencoder")
    assert printed["model"]["init_args"]["binarizer"]["init_args"]["noise_rate"] == 0.6


def test_a_bad_preset_value_fails_the_parse(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_steps: many\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(CONFIG_DIR / "blae" / "digits.yaml"), "-c", str(bad), "--print_config"])
    assert exit_info.value.code == 2 and "max_steps" in err.getvalue()


@pytest.mark.parametrize("beta", ["0.1", "1", "5"])
def test_vae_beta_is_a_command_line_override(in_tmp_dir, beta):
    cli = main(["-c", str(CONFIG_DIR / "vae" / "digits.yaml"), "--model.init_args.kl_weight", beta], run=False)
    assert cli.model.hparams.kl_weight == float(beta)


def test_overrides_and_links_reach_the_model(in_tmp_dir):
    cli = main(
        [
            "-c",
            str(CONFIG_DIR / "blae" / "digits.yaml"),
            "--model.init_args.binarizer.init_args.noise_rate",
            "0.25",
            "--data.init_args.image_size",
            "16",
        ],
        run=False,
    )
    assert cli.model.binarizer.noise_rate == 0.25
    assert cli.model.hparams.image_size == 16  # linked from data, never set twice


def test_unknown_key_is_rejected():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIG_DIR / "blae" / "digits.yaml"), "--model.init_args.no_such_key", "1"])
    assert "no_such_key" in err.getvalue()


@pytest.mark.parametrize("config", sorted((CONFIG_DIR / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sweep_config_parses_with_its_stage_configs(config):
    from sweep import build_parser

    if config.name.endswith(".wandb.yaml"):  # a W&B sweep definition, read by `wandb sweep`
        assert "program" in yaml.safe_load(config.read_text())
        return
    parsed = build_parser().parse_args(["-c", str(config)])
    for stage in ("blae", "vae", "kernel", "neural"):
        assert (CONFIG_DIR.parent / parsed[stage].config).is_file(), stage

"""configs/sweeps/gamma.wandb.yaml, the other sweep engine (W&B agents): its command, as an agent expands it, runs.

Offline, without a W&B server: ``tests/wandb_agent.py`` expands the file's ``command`` with W&B's own functions
for one run (γ = 2), with the run id and sweep variables an agent sets, in a folder that holds the repository's
``train.py`` and ``configs/`` (an agent runs in the repository; the outputs land in the test's folder). Two more
parameters keep it short, as a sweep file for a quick trial would: the debug preset (``--config=``: a few
steps) and a token cache in the test's folder. The BL-AE it needs (``BLAE_CKPT``) is trained here, debug preset.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.helpers import (
    DEBUG_PRESET,
    DIGITS_CONFIG,
    REPO_ROOT,
    run_train,
    subprocess_env,
    wandb_runs,
    wandb_summary,
    with_this_python_first,
)
from tests.wandb_agent import agent_run

pytestmark = pytest.mark.slow

SWEEP_FILE = REPO_ROOT / "configs" / "sweeps" / "gamma.wandb.yaml"


def test_the_agent_command_of_gamma_wandb_yaml_fits_one_run_offline(tmp_path, monkeypatch):
    run_train(
        ["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "blae")],
        tmp_path,
    )
    [blae] = (tmp_path / "blae").rglob("last.ckpt")
    monkeypatch.setenv("BLAE_CKPT", str(blae))
    sweep = yaml.safe_load(SWEEP_FILE.read_text())
    assert 2 in sweep["parameters"]["model.init_args.gamma"]["values"]

    agent = tmp_path / "agent"  # the agent's working directory: the repository's program and configs, these outputs
    agent.mkdir()
    for name in ("train.py", "configs"):
        (agent / name).symlink_to(REPO_ROOT / name)
    values = {
        "model.init_args.gamma": 2,
        "config": "configs/presets/debug.yaml",
        "data.init_args.token_cache_dir": str(tmp_path / "tokens"),
    }
    run = agent_run(SWEEP_FILE, values, run_id="agentrun", sweep_id="gammasweep", cwd=agent)
    assert run.command[:7] == [
        "/usr/bin/env",
        "python",
        "train.py",
        "fit",
        "-c",
        "configs/arvm/digits.yaml",
        f"--data.init_args.autoencoder={blae}",
    ]
    assert run.command[7:] == [
        "--model.init_args.gamma=2",
        "--config=configs/presets/debug.yaml",
        f"--data.init_args.token_cache_dir={tmp_path / 'tokens'}",
    ]

    env = with_this_python_first(subprocess_env(**run.env))
    done = subprocess.run(run.command, cwd=agent, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-6000:]
    # one W&B run and one run folder, both named by the agent's WANDB_RUN_ID (train.py takes it since WANDB_SWEEP_ID
    # says an agent started it): no second folder under an id of train.py's own
    [wandb_run] = wandb_runs(agent)
    assert wandb_run.name.endswith("-agentrun"), wandb_run
    run_folders = sorted(path.name for path in (agent / "outputs" / "meps-ldh").iterdir())
    assert run_folders == ["agentrun"], f"one run folder, named by the sweep's run id: {run_folders}"
    run_folder = agent / "outputs" / "meps-ldh" / "agentrun"
    assert (run_folder / "status.json").is_file() and "finished" in (run_folder / "status.json").read_text()
    summary = wandb_summary(wandb_run)
    assert summary["run_id"] == "agentrun", summary
    assert yaml.safe_load((run_folder / "config.yaml").read_text())["model"]["init_args"]["gamma"] == 2
    assert "val/nll_bits" in summary["summary"]

"""Helpers for end-to-end tests: run train.py as a user would, read W&B runs back with W&B's reader."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback

REPO_ROOT = Path(__file__).resolve().parents[1]
DIGITS_CONFIG = str(REPO_ROOT / "configs" / "blae" / "digits.yaml")
DEBUG_PRESET = str(REPO_ROOT / "configs" / "presets" / "debug.yaml")


def subprocess_env(**extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("MEPS_RUN_ID", None)
    return env


def run_script(script: str, args: list[str], cwd: Path, timeout: int = 300, check: bool = True, **env) -> subprocess.CompletedProcess:
    Path(cwd).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args], cwd=cwd, env=subprocess_env(**env),
        capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def run_train(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return run_script("train.py", args, cwd, **kwargs)


def wandb_runs(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("offline-run-*") if p.is_dir())


def wandb_summary(run_dir: Path) -> dict:
    """The run as W&B's own reader sees it: `wandb leet inspect --summary --json RUN_DIR`."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    out = subprocess.run([str(wandb_cli), "leet", "inspect", "--summary", "--json", str(run_dir)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


class RecordRankNoise(Callback):
    """Writes each rank's seed and a draw of its global RNG, to show ranks get distinct streams."""

    def on_train_start(self, trainer, pl_module):
        folder = Path(os.environ["RANK_NOISE_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        record = {"rank": trainer.global_rank, "seed": getattr(pl_module, "rank_seed", None), "draw": torch.randn(4).tolist()}
        (folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))

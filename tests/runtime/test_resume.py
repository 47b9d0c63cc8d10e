"""Which run a resume continues: the run of a checkpoint, the one named, or the newest unfinished run of the same model."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from runtime.resume import checkpoint_run_id, resume
from runtime.run_status import write_status
from runtime.wandb_run import keep_previous_config


def make_run(
    root: Path,
    run_id: str,
    stored_id: str | None = None,
    state: str | None = None,
    model: str = "lightning_modules.BinaryLatentAutoencoder",
    age_s: float = 0.0,
) -> Path:
    folder = root / run_id
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text(f"trainer:\n  max_steps: 3\nmodel:\n  class_path: {model}\n  init_args: {{}}\n")
    if state is not None:
        write_status(folder, state, run_id=run_id)
    callbacks = {"ResumableRun": {"run_id": stored_id}} if stored_id else {}
    checkpoint = folder / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {}, "callbacks": callbacks}, checkpoint)
    os.utime(checkpoint, (time.time() - age_s, time.time() - age_s))
    return checkpoint


BLAE_CLASS = "lightning_modules.BinaryLatentAutoencoder"


def test_resume_finds_the_run_of_a_checkpoint_or_the_one_named(tmp_path):
    runs = tmp_path / "outputs" / "meps-ldh"
    stored = make_run(runs, "aaaa1111", stored_id="aaaa1111")
    moved = make_run(runs, "bbbb2222")  # no stored id: read from the folder layout
    assert resume("last", "aaaa1111", runs) == resume("last", None, runs, env_id="aaaa1111")
    assert resume("last", "aaaa1111", runs).ckpt_path == str(stored)
    assert "STARTS FROM SCRATCH" in resume("last", "cccc3333", runs).message  # a named run without a checkpoint
    assert resume(str(stored), None, runs).run_id == "aaaa1111" == checkpoint_run_id(stored)
    assert resume(str(stored), None, runs, env_id="stale999").run_id == "aaaa1111"  # the checkpoint's run wins
    assert resume(str(moved), None, runs).run_id == "bbbb2222"
    assert resume(str(stored), "fork0001", runs).run_id == "fork0001"  # an explicit --trainer.logger.init_args.id forks
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resume(str(tmp_path / "nope.ckpt"), None, runs)


def test_ckpt_path_last_without_a_run_id_takes_the_newest_unfinished_run_of_the_same_model(tmp_path):
    runs = tmp_path / "outputs" / "meps-ldh"
    with pytest.raises(FileNotFoundError, match="no unfinished run of .*BinaryLatentAutoencoder") as excinfo:
        resume("last", None, runs, model_class=BLAE_CLASS)
    assert "\n" not in str(excinfo.value)
    make_run(runs, "old00001", state="preempted", age_s=600)
    make_run(runs, "done0002", state="finished", age_s=10)  # newer, but finished
    make_run(runs, "vae00003", state="preempted", model="lightning_modules.GaussianVAE", age_s=5)  # newer, another model
    newest = make_run(runs, "kill0004", state="running", age_s=60)  # SIGKILLed: still "running"
    choice = resume("last", None, runs, model_class=BLAE_CLASS)
    assert choice.run_id == "kill0004" and choice.ckpt_path == str(newest)
    assert "the newest resumable run" in choice.message and "old00001" in choice.message and "\n" not in choice.message
    assert resume("last", None, runs, model_class="lightning_modules.GaussianVAE").run_id == "vae00003"


def test_a_resumed_run_keeps_the_config_of_every_attempt(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("first")
    assert keep_previous_config(config).name == "config.attempt-1.yaml"
    config.write_text("second")
    assert keep_previous_config(config).name == "config.attempt-2.yaml"
    assert (tmp_path / "config.attempt-1.yaml").read_text() == "first"

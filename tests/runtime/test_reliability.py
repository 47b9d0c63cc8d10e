"""The survival machinery, piece by piece (fast lane); tests/e2e/test_fault_injection.py runs the faults end to end.

Atomic checkpoint writes, RNG states in checkpoints, last.ckpt kept current, which run a resume
continues, one-line errors, the W&B probe, batch and NaN guards, and determinism: the same seed
and config give identical metrics for BL-AE, VAE and γ-ARVM, and a token model's samples do not
depend on how many processes draw them.
"""
from __future__ import annotations

import errno
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

import train
from runtime import checkpoint_io
from runtime.checkpoint_io import AtomicCheckpointIO, remove_dead_checkpoint_partials
from callbacks.input_guard import batch_problem
from callbacks.measurement import rank_sample_indices
from callbacks.nan_guard import NonFiniteCheckpointError, NonFiniteGuard
from callbacks.resumable_run import ResumableRun
from runtime.rng_state import rng_state, set_rng_state
from runtime.wandb_run import ensure_wandb_mode, keep_previous_config
from lightning_modules.protocols import sample_seeds
from runtime import errors
from runtime.atomic_files import PARTIAL_SUFFIX, atomic_write
from runtime.console import resume_command
from runtime.resume import checkpoint_run_id, resume
from runtime.run_status import write_status
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, REPO_ROOT

VAE_CONFIG = str(REPO_ROOT / "configs" / "vae" / "digits.yaml")
ARVM_CONFIG = str(REPO_ROOT / "configs" / "arvm" / "digits.yaml")
QUICK = ["-c", DEBUG_PRESET, "--trainer.logger", "false", "--trainer.enable_model_summary", "false"]


# ------------------------------------------------------------------------------------ atomic writes


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "last.ckpt"
    atomic_write(target, lambda f: f.write(b"good"))

    def disk_full(file):
        file.write(b"half of a checkpo")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, disk_full)
    assert target.read_bytes() == b"good" and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_checkpoint_io_round_trip_and_temporaries_of_dead_processes(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 7}, tmp_path / "ckpts" / "last.ckpt")
    assert io.load_checkpoint(tmp_path / "ckpts" / "last.ckpt", weights_only=True)["global_step"] == 7
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    host = socket.gethostname()
    leftover = tmp_path / "ckpts" / f"{checkpoint_io.PARTIAL_PREFIX}{host}-{dead}-abcd1234{PARTIAL_SUFFIX}"
    mine = tmp_path / "ckpts" / f"{checkpoint_io.PARTIAL_PREFIX}{host}-{os.getpid()}-abcd1234{PARTIAL_SUFFIX}"
    leftover.write_bytes(b"half")
    mine.write_bytes(b"being written")
    # Lightning's `--ckpt_path last` takes `last*.ckpt` files: a temporary file is never taken for a checkpoint
    assert not leftover.name.endswith(".ckpt") and "last" not in leftover.name
    assert remove_dead_checkpoint_partials(tmp_path / "ckpts") == [leftover]
    assert mine.exists() and not leftover.exists()


def test_trainer_gets_atomic_checkpoint_io_unless_the_user_chose_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = train.main(["-c", DIGITS_CONFIG, *QUICK], run=False)
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    names = {type(cb).__name__ for cb in cli.trainer.callbacks}
    assert {"PerRankSeed", "ResumableRun", "NonFiniteGuard", "BatchGuard"} <= names


# ------------------------------------------------------------------------------------ RNG state and last.ckpt


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.randn(1)  # a cached gaussian in numpy's state
    state = rng_state()
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.save({"rng": state}, tmp_path / "s.ckpt")
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    set_rng_state(torch.load(tmp_path / "s.ckpt", weights_only=True)["rng"])
    assert torch.equal(torch.rand(4), expected[0]) and np.array_equal(np.random.rand(4), expected[1])
    assert [random.random() for _ in range(4)] == expected[2]


class PlateauModel(BoringModel):
    """The monitored metric never improves after epoch 0."""

    def validation_step(self, batch, batch_idx):
        self.log("v", -float(self.current_epoch))


@pytest.mark.parametrize("check_val_every_n_epoch", [1, 2])
def test_last_ckpt_stays_current_when_the_metric_plateaus(tmp_path, check_val_every_n_epoch):
    """Lightning 2.6 alone leaves last.ckpt at the last improvement (step 2 here); ResumableRun keeps it at the end."""
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="v", mode="max", save_last=True, filename="best")
    trainer = Trainer(max_epochs=4, limit_train_batches=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, check_val_every_n_epoch=check_val_every_n_epoch,
                      callbacks=[checkpoint, ResumableRun()])
    trainer.fit(PlateauModel())
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["global_step"] == 8 and last["callbacks"]["ResumableRun"]["mid_epoch"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"best.ckpt", "last.ckpt"})
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["global_step"] == 2 * check_val_every_n_epoch


# ------------------------------------------------------------------------------------ which run a resume continues


def make_run(root: Path, run_id: str, stored_id: str | None = None, state: str | None = None,
             model: str = "lightning_modules.BinaryLatentAutoencoder", age_s: float = 0.0) -> Path:
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


# ------------------------------------------------------------------------------------ one-line errors


@pytest.mark.parametrize("error, started, code", [
    (ValueError("gamma must be an int >= 1 or None (global), got 0"), False, 2),
    (FileNotFoundError("autoencoder checkpoint 'x.ckpt' does not exist"), False, 2),
    (OSError(errno.ENOSPC, "No space left on device"), True, 1),
    (errors.MepsFault("training loss is nan at global step 4"), True, 1),
    (RuntimeError("[gloo] Connection closed by peer [127.0.0.1]:1234"), True, 1),
    (ValueError("a bug deep in a metric"), True, None),  # after the loop started: the traceback stays
    (KeyError("bug"), False, None),
])
def test_console_main_turns_input_errors_and_faults_into_one_line(monkeypatch, capsys, error, started, code):
    def failing_main(argv):
        errors.mark_loop_started(started)
        raise error

    monkeypatch.setattr(train, "main", failing_main)
    monkeypatch.delenv("MEPS_DEBUG", raising=False)
    if code is None:
        with pytest.raises(type(error)):
            train.console_main([])
        return
    assert train.console_main([]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "MEPS_DEBUG=1" in err
    monkeypatch.setenv("MEPS_DEBUG", "1")
    with pytest.raises(type(error)):
        train.console_main([])


# ------------------------------------------------------------------------------------ W&B without a network


def test_unreachable_wandb_server_means_offline_said_once(monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: connection refused
    for var in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    assert ensure_wandb_mode() == "offline" and os.environ["WANDB_MODE"] == "offline"
    assert ensure_wandb_mode() == "offline"
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.count("logging offline") == 1 and "http://127.0.0.1:9 unreachable" in err


def test_no_key_means_offline(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert ensure_wandb_mode() == "offline"


# ------------------------------------------------------------------------------------ guards


@pytest.mark.parametrize("batch, culprit", [
    ({"image": torch.rand(2, 1, 8, 8) * 255}, "but the models take images scaled to [-1, 1]"),
    ({"image": torch.full((2, 1, 8, 8), float("nan"))}, "NaN/Inf"),
    ({"tokens": torch.tensor([[0, 64]])}, "outside [0, 64)"),
    ({"image": torch.rand(2, 1, 8, 8) * 2 - 1, "tokens": torch.tensor([[0, 63]])}, None),
])
def test_batch_problems_are_named(batch, culprit):
    problem = batch_problem(batch, num_bits=6)
    assert (problem is None) if culprit is None else (culprit in problem)


def test_no_checkpoint_is_written_with_non_finite_weights():
    class FakeTrainer:
        global_step, current_epoch, checkpoint_callback = 5, 1, None
        fit_loop = type("F", (), {"epoch_loop": type("E", (), {"batch_idx": 2})()})()

    guard = NonFiniteGuard()
    guard.on_save_checkpoint(FakeTrainer(), None, {"state_dict": {"w": torch.ones(2)}})
    with pytest.raises(NonFiniteCheckpointError, match=r"global step 5 .*weight w is not finite"):
        guard.on_save_checkpoint(FakeTrainer(), None, {"state_dict": {"w": torch.tensor([1.0, float("inf")])}})


# ------------------------------------------------------------------------------------ determinism


@pytest.fixture(scope="module")
def blae_checkpoint(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("blae")
    train.main(["fit", "-c", DIGITS_CONFIG, *QUICK, "--trainer.default_root_dir", str(folder)])
    return str(next(folder.rglob("last.ckpt")))


def final_metrics(args: list[str], folder: Path) -> dict[str, float]:
    cli = train.main([*args, "--trainer.default_root_dir", str(folder)])
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith(("val/", "mem/", "train/"))}


@pytest.mark.parametrize("model", ["blae", "vae", "gamma_arvm"])
def test_same_seed_and_config_give_identical_metrics(model, blae_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = {
        "blae": ["fit", "-c", DIGITS_CONFIG, *QUICK],
        "vae": ["fit", "-c", VAE_CONFIG, *QUICK],
        "gamma_arvm": ["fit", "-c", ARVM_CONFIG, *QUICK, "--data.init_args.autoencoder", blae_checkpoint,
                       "--data.init_args.token_cache_dir", str(tmp_path / "tokens"), "--model.init_args.gamma", "2",
                       "--model.init_args.dropout", "0.1"],
    }[model]
    first, second = final_metrics(args, tmp_path / "a"), final_metrics(args, tmp_path / "b")
    assert first and first == second  # exact, not approximate
    assert any(k.startswith("val/") for k in first)


def test_token_model_samples_do_not_depend_on_the_number_of_processes(blae_checkpoint):
    from lightning_modules import GammaARVM

    torch.manual_seed(0)
    model = GammaARVM(autoencoder=blae_checkpoint, gamma=2, n_layer=1, n_embd=32, n_head=2).eval()
    one_process = model.generate(sample_seeds(100, range(7))).tokens
    shares = [rank_sample_indices(7, rank, 2) for rank in (0, 1)]
    assert set(shares[0]).isdisjoint(shares[1])  # each rank draws its own samples
    two_processes = torch.cat([model.generate(sample_seeds(100, share)).tokens for share in shares])
    assert torch.equal(one_process, two_processes)
    assert not torch.equal(two_processes[0], two_processes[1])


# ------------------------------------------------------------------------------------ stop requests


def test_a_stop_request_is_a_flag_and_a_second_ctrl_c_stops_at_once(capsys):
    import signal

    from runtime.signals import StopRequests

    requests = StopRequests().install()
    try:
        assert signal.getsignal(signal.SIGTERM) == requests.handle
        requests.handle(signal.SIGINT, None)
        assert requests.name == "SIGINT" and "Ctrl-C again to stop at once" in capsys.readouterr().out
        requests.handle(signal.SIGTERM, None)
        assert requests.name == "SIGINT"  # the first request is the one acted on
        with pytest.raises(KeyboardInterrupt):
            requests.handle(signal.SIGINT, None)
    finally:
        requests.restore()
    assert signal.getsignal(signal.SIGTERM) != requests.handle


def test_before_training_a_stop_request_ends_the_run_at_once():
    import signal

    from runtime.errors import Preempted
    from runtime.signals import stop_at_once

    with pytest.raises(Preempted, match="stopped by SIGTERM before training started") as excinfo, stop_at_once():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises first
    assert excinfo.value.exit_code == 75 and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_resume_command_is_the_same_command_with_ckpt_path_last():
    assert resume_command(["fit", "-c", "a b.yaml", "--ckpt_path", "x.ckpt", "--trainer.max_steps=5"]) == \
        "python train.py fit -c 'a b.yaml' --trainer.max_steps=5 --ckpt_path last"


def test_a_mid_epoch_checkpoint_resumes_exactly(tmp_path, monkeypatch):
    """``ModelCheckpoint(every_n_train_steps)`` writes mid-epoch; with the resumable data order that resumes exactly."""
    from tests.helpers import InjectedFault

    monkeypatch.chdir(tmp_path)

    def args(steps: str) -> list[str]:
        return ["fit", "-c", VAE_CONFIG, *QUICK, "--trainer.max_steps", "-1", "--trainer.max_epochs", "2",
                "--trainer.limit_train_batches", "4", "--trainer.check_val_every_n_epoch", "1",
                "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                "--trainer.callbacks.init_args.every_n_train_steps", "1", "--trainer.callbacks.init_args.save_last", "true",
                "--trainer.callbacks.init_args.dirpath", steps]

    expected = final_metrics(args("steps-a"), tmp_path / "uninterrupted")
    with pytest.raises(InjectedFault):
        final_metrics([*args("steps-b"), "--trainer.callbacks+=tests.helpers.FaultInjector", "--trainer.callbacks.init_args.step", "6"],
                      tmp_path / "crashed")
    last = torch.load(tmp_path / "steps-b" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6  # epoch 1, 2 of 4 batches: mid-epoch
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["position"] == 2 * 128
    resumed = final_metrics([*args("steps-b"), "--ckpt_path", str(tmp_path / "steps-b" / "last.ckpt")], tmp_path / "crashed")
    assert {k: v for k, v in resumed.items() if k.startswith("val/")} == {k: v for k, v in expected.items() if k.startswith("val/")}

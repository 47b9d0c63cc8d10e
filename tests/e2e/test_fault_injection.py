"""Fault injection (slow lane): the faults a long run on a shared cluster meets, each injected into real
`train.py` runs, and what survives. The table of faults tried, survived and data lost is printed at the
end of the pytest output (tests/fault_report.py).

- SIGKILL just after the epoch-end last.ckpt, then SIGKILL mid-epoch, then SIGKILL in the middle of a
  checkpoint write, each followed by `fit --ckpt_path`: the same run (run folder, W&B run id) goes on
  and ends at the uninterrupted run's global step and epoch with exactly its val/ metrics; the
  half-written checkpoint never replaces last.ckpt. The uninterrupted run meets a W&B server that
  cannot be reached (key set) and goes offline, saying so once.
- A crash (exception) mid-epoch in the VAE (noise in training and validation) and the γ-ARVM (dropout),
  then `--ckpt_path last` from the epoch-end last.ckpt: the same final step, epoch and val/ metrics.

Every resume here keeps `max_steps` set, as the configs do (issue 22: with it, Lightning 2.6 resumed an
epoch-end checkpoint one epoch short), and compares the final step and metrics (tests/final_state.py).
- DDP on CPU: rank 1 raises -> the whole job ends, with its error, in bounded time; a validation set
  smaller than the world size works.
- NaN loss, disk full while checkpointing, disk full while writing the token cache, a token cache from
  another checkpoint, and bad inputs through the command line: one line `error: ...`, exit code 1 (fault)
  or 2 (input), nothing half-written, last good checkpoint kept.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest
import torch
from datasets import Dataset

import train
from autoencoder_checkpoint.reader import file_sha256
from runtime.checkpoint_files import PARTIAL_PREFIX
from tests import final_state
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, REPO_ROOT, InjectedFault, command_in_process, wandb_runs, wandb_summary
from tests.runs import Run

pytest_plugins = ["tests.fault_report"]
pytestmark = pytest.mark.slow

VAE_CONFIG = str(REPO_ROOT / "configs" / "vae" / "digits.yaml")
ARVM_CONFIG = str(REPO_ROOT / "configs" / "arvm" / "digits.yaml")
NO_WANDB = ["--trainer.logger", "false"]
QUIET = ["--trainer.enable_model_summary", "false"]
DDP_ARGS = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


def inject(fault: str, step: int = 0, rank: int = 0) -> list[str]:
    """FaultInjector as the last callback (its init_args follow it)."""
    return [
        "--trainer.callbacks+=tests.helpers.FaultInjector",
        "--trainer.callbacks.init_args.marker_dir",
        "markers",
        "--trainer.callbacks.init_args.fault",
        fault,
        "--trainer.callbacks.init_args.step",
        str(step),
        "--trainer.callbacks.init_args.rank",
        str(rank),
    ]


def results_file(path: str = "results.json") -> list[str]:
    return ["--trainer.callbacks+=callbacks.run.results_file.ResultsFile", "--trainer.callbacks.init_args.path", path]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def val_metrics(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items() if k.startswith("val/")}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# ------------------------------------------------------------------------------------ kill and resume


RESUME_ARGS = [
    "fit",
    "-c",
    DIGITS_CONFIG,
    "-c",
    DEBUG_PRESET,
    *QUIET,
    "--trainer.max_steps",
    "1000",
    "--trainer.max_epochs",
    "4",
    "--trainer.limit_train_batches",
    "3",
    "--trainer.check_val_every_n_epoch",
    "2",
    *results_file(),
]
"""4 epochs x 3 steps, validation after epochs 1 and 3 (so last.ckpt at epochs 0 and 2 comes from ResumableRun).
``max_steps`` is set, as every config of this project sets it: Lightning resumes an epoch-end checkpoint
differently then (issue 22: a resume from the epoch-end last.ckpt lost an epoch only with max_steps set)."""


def test_sigkill_after_an_epoch_end_checkpoint_mid_epoch_and_during_a_save_then_resume_is_exact(tmp_path, fault):
    unreachable = fault.tried("W&B server unreachable (API key set, WANDB_BASE_URL=http://127.0.0.1:9)")
    reference = Run(
        [*RESUME_ARGS, *inject("none")],
        tmp_path / "uninterrupted",
        drop_env=("WANDB_MODE",),
        WANDB_API_KEY="x" * 40,
        WANDB_BASE_URL="http://127.0.0.1:9",
    )
    killed_after_epoch_end = fault.tried("SIGKILL just after the epoch-end last.ckpt (end of epoch 0, step 3)")
    first = Run([*RESUME_ARGS, *inject("hang", step=3)], tmp_path / "killed")
    first.wait_for_marker("hang-rank0")
    first.sigkill()

    run_folders = list((first.cwd / "outputs" / "meps-ldh").iterdir())
    assert len(run_folders) == 1
    run_id, checkpoints = run_folders[0].name, run_folders[0] / "checkpoints"
    last = checkpoints / "last.ckpt"
    assert (load(last)["global_step"], load(last)["epoch"]) == (3, 0)  # written at the end of epoch 0, no validation there

    killed_mid_epoch = fault.tried("SIGKILL mid-epoch (epoch 2, step 7)")
    (first.cwd / "markers" / "hang-rank0").unlink()
    second = Run([*RESUME_ARGS, *inject("hang", step=7), "--ckpt_path", "last"], first.cwd)
    second.wait_for_marker("hang-rank0")
    second.sigkill()
    assert f"resume: run {run_id}" in second.stderr
    assert (load(last)["global_step"], load(last)["epoch"]) == (6, 1)  # epoch 1 trained in full after the resume at step 3

    assert reference.wait() == 0, reference.stderr[-4000:]
    assert reference.stderr.count("logging offline") == 1 and "http://127.0.0.1:9 unreachable" in reference.stderr
    assert len(wandb_runs(reference.cwd / "outputs")) == 1
    fault.survived(f"went offline after the probe, said so once; run finished in {reference.seconds:.0f} s", record=unreachable)
    expected = final_state.of_job(reference.cwd)
    assert (expected.global_step, expected.epoch) == (12, 3)

    killed_in_save = fault.tried("SIGKILL while last.ckpt is being written (end of epoch 2)")
    before = file_sha256(last)
    third = Run([*RESUME_ARGS, *inject("hang_in_save", step=7), "--ckpt_path", "last"], first.cwd, MEPS_RUN_ID=run_id)
    third.wait_for_marker("in-save-rank0")
    third.sigkill()
    assert f"resume: run {run_id} goes on from the last checkpoint" in third.stderr
    partials = list(checkpoints.glob(f"{PARTIAL_PREFIX}*"))
    assert len(partials) == 1 and partials[0].stat().st_size > 0  # the write really was half-way
    assert file_sha256(last) == before and load(last)["global_step"] == 6
    fault.survived("last.ckpt untouched (same sha256), the half-written temporary is ignored and removed later", record=killed_in_save)

    # resume by path, without naming the run: the run id comes from the checkpoint
    fourth = Run([*RESUME_ARGS, *inject("none"), "--ckpt_path", str(last.resolve())], first.cwd)
    assert fourth.wait() == 0, fourth.stderr[-4000:]
    assert f"resume: run {run_id} goes on from" in fourth.stderr
    assert not list(checkpoints.glob(f"{PARTIAL_PREFIX}*"))
    same = final_state.of_job(first.cwd).same_as(expected)
    assert [p.name for p in (first.cwd / "outputs" / "meps-ldh").iterdir()] == [run_id]
    assert {"config.attempt-1.yaml", "config.attempt-2.yaml", "config.attempt-3.yaml", "config.yaml"} <= {
        p.name for p in run_folders[0].iterdir()
    }
    runs = wandb_runs(first.cwd / "outputs")
    assert len(runs) == 4 and all(r.name.endswith(run_id) for r in runs)  # one W&B run id, four attempts
    summary, reference_summary = wandb_summary(runs[-1]), wandb_summary(wandb_runs(reference.cwd / "outputs")[0])
    assert summary["run_id"] == run_id
    assert summary["summary"]["epoch"] == reference_summary["summary"]["epoch"]  # what W&B shows for the run
    assert summary["summary"]["val/psnr"] == pytest.approx(expected.val["val/psnr"], rel=1e-6)
    fault.survived(f"resumed run {run_id} (same W&B run id) from the epoch-0 last.ckpt: {same}", record=killed_after_epoch_end)
    fault.survived(f"resumed run {run_id} (same W&B run id) from the epoch-1 last.ckpt: {same}", record=killed_mid_epoch)


@pytest.fixture(scope="module")
def blae_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("blae")
    train.main(["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, *NO_WANDB, *QUIET, "--trainer.default_root_dir", str(folder)])
    return next(folder.rglob("last.ckpt"))


def arvm_args(checkpoint: Path, tmp_path: Path) -> list[str]:
    return [
        "-c",
        ARVM_CONFIG,
        "-c",
        DEBUG_PRESET,
        *QUIET,
        "--data.init_args.autoencoder",
        str(checkpoint),
        "--data.init_args.token_cache_dir",
        str(tmp_path / "tokens"),
        "--model.init_args.gamma",
        "2",
    ]


@pytest.mark.parametrize("model", ["vae", "gamma_arvm"])
def test_crash_mid_epoch_then_resume_is_exact(model, blae_checkpoint, tmp_path, monkeypatch, fault):
    monkeypatch.chdir(tmp_path)
    base = {
        "vae": ["-c", VAE_CONFIG, "-c", DEBUG_PRESET, *QUIET],
        "gamma_arvm": [*arvm_args(blae_checkpoint, tmp_path), "--model.init_args.dropout", "0.1"],
    }[model]
    args = [
        "fit",
        *base,
        *NO_WANDB,
        "--trainer.max_steps",
        "1000",
        "--trainer.max_epochs",
        "4",
        "--trainer.limit_train_batches",
        "3",
        "--trainer.check_val_every_n_epoch",
        "2",
    ]
    expected = final_state.of_cli(train.main([*args, "--trainer.default_root_dir", "uninterrupted"]))
    record = fault.tried(f"crash (exception) mid-epoch in {model} (epoch 1, step 5)")
    with pytest.raises(InjectedFault):
        train.main([*args, "--trainer.default_root_dir", "resumed", *inject("raise", step=5)])
    assert load(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["global_step"] == 3  # the epoch-end last.ckpt of epoch 0
    resumed = final_state.of_cli(train.main([*args, "--trainer.default_root_dir", "resumed", "--ckpt_path", "last"]))
    fault.survived(f"resumed from the epoch-0 last.ckpt: {resumed.same_as(expected)}", record=record)


# ------------------------------------------------------------------------------------ DDP faults


def test_ddp_rank_failure_ends_the_whole_job_with_its_error(tmp_path, fault):
    fault.tried("DDP: rank 1 raises at step 2 (2 CPU processes)")
    run = Run(["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, *QUIET, *NO_WANDB, *DDP_ARGS, *inject("raise", step=2, rank=1)], tmp_path)
    code = run.wait(timeout=240)
    assert code != 0
    assert "injected fault on rank 1 at global step 2" in run.stderr
    assert "another rank of this job failed" in run.stderr  # rank 0 says why it stopped, in one line
    assert not list(tmp_path.rglob("*.ckpt"))
    fault.survived(f"job ended with exit {code} after {run.seconds:.0f} s, rank 1's error shown, rank 0 explained")


def process_gone(pid: int) -> bool:
    """Exited (a zombie counts: it is no longer running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def test_ddp_rank_zero_killed_stops_the_other_ranks(tmp_path, fault):
    fault.tried("DDP: rank 0 SIGKILLed (OOM killer) while rank 1 is busy")
    run = Run(["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, *QUIET, *NO_WANDB, *DDP_ARGS, *inject("hang", step=2, rank=1)], tmp_path)
    run.wait_for_marker("hang-rank1")  # rank 1 sleeps outside any collective: only the watchdog can end it
    rank1 = int((tmp_path / "markers" / "hang-rank1").read_text())
    run.sigkill()
    killed = time.monotonic()
    while not process_gone(rank1):
        if time.monotonic() - killed > 60:
            os.kill(rank1, 9)
            raise AssertionError("rank 1 outlived rank 0 by 60 s")
        time.sleep(0.2)
    assert "the process that launched it" in run.stderr and "is gone, stopping this rank too" in run.stderr
    fault.survived(f"rank 1 stopped {time.monotonic() - killed:.0f} s after rank 0 died (instead of the 30 min process-group timeout)")


def test_ddp_validation_set_smaller_than_the_world_size(tmp_path, fault):
    fault.tried("DDP: 1 validation image for 2 ranks")
    run = Run(
        [
            "fit",
            "-c",
            DIGITS_CONFIG,
            "-c",
            DEBUG_PRESET,
            *QUIET,
            *NO_WANDB,
            *DDP_ARGS,
            *results_file(),
            "--data.init_args.val_fraction",
            "0.0005",
            "--trainer.limit_val_batches",
            "1.0",
        ],
        tmp_path,
    )
    assert run.wait() == 0, run.stderr[-4000:]
    metrics = json.loads((tmp_path / "results.json").read_text())["metrics"]
    assert 0 < metrics["val/psnr"] < 100
    rng = load(next(tmp_path.rglob("last.ckpt")))["callbacks"]["ResumableRun"]["rng"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])  # each rank's own stream, both kept
    fault.survived("validation ran (the sampler pads the one image), checkpoint holds both ranks' RNG states")


# ------------------------------------------------------------------------------------ faults inside a run


LONGER = [
    "--trainer.max_steps",
    "-1",
    "--trainer.max_epochs",
    "2",
    "--trainer.limit_train_batches",
    "3",
    "--trainer.check_val_every_n_epoch",
    "1",
]


@pytest.fixture
def cli(tmp_path, monkeypatch, capfd):
    """`train.py` from the command line, in this process: (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEPS_DEBUG", raising=False)
    monkeypatch.delenv("MEPS_RUN_ID", raising=False)  # a fresh shell: no run id left by earlier in-process runs

    def run(args: list[str]) -> tuple[int, str]:
        return command_in_process(train.console_main, args, capfd)

    return run


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(cli, tmp_path, fault):
    fault.tried("NaN loss (a NaN pixel at step 4)")
    code, err = cli(["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, *QUIET, *NO_WANDB, *LONGER, *inject("nan", step=4)])
    assert code == 1 and "Traceback" not in err
    [line] = error_lines(err)
    assert "training loss is nan at global step 4 (epoch 1, batch 1)" in line and "last.ckpt" in line
    checkpoints = tmp_path / "outputs" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["blae-000.ckpt", "last.ckpt"]
    last = load(checkpoints / "last.ckpt")
    assert last["global_step"] == 3 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
    fault.survived("exit 1, one line naming step 4; last.ckpt = step 3, finite")


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(cli, tmp_path, fault):
    fault.tried("disk full (ENOSPC) half-way through a checkpoint write")
    code, err = cli(["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, *QUIET, *NO_WANDB, *LONGER, *inject("disk_full", step=4)])
    [line] = error_lines(err)
    assert code == 1 and "No space left on device" in line and "Traceback" not in err
    checkpoints = tmp_path / "outputs" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["blae-000.ckpt", "last.ckpt"]  # no partial file
    assert load(checkpoints / "last.ckpt")["global_step"] == 3
    fault.survived("exit 1, one line; last.ckpt (step 3) intact, no partial file left")


def test_token_cache_from_another_checkpoint_is_rebuilt(cli, blae_checkpoint, tmp_path, fault):
    fault.tried("token cache of another BL-AE checkpoint under this checkpoint's key")
    assert cli(["fit", *arvm_args(blae_checkpoint, tmp_path), *NO_WANDB])[0] == 0
    [cache] = (tmp_path / "tokens").iterdir()
    other = tmp_path / "other" / "checkpoints" / "last.ckpt"
    other.parent.mkdir(parents=True)
    checkpoint = torch.load(blae_checkpoint, weights_only=False)
    checkpoint["state_dict"] = {
        k: v + 0.3 * torch.randn_like(v) if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()
    }
    torch.save(checkpoint, other)
    other_sha = file_sha256(other)
    stale = cache.with_name(cache.name.replace(file_sha256(blae_checkpoint)[:16], other_sha[:16]))
    shutil.copytree(cache, stale)  # the old tokens, filed under the new checkpoint's key
    with pytest.warns(UserWarning, match="rebuilding the token cache .*autoencoder_sha256"):
        code, err = cli(["fit", *arvm_args(other, tmp_path), *NO_WANDB])
    assert code == 0, err[-3000:]
    assert json.loads((stale / "meta.json").read_text())["autoencoder_sha256"] == other_sha
    fault.survived("sha256 mismatch detected, cache rebuilt from the right checkpoint, run finished")


def test_disk_full_while_writing_the_token_cache_leaves_no_cache(cli, blae_checkpoint, tmp_path, monkeypatch, fault):
    fault.tried("disk full (ENOSPC) while writing the token cache")
    save_to_disk = Dataset.save_to_disk

    def disk_full(self, path, *args, **kwargs):
        save_to_disk(self, path, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(Dataset, "save_to_disk", disk_full)
    code, err = cli(["fit", *arvm_args(blae_checkpoint, tmp_path), *NO_WANDB])
    [line] = error_lines(err)
    assert code == 1 and "No space left on device" in line
    assert list((tmp_path / "tokens").iterdir()) == []  # neither a cache nor a partial folder
    assert not list(tmp_path.rglob("*.ckpt"))
    fault.survived("exit 1, one line; no cache folder and no partial left to be reused")


# ------------------------------------------------------------------------------------ bad inputs


@pytest.fixture
def wrong_kind_checkpoint(blae_checkpoint, tmp_path) -> Path:
    """A checkpoint of another model (the VAE) where a BL-AE is expected."""
    checkpoint = torch.load(blae_checkpoint, weights_only=False)
    checkpoint["hyper_parameters"] = {**checkpoint["hyper_parameters"], "_class_path": "lightning_modules.GaussianVAE"}
    path = tmp_path / "inputs" / "vae.ckpt"
    path.parent.mkdir()
    torch.save(checkpoint, path)
    return path


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")


@pytest.fixture
def corrupt_image_folder(tmp_path) -> Path:
    folder = tmp_path / "broken_images"
    folder.mkdir()
    for i in range(3):
        (folder / f"img{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(40))
    return folder


BLAE = ["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, *QUIET]
BAD_INPUTS = {
    # name: (arguments (after the fixtures fill in PATHS), exit code, what the one line must say)
    "γ-ARVM with --model.init_args.gamma 0": (["ARVM", "--model.init_args.gamma", "0"], 2, "gamma must be an int >= 1"),
    "γ-ARVM with --model.init_args.gamma -3": (["ARVM", "--model.init_args.gamma", "-3"], 2, "gamma must be an int >= 1"),
    "γ-ARVM on a checkpoint of the wrong kind (VAE)": (
        ["ARVM", "--data.init_args.autoencoder", "WRONG_KIND"],
        2,
        "is not a BL-AE checkpoint: it is a checkpoint of lightning_modules.GaussianVAE",
    ),
    "γ-ARVM on a BL-AE of the wrong shape (8 px for 16 px data)": (
        ["ARVM", "--data.init_args.image_size", "16"],
        2,
        "was trained on image_size=8",
    ),
    "γ-ARVM on a missing checkpoint": (["ARVM", "--data.init_args.autoencoder", "missing.ckpt"], 2, "does not exist"),
    "--ckpt_path naming no file": ([*BLAE, "--ckpt_path", "missing.ckpt"], 2, "--ckpt_path 'missing.ckpt' does not exist"),
    "--ckpt_path last with no unfinished run": ([*BLAE, "--ckpt_path", "last"], 2, "--ckpt_path last: no unfinished run of"),
    "config key that does not exist": ([*BLAE, "--model.init_args.no_such_key", "1"], 2, "no_such_key"),
    "Hub id not cached with HF_HUB_OFFLINE=1": ([*BLAE, "--data.init_args.path", "someone/not-cached"], 2, "HF_HUB_OFFLINE=1"),
    "empty split after dropping undecodable images": (
        [*BLAE, "--data.init_args.path", "BROKEN_FOLDER", "--data.init_args.skip_corrupt", "true", "--data.init_args.image_size", "8"],
        2,
        "empty after dropping undecodable",
    ),
    "images outside [-1, 1] (a data module serving 0..255)": (
        [*BLAE, *NO_WANDB, "--data", "tests.helpers.OutOfRangeDigits"],
        2,
        "but the models take images scaled to [-1, 1]",
    ),
}


def test_float_images_outside_the_pixel_range_are_named(cli, tmp_path, fault):
    from PIL import Image

    folder = tmp_path / "float_tiffs"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    for i in range(24):  # scientific data: float32 intensities in [0, 1]
        Image.fromarray(torch.rand(8, 8, generator=generator).numpy(), "F").save(folder / f"img{i:02d}.tiff")
    fault.tried("bad input: float TIFF images with values in [0, 1] (pixel range 0..255 expected)")
    code, err = cli([*BLAE, *NO_WANDB, "--data.init_args.path", str(folder)])
    assert code == 2 and "img" in err and "range" in err
    fault.survived(f"exit {code}: the file and its value range are named")


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(
    name, cli, blae_checkpoint, wrong_kind_checkpoint, offline_hub, corrupt_image_folder, tmp_path, fault
):
    args, expected_code, says = BAD_INPUTS[name]
    replace = {"WRONG_KIND": str(wrong_kind_checkpoint), "BROKEN_FOLDER": str(corrupt_image_folder)}
    args = [replace.get(a, a) for a in args]
    if args[0] == "ARVM":
        args = ["fit", *arvm_args(blae_checkpoint, tmp_path), *args[1:]]
    fault.tried(f"bad input: {name}")
    code, err = cli(args)
    assert code == expected_code and says in err, err[-3000:]
    assert "Traceback" not in err and "usage:" not in err
    [line] = error_lines(err)
    assert says in line
    outputs = tmp_path / "outputs"
    assert not list(outputs.rglob("*.ckpt")) and not (outputs / "wandb").exists() and not (outputs / "meps-ldh").exists()
    fault.survived(f"exit {code}: {says}")

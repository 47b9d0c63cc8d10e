"""The main job: does memorization rise with γ? `python sweep.py -c configs/sweeps/digits.yaml`.

Stages, each a `train.py` run (its own W&B run, all in one W&B group):
  1. BL-AE (fit), 2. Gaussian VAE baseline (fit), then for every γ:
  3. kernel γ-ARVM (validate: nothing to train), 4. neural γ-ARVM (fit).
The tokens are encoded once (the token cache of LatentTokenDataModule, keyed by checkpoint hash).
Every run writes `results.json`; a finished cell whose arguments did not change, and whose results still
hold what it promises (its checkpoint, its metrics), is reused; a cell stopped by SIGTERM/SIGUSR1/Ctrl-C
resumes its own run from its checkpoint (exit code 75 until then; see docs/clusters.md), so the same
command resumes an interrupted sweep. The report (report.json, report.md, plots) is written at the end.

Same override syntax as train.py: --data.path uoft-cs/cifar10, --gammas [1,2,global],
--trainer.devices 4 (passed through to every run; several devices run each stage in its own
process, one device runs the stages in this process, which saves the start-up of each).
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from callbacks.wandb_run import RUN_ID_ENV
from networks.gamma_mask import gamma_name, parse_gamma
from reporting import log_summary_run, write_report
from runtime import exit_codes
from runtime.atomic_files import read_json, write_json
from runtime.errors import BadInput, Preempted, one_line_error
from runtime.signals import forward_to, stop_at_once
from runtime.sweep_cells import CellFailed, attempt, check_sweep_arguments, missing_promise

REPO_ROOT = Path(__file__).resolve().parent


@dataclass
class DataOverrides:
    """Applied to every stage's data module (None = keep the stage config's value)."""

    path: str | None = None
    image_column: str | None = None
    image_size: int | None = None
    channels: int | None = None
    max_train_samples: int | None = None


@dataclass
class TrainerOverrides:
    """Passed through to every run (None = keep the stage config's value)."""

    accelerator: str | None = None
    devices: int | str | None = None
    num_nodes: int | None = None
    strategy: str | None = None
    precision: str | None = None


@dataclass
class Stage:
    config: str
    args: list[str] = field(default_factory=list)


@dataclass
class Cell:
    """One run of the sweep: its name, its train.py arguments and where its results land."""

    name: str
    subcommand: str
    args: list[str]
    folder: Path

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps([self.subcommand, self.args]).encode()).hexdigest()[:16]

    @property
    def results_path(self) -> Path:
        return self.folder / "results.json"

    def recorded(self) -> dict | None:
        """The results of an earlier run of exactly these arguments, complete or not."""
        record = read_json(self.results_path)
        return record if isinstance(record, dict) and record.get("cell_key") == self.key else None

    def finished(self) -> dict | None:
        """The results, when they hold everything the cell promises (``runtime/sweep_cells.py``)."""
        record = self.recorded()
        return record if record is not None and missing_promise(record, self.subcommand) is None else None


def resolve_config_paths(args: list[str]) -> list[str]:
    """`-c configs/...` inside a stage's args works from any folder: relative paths fall back to the repo."""
    resolved = list(args)
    for i, arg in enumerate(args[:-1]):
        path = Path(args[i + 1])
        if arg in ("-c", "--config") and not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
            resolved[i + 1] = str(REPO_ROOT / path)
    return resolved


def override_args(prefix: str, overrides) -> list[str]:
    return [arg for key, value in asdict(overrides).items() if value is not None for arg in (f"--{prefix}.{key}", str(value))]


class Sweep:
    def __init__(self, out_dir: str, gammas: list, blae: Stage, vae: Stage, kernel: Stage, neural: Stage,
                 data: DataOverrides, trainer: TrainerOverrides, group: str | None, threads: int | None = None):
        self.gammas = [parse_gamma(g) for g in gammas]
        check_sweep_arguments(out_dir, self.gammas)
        self.out_dir = Path(out_dir).resolve()
        self.stages = {"blae": blae, "vae": vae, "kernel": kernel, "neural": neural}
        self.data, self.trainer = data, trainer
        self.group = group or f"sweep-{self.out_dir.name}"
        self.in_process = str(trainer.devices or 1) == "1" and (trainer.num_nodes or 1) == 1
        self.threads = threads
        self.results: dict[str, dict] = {}
        self.started = time.time()

    def cell(self, name: str, stage: str, subcommand: str, extra: list[str] = ()) -> Cell:
        folder = self.out_dir / "cells" / name
        spec = self.stages[stage]
        args = [
            *resolve_config_paths(["-c", spec.config, *spec.args]),
            *override_args("data.init_args", self.data), *override_args("trainer", self.trainer), *extra,
            "--trainer.logger.init_args.save_dir", str(self.out_dir / "runs"),
            "--trainer.logger.init_args.group", self.group,
            "--trainer.logger.init_args.name", name,
            "--trainer.callbacks+=callbacks.results_file.ResultsFile",
            "--trainer.callbacks.init_args.path", str(folder / "results.json.partial"),
            "--trainer.callbacks+=callbacks.image_logger.ImageLogger",
            "--trainer.callbacks.init_args.local_dir", str(folder / "images"),
            "--trainer.callbacks.init_args.max_images", "64",
        ]
        return Cell(name, subcommand, args, folder)

    def run(self, cell: Cell) -> dict:
        """Reuse a finished cell, resume an interrupted one, or run it; record its key beside its metrics."""
        done = cell.finished()
        if done is not None:
            self.say(f"{cell.name}: reused (finished earlier)")
            return done
        if (broken := cell.recorded()) is not None:
            self.say(f"{cell.name}: rebuilt ({missing_promise(broken, cell.subcommand)})")
        cell.folder.mkdir(parents=True, exist_ok=True)
        start = time.time()
        now = attempt(cell.folder, cell.key, self.out_dir / "runs")
        if now.message:
            self.say(f"{cell.name}: {now.message}")
        self.execute(cell, now.args)
        partial = cell.folder / "results.json.partial"
        if not partial.is_file():
            raise RuntimeError(f"{cell.name}: train.py {cell.subcommand} finished without writing {partial}")
        record = {**json.loads(partial.read_text()), "cell_key": cell.key, "seconds": time.time() - start,
                  "args": [cell.subcommand, *cell.args]}
        if (missing := missing_promise(record, cell.subcommand)) is not None:
            raise BadInput(f"sweep cell {cell.name}: {missing}")
        write_json(cell.results_path, record)
        partial.unlink()
        self.say(f"{cell.name}: done in {record['seconds']:.0f} s")
        return record

    def execute(self, cell: Cell, extra: list[str] = ()) -> None:
        argv = [cell.subcommand, *cell.args, *extra]
        if self.in_process:
            import wandb
            import train

            os.environ.pop(RUN_ID_ENV, None)
            own_argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI reads only `argv`, as a fresh process would
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                train.main(argv)
            finally:
                sys.argv = own_argv
                wandb.finish()
                os.environ.pop(RUN_ID_ENV, None)
            return
        env = {k: v for k, v in os.environ.items() if k != RUN_ID_ENV}
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), *argv], env=env)
        with forward_to(process):  # SIGTERM/SIGUSR1: the run checkpoints and exits 75, then so does the sweep
            code = process.wait()
        if code == exit_codes.RESUMABLE:
            raise Preempted(f"sweep cell {cell.name} was stopped with a checkpoint", "a stop request")
        if code != 0:
            raise CellFailed(f"sweep cell {cell.name}: train.py {cell.subcommand} exited with {code} (its error is above)", code)

    def say(self, line: str) -> None:
        print(f"[sweep {time.time() - self.started:6.0f} s] {line}", flush=True)

    def __call__(self) -> Path:
        blae = self.run(self.cell("blae", "blae", "fit"))
        checkpoint = blae["best_checkpoint"] or blae["last_checkpoint"]
        self.results["blae"] = blae
        self.results["vae"] = self.run(self.cell("vae", "vae", "fit"))
        token_args = ["--data.init_args.autoencoder", checkpoint]
        for gamma in self.gammas:
            label = gamma_name(gamma)
            for stage, subcommand in (("kernel", "validate"), ("neural", "fit")):
                name = f"{stage}-gamma-{label}"
                self.results[name] = self.run(self.cell(name, stage, subcommand, [*token_args, "--model.init_args.gamma", label]))
        report = write_report(self.out_dir, self.results, self.gammas, wall_s=time.time() - self.started)
        summary_run = log_summary_run(self.out_dir, self.group)
        self.say(f"report: {report}")
        self.say(f"W&B summary run (group {self.group}): {summary_run}")
        return report


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.splitlines()[0], parser_mode="omegaconf+")
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    parser.add_argument("--out_dir", type=str, default="outputs/sweeps/digits")
    parser.add_argument("--gammas", type=list[int | str], default=[1, 2, 3, 4, "global"])
    parser.add_argument("--group", type=str | None, default=None, help="W&B group of the runs (default: sweep-<out_dir name>)")
    parser.add_argument("--threads", type=int | None, default=None, help="torch intra-op threads per run (default: torch's choice)")
    for stage in ("blae", "vae", "kernel", "neural"):
        parser.add_argument(f"--{stage}", type=Stage, required=True)
    parser.add_argument("--data", type=DataOverrides, default=DataOverrides())
    parser.add_argument("--trainer", type=TrainerOverrides, default=TrainerOverrides())
    return parser


def main(args: list[str] | None = None) -> Path:
    parser = build_parser()
    config = parser.instantiate(parser.parse_args(args))
    return Sweep(config.out_dir, config.gammas, config.blae, config.vae, config.kernel, config.neural,
                 config.data, config.trainer, config.group, config.threads)()


def console_main(argv: list[str] | None = None) -> int:
    """``python sweep.py ...``: a bad argument or a failed cell is one line; a stop request leaves every finished
    cell and the interrupted cell's checkpoint, and the same command resumes (exit code 75)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        with stop_at_once():
            main(argv)
    except Preempted as stop:
        print(f"{stop} (exit code {exit_codes.RESUMABLE}: resumable)\nto resume: {shlex.join(['python', 'sweep.py', *argv])}",
              file=sys.stderr, flush=True)
        return exit_codes.RESUMABLE
    except Exception as err:
        line = None if os.environ.get("MEPS_DEBUG") else one_line_error(err)
        if line is None:
            raise
        print(f"error: {line.message}  [MEPS_DEBUG=1 shows the traceback]", file=sys.stderr, flush=True)
        return line.exit_code
    return exit_codes.OK


if __name__ == "__main__":
    code = console_main()
    if code == exit_codes.RESUMABLE:
        exit_codes.exit_now(code)
    sys.exit(code)

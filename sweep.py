"""The main job: does memorization rise with γ? `python sweep.py -c configs/sweeps/digits.yaml`.

Cells, each a `train.py` run (its own W&B run, all in one W&B group), each with a role:
  blae              the BL-AE (fit); every token cell below reads its tokens and decodes with it
  vae[-beta-<β>]    the Gaussian VAE baseline (fit), once per --vae_betas (MEPS: overlap vs β)
  <model>-gamma-<γ> kernel (validate: nothing to train) and neural (fit) γ-ARVM, for every γ
  <model>-gamma-<γ>-seed<s>   the same cell at another seed, for --spread_cells x --spread_seeds
  <model>-gamma-<γ>-n<N>      the same cell on N training images, for --phase_models x γ x --train_sizes
                              (the phase diagram; a size the main cells already use is not run twice)
  probes-<model>-gamma-<γ>    prefix extraction and forward-backward (validate) on the main cell's model, for
                              --probe_models x γ when --probes is given (configs/sweeps/probes.yaml, docs/probes.md)
The tokens are encoded once (the token cache of LatentTokenDataModule, keyed by checkpoint hash).
Every run writes `results.json` (its metrics, role, CPU seconds); a finished cell whose arguments did not
change, and whose results still hold what it promises (its checkpoint, its metrics), is reused; a cell stopped
by SIGTERM/SIGUSR1/Ctrl-C resumes its own run from its checkpoint (exit code 75 until then; see
docs/clusters.md), so the same command resumes an interrupted sweep. The report (report.json, report.md,
plots, a W&B summary run) is written at the end.

Same override syntax as train.py: --data.path uoft-cs/cifar10, --gammas [1,2,global],
--train_sizes [100,300,null], --trainer.devices 4 (passed through to every run; several devices
run each cell in its own `python train.py`, one after the other). On one device, `--workers N` runs N
independent cells side by side, each in a fresh process forked from a server that imported
train.py once; `--workers 1` runs them in this process. Every way, a cell's whole output goes to
cells/<name>/log.txt and the console shows one line per cell (its time and headline figure) with the
overall progress (runtime/sweep_console.py).
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import multiprocessing
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import wait as wait_for_processes
from pathlib import Path
from typing import Callable

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from networks.gamma_mask import gamma_name, parse_gamma
from reporting import log_summary_run, write_report
from runtime import exit_codes
from runtime.atomic_files import read_json, write_json
from runtime.console import report_error
from runtime.errors import BadInput, Preempted, one_line_error
from runtime.signals import STOP_SIGNALS, StopRequests, forward_to, stop_at_once
from runtime.sweep_cells import CellFailed, attempt, check_sweep_arguments, missing_promise
from runtime.quiet import quiet_known_noise
from runtime.sweep_console import cell_line, output_to
from runtime.wandb_run import RUN_ID_ENV, ensure_wandb_mode

REPO_ROOT = Path(__file__).resolve().parent
TOKEN_MODELS = ("kernel", "neural")
SUBCOMMAND = {"blae": "fit", "vae": "fit", "kernel": "validate", "neural": "fit"}


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

    max_steps: int | None = None
    max_epochs: int | None = None
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
    """One run of the sweep: its name, its train.py arguments, where its results land, what it stands for."""

    name: str
    subcommand: str
    args: list[str]
    folder: Path
    role: dict = field(default_factory=dict)  # {"stage", "model", "gamma", "beta", "seed", "train_size"}: for the report

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

    @property
    def partial_path(self) -> Path:
        return self.folder / "results.json.partial"

    def finished(self) -> dict | None:
        """The results, when they hold everything the cell promises (``runtime/sweep_cells.py``)."""
        record = self.recorded()
        return record if record is not None and missing_promise(record, self.subcommand) is None else None


@dataclass
class Skip:
    """What `Planned.build` returns for a cell that would tell nothing (and why)."""

    reason: str


@dataclass
class Planned:
    """A cell to run once the cells it `needs` have finished; `build` makes it from their records.

    `build` may return the name of a finished cell instead (this one is that one: nothing to run),
    or a `Skip`.
    """

    name: str
    needs: tuple[str, ...]
    build: Callable[[dict[str, dict]], Cell | str | Skip]
    cost: float = 1.0
    """What the cell is expected to take (CPU seconds of a digits cell, EXPECTED_CPU_S): the start order only."""


# Rough CPU seconds of each stage's cell in the digits demo (one thread), for the start order alone: the
# longest chain first (the BL-AE, then the neural global cell, whose seed-spread cell waits on it), so that
# no long cell is left to run alone at the end. Other data only shifts the order, never a result.
EXPECTED_CPU_S = {"blae": 60.0, "vae": 45.0, "kernel": 15.0, "neural": 150.0, "probes": 15.0}


def critical_paths(pending: list[Planned]) -> dict[str, float]:
    """name -> the cell's cost plus the longest chain of pending cells that wait on it (needs come before
    the cells that need them in a plan, so one pass from the end settles every chain)."""
    chain: dict[str, float] = {}
    for planned in reversed(pending):
        waiting = [chain[p.name] for p in pending if planned.name in p.needs and p.name in chain]
        chain[planned.name] = planned.cost + max(waiting, default=0.0)
    return chain


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


def size_label(train_size: int | None) -> str:
    return "all" if train_size is None else str(train_size)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------------------------
# running one cell: in this process, in a forked worker, or as `python train.py` (several devices)


def run_in_process(cell: Cell, threads: int | None, extra: list[str] = ()) -> None:
    """`train.py <subcommand> <args>` in this process, as a fresh process would see it (a stop raises Preempted)."""
    import wandb

    import train

    os.environ.pop(RUN_ID_ENV, None)
    own_argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI reads only `argv`, as a fresh process would
    if threads:
        torch.set_num_threads(threads)
    try:
        train.main([cell.subcommand, *cell.args, *extra])
    finally:
        sys.argv = own_argv
        wandb.finish()
        os.environ.pop(RUN_ID_ENV, None)


def run_as_script(cell: Cell, threads: int | None, extra: list[str] = ()) -> None:
    """`python train.py ...` (several devices: Lightning launches the ranks); SIGTERM/SIGUSR1 are passed on."""
    env = {k: v for k, v in os.environ.items() if k != RUN_ID_ENV}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log = cell.folder / "log.txt"
    with open(log, "a", buffering=1) as sink:
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), cell.subcommand, *cell.args, *extra], env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
        with forward_to(process):  # the run checkpoints and exits 75, then so does the sweep
            code = process.wait()
    check_exit_code(cell, code, log)


def check_exit_code(cell: Cell, code: int | None, log: Path | None = None) -> None:
    """A cell's exit code as the sweep's outcome: 75 = stopped with a checkpoint, anything else but 0 = failed."""
    if code == exit_codes.RESUMABLE:
        raise Preempted(f"sweep cell {cell.name} was stopped with a checkpoint", "a stop request")
    if code != 0:
        where = f"its log {log} says why" if log is not None else "its error is above"
        raise CellFailed(f"sweep cell {cell.name}: train.py {cell.subcommand} exited with {code} ({where})",
                         code if isinstance(code, int) and code > 0 else exit_codes.FAULT)


def seal(cell: Cell, seconds: float, cpu_s: float) -> dict:
    """results.json.partial (written by the run) -> results.json with the cell's key, role and costs,
    once it holds what the cell promises (else nothing is recorded and the next sweep runs it again)."""
    if not cell.partial_path.is_file():
        raise RuntimeError(f"{cell.name}: train.py {cell.subcommand} finished without writing {cell.partial_path}")
    record = {**json.loads(cell.partial_path.read_text()), "cell_key": cell.key, "role": cell.role,
              "seconds": seconds, "cpu_s": cpu_s, "args": [cell.subcommand, *cell.args]}
    if (missing := missing_promise(record, cell.subcommand)) is not None:
        raise BadInput(f"sweep cell {cell.name}: {missing}")
    write_json(cell.results_path, record)
    cell.partial_path.unlink()
    return record


def worker_main(cell: Cell, threads: int | None, extra: list[str]) -> None:
    """Entry of a forked worker: one cell, its output in the cell's log.txt; exit code 75 when stopped with a
    checkpoint, a one-line error (in the log) and its code when it failed."""
    log = open(cell.folder / "log.txt", "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    start, cpu_start = time.time(), cpu_seconds()
    try:
        with stop_at_once():
            run_in_process(cell, threads, extra)
            seal(cell, time.time() - start, cpu_seconds() - cpu_start)
    except Preempted as stop:
        print(stop, flush=True)
        exit_codes.exit_now(exit_codes.RESUMABLE)
    except Exception as err:
        line = one_line_error(err)
        if line is None:
            raise
        print(f"error: {line.message}", flush=True)
        exit_codes.exit_now(line.exit_code)


def last_error(cell: Cell) -> str:
    """The last `error:` line of a worker's log (what the cell failed of), or where to look."""
    log = cell.folder / "log.txt"
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return next((line for line in reversed(lines) if line.startswith("error:")), f"see {log}")


@contextlib.contextmanager
def forward_to_workers(running: dict):
    """While workers run, SIGTERM/SIGUSR1 to the sweep are recorded and passed on to each running worker (a
    scheduler may signal the sweep's process only); Ctrl-C reaches the workers from the terminal already."""
    stop = StopRequests(STOP_SIGNALS)

    def forward(signum, frame) -> None:
        if stop.received is None:
            stop.received = signum
        if signum == signal.SIGINT:
            return
        for process, _ in list(running.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)

    stop.handle = forward
    stop.install()
    try:
        yield stop
    finally:
        stop.restore()


def worker_context():
    """Processes forked from a server that imported train.py once (seconds of imports saved per cell)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        context.set_forkserver_preload(["train"])
    return context


# ------------------------------------------------------------------------------------------------


class Sweep:
    def __init__(self, out_dir: str, gammas: list, blae: Stage, vae: Stage, kernel: Stage, neural: Stage,
                 data: DataOverrides, trainer: TrainerOverrides, group: str | None, threads: int | None = None,
                 workers: int = 1, vae_betas: list[float] | None = None, spread_cells: list[str] = (),
                 spread_seeds: list[int] = (), train_sizes: list[int | None] = (), phase_models: list[str] = ("kernel",),
                 phase_args: dict[str, list[str]] | None = None, probes: Stage | None = None,
                 probe_models: list[str] = TOKEN_MODELS):
        self.gammas = [parse_gamma(g) for g in gammas]
        check_sweep_arguments(out_dir, self.gammas)
        self.out_dir = Path(out_dir).resolve()
        self.stages = {"blae": blae, "vae": vae, "kernel": kernel, "neural": neural}
        self.data, self.trainer = data, trainer
        self.group = group or f"sweep-{self.out_dir.name}"
        self.in_process = str(trainer.devices or 1) == "1" and (trainer.num_nodes or 1) == 1
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        if workers > 1 and not self.in_process:
            raise ValueError(f"--workers {workers} runs cells side by side on one device; with --trainer.devices "
                             f"{trainer.devices} the cells run one after the other: use --workers 1")
        self.threads, self.workers = threads, workers
        self.vae_betas = list(vae_betas) if vae_betas else [None]
        self.spread_cells, self.spread_seeds = list(spread_cells), list(spread_seeds)
        self.train_sizes, self.phase_models = list(train_sizes), list(phase_models)
        self.phase_args = phase_args or {}
        self.probes, self.probe_models = probes, list(probe_models)
        for name in self.spread_cells:
            if name.split("-")[0] not in TOKEN_MODELS or "-" not in name:
                raise ValueError(f"--spread_cells {name!r}: spread cells are <model>-<γ>, model one of {TOKEN_MODELS}")
            parse_gamma(name.split("-", 1)[1])
        for name in [*self.phase_models, *self.probe_models]:
            if name not in TOKEN_MODELS:
                raise ValueError(f"--phase_models / --probe_models {name!r}: models are one of {TOKEN_MODELS}")
        self.results: dict[str, dict] = {}
        self.planned, self.skipped = 0, 0  # cells in the plan, and skipped ones (the progress on each console line)
        self.started, self.cpu_started = time.time(), cpu_seconds()
        self.cpu_in_cells = 0.0  # CPU seconds of the cells run in this process (counted in cpu_seconds() too)

    # --- the plan -------------------------------------------------------------------------------
    def cell(self, name: str, stage: str, extra: list[str] = (), role: dict | None = None) -> Cell:
        folder = self.out_dir / "cells" / name
        spec = self.stages[stage]
        args = [
            *resolve_config_paths(["-c", spec.config, *spec.args]),
            *override_args("data.init_args", self.data), *override_args("trainer", self.trainer),
            *resolve_config_paths(list(extra)),
            "--trainer.logger.init_args.save_dir", str(self.out_dir / "runs"),
            "--trainer.logger.init_args.group", self.group,
            "--trainer.logger.init_args.name", name,
            "--trainer.callbacks+=callbacks.results_file.ResultsFile",
            "--trainer.callbacks.init_args.path", str(folder / "results.json.partial"),
            "--trainer.callbacks+=callbacks.image_logger.ImageLogger",
            "--trainer.callbacks.init_args.local_dir", str(folder / "images"),
            "--trainer.callbacks.init_args.max_images", "64",
        ]
        return Cell(name, SUBCOMMAND[stage], args, folder, {"stage": stage, **(role or {})})

    def token_cell(self, results: dict, model: str, gamma, name: str, extra: list[str] = (), **role) -> Cell:
        blae = results["blae"]
        checkpoint = blae["best_checkpoint"] or blae["last_checkpoint"]
        args = ["--data.init_args.autoencoder", checkpoint, "--model.init_args.gamma", gamma_name(gamma), *extra]
        return self.cell(name, model, args, {"model": model, "gamma": gamma_name(gamma), **role})

    def plan(self) -> list[Planned]:
        """Every cell of the sweep, needs before the cells that need them (`next_ready` picks the start order)."""
        cost = EXPECTED_CPU_S
        plan = [Planned("blae", (), lambda results: self.cell("blae", "blae", role={"kind": "autoencoder"}), cost["blae"])]
        for beta in self.vae_betas:
            name = "vae" if beta is None else f"vae-beta-{beta:g}"
            extra = [] if beta is None else ["--model.init_args.kl_weight", str(beta)]
            plan.append(Planned(name, (), lambda results, n=name, e=extra, b=beta: self.cell(n, "vae", e, {"kind": "vae", "beta": b}),
                                cost["vae"]))
        # kernel cells before neural ones (the order among equals): the first computes the held-out features the others reuse
        for model in TOKEN_MODELS:
            for gamma in self.gammas:
                name = f"{model}-gamma-{gamma_name(gamma)}"
                plan.append(Planned(name, ("blae",), lambda results, m=model, g=gamma, n=name:
                                    self.token_cell(results, m, g, n, kind="gamma"), cost[model]))
        for spread in self.spread_cells:
            model, label = spread.split("-", 1)
            gamma = parse_gamma(label)
            main = f"{model}-gamma-{gamma_name(gamma)}"
            for seed in self.spread_seeds:
                name = f"{main}-seed{seed}"
                plan.append(Planned(name, ("blae", main), lambda results, m=model, g=gamma, n=name, s=seed, main=main:
                                    self.spread_cell(results, m, g, n, s, main), cost[model]))
        for model in self.phase_models:
            for gamma in self.gammas:
                main = f"{model}-gamma-{gamma_name(gamma)}"
                for size in self.train_sizes:
                    name = f"{main}-n{size_label(size)}"
                    plan.append(Planned(name, ("blae", main), lambda results, m=model, g=gamma, n=name, size=size, main=main:
                                        self.phase_cell(results, m, g, n, size, main), cost[model]))
        for model in self.probe_models if self.probes is not None else ():
            for gamma in self.gammas:
                main = f"{model}-gamma-{gamma_name(gamma)}"
                plan.append(Planned(f"probes-{main}", ("blae", main), lambda results, m=model, g=gamma, main=main:
                                    self.probe_cell(results, m, g, main), cost["probes"]))
        return plan

    def probe_cell(self, results: dict, model: str, gamma, main: str) -> Cell:
        """`validate` with the probes on the main cell's model: the kernel estimator of the same data, the neural
        model from the main cell's final checkpoint (the fitted model its memorization was measured on)."""
        extra = resolve_config_paths(["-c", self.probes.config, *self.probes.args])
        if model == "neural":
            extra += ["--ckpt_path", results[main].get("last_checkpoint") or results[main]["best_checkpoint"]]
        cell = self.token_cell(results, model, gamma, f"probes-{main}", extra, kind="probe", of=main)
        return replace(cell, subcommand="validate")

    def spread_cell(self, results: dict, model: str, gamma, name: str, seed: int, main: str) -> Cell | Skip:
        """The main cell from another seed, unless the main cell did not fit (a spread of unfitted models says nothing)."""
        plateaued = results[main].get("metrics", {}).get("fit/plateaued")
        if model == "neural" and plateaued is not None and plateaued < 1:
            return Skip(f"{main} did not plateau within its budget")
        return self.token_cell(results, model, gamma, name, ["--seed_everything", str(seed)], kind="spread", seed=seed)

    def phase_cell(self, results: dict, model: str, gamma, name: str, size: int | None, main: str) -> Cell | str:
        """A cell of the phase diagram, or the main cell's name where that one already learned from `size` images."""
        main_size = results[main].get("metrics", {}).get("mem/train_size")
        if size is not None and main_size is not None and int(main_size) == size:
            return main
        extra = ["--data.init_args.max_train_samples", "null" if size is None else str(size), *self.phase_args.get(model, [])]
        return self.token_cell(results, model, gamma, name, extra, kind="phase", train_size=size)

    # --- running --------------------------------------------------------------------------------
    def say(self, line: str) -> None:
        """One console line, with the overall progress (cells settled of the plan, elapsed)."""
        print(f"[sweep {len(self.results) + self.skipped:2d}/{self.planned} cells {time.time() - self.started:5.0f} s] {line}", flush=True)

    def run_here(self, cell: Cell, extra: list[str]) -> dict:
        """One cell in this process (or its `python train.py`), its output in the cell's log.txt."""
        start, cpu_start = time.time(), cpu_seconds()
        run = run_in_process if self.in_process else run_as_script
        if self.in_process:
            with output_to(cell.folder / "log.txt"):
                run(cell, self.threads, extra)
        else:
            run(cell, self.threads, extra)
        record = seal(cell, time.time() - start, cpu_seconds() - cpu_start)
        self.cpu_in_cells += record["cpu_s"]
        return record

    def execute(self, plan: list[Planned]) -> None:
        """Run the plan, at most `workers` cells at a time, each as soon as the cells it needs are done.

        A stop request (SIGTERM/SIGUSR1 to the sweep) is passed on to the running workers, which checkpoint and
        exit 75; no new cell starts, and the sweep then stops with 75 too (the same command resumes)."""
        pending, running, failures, stopped = list(plan), {}, [], []
        codes: list[int | None] = []  # the exit code of each failed worker (2: a bad input, said in one line)
        context = worker_context() if self.workers > 1 else None
        guard = forward_to_workers(running) if context is not None else contextlib.nullcontext(StopRequests(()))
        with guard as stop:  # in this process, train.py's own handlers act on a stop request
            while pending or running:
                while not failures and not stopped and stop.received is None and (planned := self.next_ready(pending, running)) is not None:
                    pending.remove(planned)
                    cell = self.resolve(planned)
                    if cell is None:
                        continue
                    now = attempt(cell.folder, cell.key, self.out_dir / "runs")
                    if now.message:
                        self.say(f"{cell.name}: {now.message}")
                    if context is None:
                        self.results[cell.name] = self.run_here(cell, now.args)
                        self.say(cell_line(cell.name, self.results[cell.name]))
                        continue
                    process = context.Process(target=worker_main, args=(cell, self.threads, now.args), name=cell.name)
                    process.start()
                    running[process.sentinel] = (process, cell)
                if not running:
                    if pending and not failures and not stopped and stop.received is None:
                        raise RuntimeError(f"cells wait for cells that never ran: {[p.name for p in pending]}")
                    break
                for sentinel in wait_for_processes(list(running)):
                    process, cell = running.pop(sentinel)
                    process.join()
                    if process.exitcode == 0 and (done := cell.finished()) is not None:
                        self.results[cell.name] = done
                        self.say(cell_line(cell.name, done))
                    elif process.exitcode == exit_codes.RESUMABLE:
                        stopped.append(cell)
                        self.say(f"{cell.name}: stopped with a checkpoint (it resumes on the next run)")
                    else:
                        failures.append(cell)
                        codes.append(process.exitcode)
                        self.say(f"{cell.name}: FAILED (exit code {process.exitcode}): {last_error(cell)}")
        if failures:
            first = failures[0]
            raise CellFailed(f"sweep cells failed: {', '.join(c.name for c in failures)} ({first.name}: "
                             f"{last_error(first)}); finished cells are kept: run the sweep again to go on",
                             codes[0] if isinstance(codes[0], int) and codes[0] > 0 else exit_codes.FAULT)
        if stopped or stop.received is not None:
            names = ", ".join(c.name for c in stopped) or "no cell was running"
            raise Preempted(f"sweep stopped by {stop.name or 'a stop request'} ({names} stopped with a checkpoint)",
                            stop.name or "a stop request")

    def next_ready(self, pending: list[Planned], running: dict) -> Planned | None:
        """The pending cell whose needs are met and whose chain of waiting cells is the longest (critical path
        first; plan order among equals), if a worker is free for it."""
        if len(running) >= self.workers:
            return None
        ready = [p for p in pending if all(n in self.results for n in p.needs)]
        if not ready:
            return None
        chain = critical_paths(pending)
        return max(ready, key=lambda p: chain[p.name])  # max keeps the first of equals: plan order

    def resolve(self, planned: Planned) -> Cell | None:
        """The cell to run, or None where it is already known (reused, or the same as another cell)."""
        cell = planned.build(self.results)
        if isinstance(cell, Skip):
            self.skipped += 1
            self.say(f"{planned.name}: skipped ({cell.reason})")
            return None
        if isinstance(cell, str):  # a phase-diagram size the main cell already has
            same = self.results[cell]
            self.results[planned.name] = {**same, "role": {**same.get("role", {}), "kind": "phase", "same_as": cell}}
            self.say(f"{planned.name}: the same as {cell}")
            return None
        if (done := cell.finished()) is not None:
            self.results[cell.name] = done
            self.say(f"{cell.name}: reused (finished earlier)")
            return None
        if (broken := cell.recorded()) is not None:
            self.say(f"{cell.name}: rebuilt ({missing_promise(broken, cell.subcommand)})")
        cell.folder.mkdir(parents=True, exist_ok=True)
        return cell

    def __call__(self) -> Path:
        plan = self.plan()
        self.planned = len(plan)
        self.say(f"{self.planned} cells, at most {self.workers} at a time; each one's full output: "
                 f"{self.out_dir / 'cells' / '<name>' / 'log.txt'}")
        self.execute(plan)
        costs = {"wall_s": time.time() - self.started, "sweep_cpu_s": cpu_seconds() - self.cpu_started - self.cpu_in_cells,
                 "workers": self.workers, "threads": self.threads}
        report = write_report(self.out_dir, self.results, self.gammas, costs)
        summary_run = log_summary_run(self.out_dir, self.group)
        cells_cpu = json.loads((self.out_dir / "report.json").read_text())["costs"]["cells_cpu_s"]
        self.say(f"wall {costs['wall_s']:.0f} s; CPU of the cells {cells_cpu:.0f} s, of the sweep itself {costs['sweep_cpu_s']:.0f} s")
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
    parser.add_argument("--workers", type=int, default=1, help="cells run side by side (one device only)")
    parser.add_argument("--vae_betas", type=list[float] | None, default=None,
                        help="one VAE cell per KL weight β (default: the VAE config's own)")
    parser.add_argument("--spread_cells", type=list[str], default=[], help="cells run again at other seeds, e.g. [neural-global]")
    parser.add_argument("--spread_seeds", type=list[int], default=[], help="the other seeds (seed_everything) of --spread_cells")
    parser.add_argument("--train_sizes", type=list[int | None], default=[],
                        help="phase diagram: training-set sizes (null = the whole training split)")
    parser.add_argument("--phase_models", type=list[str], default=["kernel"], help="the models of the phase diagram")
    parser.add_argument("--phase_args", type=dict[str, list[str]], default={},
                        help="extra train.py arguments of the phase-diagram cells, per model")
    parser.add_argument("--probes", type=Stage | None, default=None,
                        help="probe cells (validate) on every main token cell: the preset and its extra arguments")
    parser.add_argument("--probe_models", type=list[str], default=list(TOKEN_MODELS), help="the models the probes run on")
    for stage in ("blae", "vae", "kernel", "neural"):
        parser.add_argument(f"--{stage}", type=Stage, required=True)
    parser.add_argument("--data", type=DataOverrides, default=DataOverrides())
    parser.add_argument("--trainer", type=TrainerOverrides, default=TrainerOverrides())
    return parser


def sweep_from_args(args: list[str] | None = None) -> Sweep:
    parser = build_parser()
    config = parser.instantiate(parser.parse_args(args))
    return Sweep(**{name: config[name] for name in inspect.signature(Sweep).parameters})


def main(args: list[str] | None = None) -> Path:
    quiet_known_noise()
    sweep = sweep_from_args(args)
    # W&B mode decided once, here: the cells (forked workers, subprocesses) inherit it, and so does the summary
    # run this process starts at the end (without a key and no WANDB_MODE, wandb.init would ask for a login)
    ensure_wandb_mode()
    return sweep()


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
        return report_error(err)
    return exit_codes.OK


if __name__ == "__main__":
    code = console_main()
    if code == exit_codes.RESUMABLE:
        exit_codes.exit_now(code)
    sys.exit(code)

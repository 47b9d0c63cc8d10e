"""A sweep run: its plan executed, at most `workers` cells at a time, each as soon as the cells it needs are
done (the longest chain of waiting cells first), finished cells reused, then the report written.

A stop request (SIGTERM/SIGUSR1/Ctrl-C) lets the running cells checkpoint, starts no new one, and ends the
sweep with exit code 75; the same command resumes it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from multiprocessing.connection import wait as wait_for_processes
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import cast

from report import log_summary_run, write_report
from report.cells import TOKEN_MODELS
from runtime import exit_codes
from runtime.errors import Preempted
from runtime.output_redirect import output_to
from runtime.signals import StopRequests
from sweep.argument_checks import check_sweep_settings
from sweep.cells import Cell, DataOverrides, Planned, Skip, Stage, TrainerOverrides
from sweep.console import cell_line
from sweep.plan import SweepPlan, critical_paths
from sweep.records import CellFailed, attempt, finished, missing_promise, recorded, seal
from sweep.slurm_settings import SlurmSettings
from sweep.workers import cpu_seconds, forward_to_workers, last_error, run_as_script, run_in_process, worker_context, worker_main


class Sweep(SweepPlan):
    """A sweep from its checked settings: `sweep()` runs its plan and writes the report (its path returned)."""

    def __init__(
        self,
        out_dir: str,
        gammas: list,
        blae: Stage,
        vae: Stage,
        kernel: Stage,
        neural: Stage,
        data: DataOverrides,
        trainer: TrainerOverrides,
        group: str | None,
        threads: int | None = None,
        workers: int = 1,
        vae_betas: list[float] | None = None,
        spread_cells: Sequence[str] = (),
        spread_seeds: Sequence[int] = (),
        train_sizes: Sequence[int | None] = (),
        phase_models: Sequence[str] = ("kernel",),
        phase_args: dict[str, list[str]] | None = None,
        probes: Stage | None = None,
        probe_models: Sequence[str] = TOKEN_MODELS,
        blae_noises: Sequence[float | str] = (),
        launcher: str = "local",
        slurm: SlurmSettings | None = None,
    ):
        # every argument, as the command checked it before importing this module (a Sweep built in code: the same checks)
        arguments = dict(locals())  # first: a comprehension has locals of its own
        gammas = check_sweep_settings(**{name: value for name, value in arguments.items() if name not in ("self", "__class__")})
        self.in_process = str(trainer.devices or 1) == "1" and (trainer.num_nodes or 1) == 1
        super().__init__(
            out_dir,
            gammas,
            {"blae": blae, "vae": vae, "kernel": kernel, "neural": neural},
            data,
            trainer,
            group,
            vae_betas,
            spread_cells,
            spread_seeds,
            train_sizes,
            phase_models,
            phase_args,
            probes,
            probe_models,
            blae_noises,
        )
        self.threads, self.workers = threads, workers
        self.launcher, self.slurm = launcher, slurm or SlurmSettings()
        self.results: dict[str, dict] = {}
        self.planned, self.skipped = 0, 0  # cells in the plan, and skipped ones (the progress on each console line)
        self.started, self.cpu_started = time.time(), cpu_seconds()
        self.cpu_in_cells = 0.0  # CPU seconds of the cells run in this process (counted in cpu_seconds() too)
        self.settings_yaml: str | None = None
        """The parsed settings as one sweep config (`sweep_from_args`): what ``--launcher slurm`` jobs rebuild the sweep from."""

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
        pending = list(plan)
        running: dict[int, tuple[BaseProcess, Cell]] = {}  # sentinel -> (worker, its cell)
        failures: list[Cell] = []
        stopped: list[Cell] = []
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
                    process, cell = running.pop(cast(int, sentinel))  # waited on the sentinels: ints
                    process.join()
                    if process.exitcode == 0 and (done := finished(cell)) is not None:
                        self.results[cell.name] = done
                        self.say(cell_line(cell.name, done))
                    elif process.exitcode == exit_codes.RESUMABLE:
                        stopped.append(cell)
                        self.say(f"{cell.name}: stopped with a checkpoint (it resumes on the next run)")
                    else:
                        failures.append(cell)
                        codes.append(process.exitcode)
                        self.say(f"{cell.name}: FAILED (exit code {process.exitcode}): {last_error(cell)}")
        if failures:  # named in plan order, not in the order parallel workers happened to finish
            order = {p.name: i for i, p in enumerate(plan)}
            ranked = sorted(zip(failures, codes, strict=True), key=lambda fc: order.get(fc[0].name, len(order)))
            first, code = ranked[0]
            raise CellFailed(
                f"sweep cells failed: {', '.join(c.name for c, _ in ranked)} ({first.name}: "
                f"{last_error(first)}); finished cells are kept: run the sweep again to go on",
                code if isinstance(code, int) and code > 0 else exit_codes.FAULT,
            )
        if stopped or stop.received is not None:
            names = ", ".join(c.name for c in stopped) or "no cell was running"
            raise Preempted(
                f"sweep stopped by {stop.name or 'a stop request'} ({names} stopped with a checkpoint)", stop.name or "a stop request"
            )

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
        if (record := recorded(cell)) is not None:  # an earlier run of these arguments: reused when complete
            if (missing := missing_promise(record, cell.subcommand, cell.role.get("stage"))) is None:
                self.results[cell.name] = record
                self.say(f"{cell.name}: reused (finished earlier)")
                return None
            self.say(f"{cell.name}: rebuilt ({missing})")
        cell.folder.mkdir(parents=True, exist_ok=True)
        return cell

    def resolve_for_job(self, plan: list[Planned], name: str) -> Cell | None:
        """The cell ``name`` as its own job builds it (``--launcher slurm``): the cells it needs, and the cells those
        need, resolved from their records on disk in plan order (`resolve`), then it; None when there is nothing to
        run (reused, skipped, the same as another cell). A cell it needs that has not finished: `CellFailed`."""
        by_name = {p.name: p for p in plan}
        wanted, waiting = set(), [name]
        while waiting:
            if (next_name := waiting.pop()) not in wanted:
                wanted.add(next_name)
                waiting.extend(by_name[next_name].needs)
        for planned in plan:
            if planned.name not in wanted:
                continue
            if missing := [n for n in planned.needs if n not in self.results]:
                raise CellFailed(f"sweep cell {planned.name} needs {', '.join(missing)}, which did not finish", exit_codes.FAULT)
            cell = self.resolve(planned)
            if planned.name == name:
                return cell
        raise KeyError(name)

    def __call__(self) -> Path:
        plan = self.plan()
        self.planned = len(plan)
        self.say(
            f"{self.planned} cells, at most {self.workers} at a time; each one's full output: "
            f"{self.out_dir / 'cells' / '<name>' / 'log.txt'}"
        )
        self.execute(plan)
        return self.write_report()

    def unfinished(self, plan: list[Planned]) -> list[str]:
        """The cells of ``plan`` whose records do not hold their results, resolved in plan order (`resolve`): what the
        report job (``--launcher slurm``) refuses to write a report without. It never runs a cell."""
        missing = []
        for planned in plan:
            if any(need not in self.results for need in planned.needs) or self.resolve(planned) is not None:
                missing.append(planned.name)
        return missing

    def write_report(self) -> Path:
        """report.json, report.md, the plots and the W&B summary run, from the cells' results (`self.results`)."""
        costs = {
            "wall_s": time.time() - self.started,
            "sweep_cpu_s": cpu_seconds() - self.cpu_started - self.cpu_in_cells,
            "workers": self.workers,
            "threads": self.threads,
        }
        report = write_report(self.out_dir, self.results, self.gammas, costs)
        summary_run = log_summary_run(self.out_dir, self.group)
        cells_cpu = json.loads((self.out_dir / "report.json").read_text())["costs"]["cells_cpu_s"]
        self.say(f"wall {costs['wall_s']:.0f} s; CPU of the cells {cells_cpu:.0f} s, of the sweep itself {costs['sweep_cpu_s']:.0f} s")
        self.say(f"report: {report}")
        self.say(f"W&B summary run (group {self.group}): {summary_run}")
        return report

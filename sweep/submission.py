"""`sweep.py --launcher slurm`: the plan's cells as SLURM jobs (submitit's ``SlurmExecutor``), the cell graph as job
dependencies, then a wait for the report job with one console line per cell as it ends.

- In plan order: a finished cell is reused (no job); a cell whose job from an earlier submission of the same
  command is still pending or running keeps that job; any other cell (missing, failed, stopped) is a new job, after
  (``afterok``) the jobs of the cells it needs that have not finished, with ``kill_on_invalid_dep=yes``: a failed
  cell cancels the cells that wait on it instead of leaving them pending forever.
- Each cell job builds its cell when it starts (`sweep/cell_job.py`): its arguments come from the records of the
  cells it needs. A final job after every cell job runs the local sweep of the same command line, which reuses
  every finished cell and writes the report (rerunning `sweep.py` does the same).
- The wait polls ``squeue`` (submitit's own job states read ``sacct``, which needs SLURM's accounting database).
  Ctrl-C stops the wait, not the jobs: the line says how to follow them and cancel them, and the same command
  waits for them again (it keeps the jobs that are still pending or running).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from runtime import exit_codes
from runtime.atomic_files import read_json, write_json
from runtime.errors import MepsFault, Preempted
from sweep.cell_job import CellJob, ReportJob, job_record, update_job_record
from sweep.cells import REPO_ROOT, Planned
from sweep.console import cell_line
from sweep.records import CellFailed
from sweep.schedule import Sweep
from sweep.slurm_settings import SlurmSettings, executor_parameters, stage_settings
from sweep.workers import last_error_in

LIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "SIGNALING"}
"""``squeue`` states of a job that has not ended (a requeued job passes through REQUEUED back to PENDING)."""
POLL_S = 2.0
REPORT_JOB_FILE = "report_job.json"
"""In submitit's folder: the report job of the last submission (its id, the sweep command line)."""
CANCELLED = -1
"""`SlurmLauncher.cell_outcome` of a cell whose job was cancelled (a cell it needs failed, or ``scancel``)."""


class Job(NamedTuple):
    """A cell's job in this submission: its id, and whether it was submitted now (False: kept from an earlier one)."""

    job_id: str
    new: bool


class Submitted(NamedTuple):
    """What `submit` did: each cell's job (cells reused or with nothing to run have none), and the report job."""

    jobs: dict[str, Job]
    report: str


def job_states(job_ids: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """job id -> (state, reason) of this user's jobs that ``squeue`` still knows (ended ones for a few minutes, then none)."""
    result = subprocess.run(
        ["squeue", "--me", "--noheader", "--states=all", "--format=%i|%T|%r"], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise MepsFault(f"squeue failed (exit code {result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    states = {}
    for line in result.stdout.splitlines():
        job_id, state, reason = (line.strip().split("|") + ["", ""])[:3]
        if job_ids is None or job_id in job_ids:
            states[job_id] = (state, reason)
    return states


def dependency(job_ids: list[str]) -> dict[str, str]:
    """sbatch options of a job that starts once ``job_ids`` ended well, and is cancelled when one of them failed."""
    return {"dependency": "afterok:" + ":".join(job_ids), "kill-on-invalid-dep": "yes"} if job_ids else {}


class SlurmLauncher:
    """The sweep ``sweep`` (parsed from ``argv``, run from ``cwd``) submitted as SLURM jobs, then waited for."""

    def __init__(self, sweep: Sweep, argv: list[str], cwd: str):
        self.sweep, self.argv, self.cwd = sweep, list(argv), cwd
        self.folder = sweep.out_dir / "slurm"
        """submitit's folder: each job's pickled callable and its log (``<job id>_0_log.out``)."""

    def states(self) -> dict[str, tuple[str, str]]:
        return job_states()

    def submit_job(self, name: str, function: Callable, settings: SlurmSettings, after: list[str]) -> str:
        """One job through submitit: ``function`` run in ``python -m submitit.core._submit``, after ``after``."""
        import submitit

        executor = submitit.SlurmExecutor(folder=self.folder)
        # the job imports this repository's `sweep` package, wherever the sweep was started from
        path = f"export PYTHONPATH={REPO_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"
        executor.update_parameters(
            **executor_parameters(settings, name),
            setup=[path, *settings.setup],
            stderr_to_stdout=True,
            additional_parameters={**settings.additional, **dependency(after)},
        )
        return str(executor.submit(function).job_id)

    def live_job(self, name: str, states: Mapping[str, tuple[str, str]]) -> str | None:
        """The job of an earlier submission of this same command that is still pending or running, if any."""
        record = job_record(self.sweep.out_dir / "cells" / name)
        job_id = record.get("job_id")
        if job_id and record.get("argv") == self.argv and states.get(str(job_id), ("", ""))[0] in LIVE:
            return str(job_id)
        return None

    def submit(self, plan: list[Planned]) -> Submitted:
        """Every cell that is not finished as a job (`live_job`s kept), each after the jobs of the cells it needs; then
        the report job after them all. One console line per job: the cell, its job id, what it waits on."""
        sweep, states = self.sweep, self.states()
        jobs: dict[str, Job] = {}
        for planned in plan:
            if all(need in sweep.results for need in planned.needs) and sweep.resolve(planned) is None:
                continue  # reused, skipped, or the same as another cell: said by `resolve`
            waits = [need for need in planned.needs if need in jobs]
            if (kept := self.live_job(planned.name, states)) is not None:
                jobs[planned.name] = Job(kept, new=False)
                sweep.say(f"{planned.name}: job {kept} still {states[kept][0].lower()} (kept)")
                continue
            after = [jobs[need].job_id for need in waits]
            settings = stage_settings(sweep.slurm, self.stage_overrides(planned.name))
            job_id = self.submit_job(planned.name, CellJob(self.argv, self.cwd, planned.name), settings, after)
            jobs[planned.name] = Job(job_id, new=True)
            folder = sweep.out_dir / "cells" / planned.name
            folder.mkdir(parents=True, exist_ok=True)
            update_job_record(folder, job_id=job_id, argv=self.argv, outcome="submitted", line=None, error=None, exit_code=None)
            shown = ", ".join(f"{need} (job {jobs[need].job_id})" for need in waits)
            sweep.say(f"{planned.name}: job {job_id}" + (f", after {shown}" if waits else ", starts now"))
        return Submitted(jobs, self.report_job(jobs, states))

    def report_job(self, jobs: dict[str, Job], states: Mapping[str, tuple[str, str]]) -> str:
        """The report job after every cell job: an earlier one of this command kept while it waits on the same jobs
        (no cell job is new), else a new one (the earlier one, waiting on fewer jobs, cancelled)."""
        sweep, path = self.sweep, self.folder / REPORT_JOB_FILE
        record = read_json(path) or {}
        earlier = str(record.get("job_id", ""))
        live = record.get("argv") == self.argv and states.get(earlier, ("", ""))[0] in LIVE
        if live and not any(job.new for job in jobs.values()):
            sweep.say(f"report: job {earlier} still {states[earlier][0].lower()} (kept)")
            return earlier
        if live:
            subprocess.run(["scancel", earlier], capture_output=True, timeout=60)
        after = [job.job_id for job in jobs.values()]
        report = self.submit_job("report", ReportJob(self.argv, self.cwd, sweep.started), sweep.slurm, after)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"job_id": report, "argv": self.argv})
        sweep.say(f"report: job {report}" + (f", after every cell job ({len(after)})" if after else ", starts now"))
        return report

    def stage_overrides(self, name: str) -> dict | None:
        """The ``slurm:`` overrides of the stage a cell belongs to (probe cells: the probes stage)."""
        stage = "probes" if name.startswith("probes-") else name.split("-", 1)[0]
        spec = self.sweep.probes if stage == "probes" else self.sweep.stages.get(stage)
        return spec.slurm if spec is not None else None

    def follow_lines(self, job_ids: list[str]) -> str:
        ids = ",".join(job_ids)
        return f"follow them with `squeue -j {ids}`, cancel them with `scancel {ids.replace(',', ' ')}`"

    def wait(self, plan: list[Planned], submitted: Submitted) -> Path:
        """Until the report job ends: a console line per cell as its job ends, then the report's path; a failed cell:
        `CellFailed` naming the failed cells (plan order) with the first one's last `error:` line and exit code."""
        sweep, report_path = self.sweep, sweep_report(self.sweep)
        before = report_path.stat().st_mtime if report_path.is_file() else None
        waiting = dict(submitted.jobs)
        failed: list[tuple[str, int]] = []
        everything = [job.job_id for job in waiting.values()] + [submitted.report]
        try:
            while True:
                states = self.states()
                for name, job in list(waiting.items()):
                    state, reason = states.get(job.job_id, ("GONE", ""))
                    if state in LIVE:
                        continue
                    del waiting[name]
                    outcome = self.cell_outcome(name, job.job_id, state, reason)
                    if outcome is not None:
                        failed.append((name, outcome))
                state, reason = states.get(submitted.report, ("GONE", ""))
                if state not in LIVE and not waiting:
                    break
                time.sleep(POLL_S)
        except (KeyboardInterrupt, Preempted) as stop:  # Ctrl-C, or SIGTERM/SIGUSR1 to this process
            what = "Ctrl-C" if isinstance(stop, KeyboardInterrupt) else stop.signal_name
            raise Preempted(
                f"stopped waiting ({what}); the sweep's jobs go on on the cluster: {self.follow_lines(everything)}", what
            ) from None
        if failed:
            order = {p.name: i for i, p in enumerate(plan)}
            failed.sort(key=lambda nc: order.get(nc[0], len(order)))
            cancelled = [name for name, code in failed if code == CANCELLED]
            broken = [(name, code) for name, code in failed if code != CANCELLED]
            if not broken:
                raise CellFailed(
                    f"sweep cell jobs cancelled: {', '.join(cancelled)}; finished cells are kept: run the sweep again to go on",
                    exit_codes.FAULT,
                )
            first, code = broken[0]
            also = f"; cancelled with them: {', '.join(cancelled)}" if cancelled else ""
            raise CellFailed(
                f"sweep cells failed: {', '.join(name for name, _ in broken)} ({first}: {self.error_of(first)}){also};"
                " finished cells are kept: run the sweep again to go on",
                code,
            )
        written = report_path.is_file() and report_path.stat().st_mtime != before
        if state != "COMPLETED" or not written:
            log = self.folder / f"{submitted.report}_0_log.out"
            raise MepsFault(f"the report job {submitted.report} ended {state.lower()} ({reason}) without writing {report_path}: see {log}")
        summary = read_json(sweep.out_dir / "report.json") or {}
        wall = summary.get("costs", {}).get("wall_s")
        sweep.say(f"report: {report_path}" + (f" (written by job {submitted.report})" if wall is None else ""))
        return report_path

    def cell_outcome(self, name: str, job_id: str, state: str, reason: str) -> int | None:
        """The console line of a cell whose job ended; its exit code when it failed (None: it ended well)."""
        sweep, folder = self.sweep, self.sweep.out_dir / "cells" / name
        record, results = job_record(folder), read_json(folder / "results.json")
        if record.get("outcome") == "done" and isinstance(results, dict):
            sweep.results[name] = results
            sweep.say(cell_line(name, results))
            return None
        if record.get("outcome") == "nothing to run":
            sweep.skipped += 1
            sweep.say(record.get("line") or f"{name}: nothing to run")
            return None
        if state == "CANCELLED" and record.get("outcome") in ("submitted", None):  # it never ran
            sweep.say(f"{name}: job {job_id} cancelled (a cell it needs failed, or scancel)")
            return CANCELLED
        code = record.get("exit_code")
        code = code if isinstance(code, int) and code > 0 else exit_codes.FAULT
        if record.get("outcome") == "stopped":
            sweep.say(f"{name}: job {job_id} stopped with a checkpoint ({state.lower()}); it resumes when the sweep is run again")
        else:
            sweep.say(f"{name}: FAILED (job {job_id} {state.lower()}, exit code {code}): {self.error_of(name)}")
        return code

    def error_of(self, name: str) -> str:
        """The cell's last `error:` line: its train.py log's, else its job's."""
        folder = self.sweep.out_dir / "cells" / name
        line = last_error_in(folder)
        if line.startswith("error:"):
            return line
        record = job_record(folder)
        if record.get("error"):
            return f"error: {record['error']}"
        job_id = record.get("job_id")
        return f"see {folder / 'log.txt'} and {self.folder / f'{job_id}_0_log.out'}"


def sweep_report(sweep: Sweep) -> Path:
    return sweep.out_dir / "report.md"


def submit_and_wait(sweep: Sweep, argv: list[str], cwd: str | None = None) -> Path:
    """`sweep.py --launcher slurm`: the plan submitted (`SlurmLauncher.submit`), then waited for (`SlurmLauncher.wait`)."""
    launcher = SlurmLauncher(sweep, argv, cwd or os.getcwd())
    plan = sweep.plan()
    sweep.planned = len(plan)
    sweep.say(
        f"{sweep.planned} cells as SLURM jobs; each one's full output: {sweep.out_dir / 'cells' / '<name>' / 'log.txt'}, "
        f"its job's: {launcher.folder / '<job id>_0_log.out'}"
    )
    submitted = launcher.submit(plan)
    ids = [job.job_id for job in submitted.jobs.values()] + [submitted.report]
    sweep.say(f"waiting for the report job {submitted.report} (Ctrl-C stops the wait, not the jobs); {launcher.follow_lines(ids)}")
    sys.stdout.flush()
    return launcher.wait(plan, submitted)

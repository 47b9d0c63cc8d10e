"""`sweep.py --launcher slurm`: the plan's cells as SLURM jobs (submitit's ``SlurmExecutor``), the cell graph as job
dependencies, then a wait for the report job with one console line per cell as it ends.

- The settings are resolved once, at submission: ``<out_dir>/slurm/sweep.<digest>.yaml`` (the parser's dump of the
  command line and its configs), which every job of this submission rebuilds the sweep from (`sweep/cell_job.py`).
- A cell's job is known by its identity in ``squeue``: its name (the cell's) and its work dir (``<out_dir>/slurm``),
  and by the cell's definition recorded in its ``job.json`` (`definition`: its key with the cells it needs as
  placeholders). In plan order: a finished cell is reused (no job); a cell whose job from an earlier submission is
  still pending or running, for the same definition, keeps that job (unless it waits on a cell that gets a new job:
  then it is cancelled and submitted again); a live job of this sweep for another definition of the cell is refused,
  before anything is submitted (wait for it, or scancel it: cancelling hours of someone's training is not for a
  rerun to decide); any other cell (missing, failed, stopped) is a new job, after (``afterok``) the jobs of the cells
  it needs that have not finished, with ``kill_on_invalid_dep=yes``: a failed cell cancels the cells that wait on it.
- A final job after every cell job writes the report from the cells' records (rerunning `sweep.py` does the same).
- The wait polls ``squeue`` (submitit's own job states read ``sacct``, which needs SLURM's accounting database), every
  2 s at first, then less often (30 s at most); a failing ``squeue`` is retried for 10 minutes. Ctrl-C stops the
  wait, not the jobs: the line says how to follow them and cancel them, and the same command waits for them again.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from runtime import exit_codes
from runtime.atomic_files import read_json, write_json
from runtime.errors import BadInput, MepsFault, Preempted
from sweep.cell_job import CellJob, ReportJob, job_record, update_job_record
from sweep.cells import REPO_ROOT, Planned, Skip
from sweep.console import cell_line
from sweep.records import CellFailed
from sweep.schedule import Sweep
from sweep.slurm_settings import SlurmSettings, clean_slurm_env, executor_parameters, report_settings, stage_settings
from sweep.workers import last_error_in, last_error_line

ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED"}
"""``squeue`` states of a job that has ended; any other state is a live one (PREEMPTED: ended only while it stays so
for `GRACE_S`, a requeued job passes through it back to PENDING)."""
NEVER_STARTS = {
    "PartitionTimeLimit",
    "PartitionNodeLimit",
    "ReqNodeNotAvail",
    "AssocMaxWallDurationPerJobLimit",
    "QOSMaxWallDurationPerJobLimit",
    "InvalidQOS",
    "InvalidAccount",
    "DependencyNeverSatisfied",
}
"""Reasons of a pending job that waiting will not change: the wait stops, naming the job and the reason."""
POLL_S, MAX_POLL_S = 2.0, 30.0
"""The wait polls squeue every 2 s at first, then 1.5 times less often each time nothing changed, up to 30 s."""
GRACE_S = 60.0
"""A job not (yet) in squeue, or PREEMPTED, counts as ended after this long (one seen before: at once)."""
SQUEUE_PATIENCE_S = 600.0
"""How long a failing squeue is retried (the controller restarting, a network blip) before the wait gives up."""
REPORT_JOB_FILE = "report_job.json"
"""In submitit's folder: the report job of the last submission (its id, the settings file it was submitted for)."""
REPORT = "report"
"""The report job's name (no cell has it)."""
CANCELLED = -1
"""`SlurmLauncher.cell_outcome` of a cell whose job was cancelled (a cell it needs failed, or ``scancel``)."""


class JobState(NamedTuple):
    """A job as ``squeue`` shows it: its state, the reason it is pending, its name and its work dir."""

    state: str
    reason: str
    name: str
    work_dir: str


class Job(NamedTuple):
    """A cell's job in this submission: its id, and whether it was submitted now (False: kept from an earlier one)."""

    job_id: str
    new: bool


class Submitted(NamedTuple):
    """What `submit` did: each cell's job (cells reused or with nothing to run have none), and the report job."""

    jobs: dict[str, Job]
    report: str


class SqueueFailed(MepsFault):
    """``squeue`` failed, did not answer in time, or is not there."""


def job_states() -> dict[str, JobState]:
    """job id -> `JobState` of this user's jobs that ``squeue`` still knows (ended ones for a few minutes, then none)."""
    command = ["squeue", "--me", "--noheader", "--states=all", "--format=%i|%T|%r|%j|%Z"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise SqueueFailed("squeue did not answer within 60 s") from None
    except OSError as err:
        raise SqueueFailed(f"squeue could not run: {err}") from None
    if result.returncode != 0:
        raise SqueueFailed(f"squeue failed (exit code {result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    states = {}
    for line in result.stdout.splitlines():
        job_id, state, reason, name, work_dir = (line.strip().split("|", 4) + [""] * 5)[:5]
        states[job_id] = JobState(state, reason, name, work_dir)
    return states


def cancel(job_ids: list[str]) -> str | None:
    """``scancel`` of ``job_ids``; what went wrong, in words, or None."""
    try:
        result = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"scancel {' '.join(job_ids)} failed: {err}"
    return f"scancel {' '.join(job_ids)} failed: {result.stderr.strip()}" if result.returncode != 0 else None


def dependency(job_ids: list[str]) -> dict[str, str]:
    """sbatch options of a job that starts once ``job_ids`` ended well, and is cancelled when one of them failed."""
    return {"dependency": "afterok:" + ":".join(job_ids), "kill-on-invalid-dep": "yes"} if job_ids else {}


PLACEHOLDER_CHECKPOINT = "<{} checkpoint>"


def definition(planned: Planned) -> str:
    """What a planned cell is, whatever the cells it needs will have produced: the key of the cell built from
    placeholder results of those cells (a skip or a same-as: their words). Two submissions that give a cell the same
    definition run the same train.py command once its needs are done."""
    placeholder = {"best_checkpoint": "", "metrics": {}}
    built = planned.build({need: {**placeholder, "last_checkpoint": PLACEHOLDER_CHECKPOINT.format(need)} for need in planned.needs})
    if isinstance(built, Skip):
        return f"skip: {built.reason}"
    return f"same as {built}" if isinstance(built, str) else built.key


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGUSR1 held back while the body runs (an ``sbatch`` and the job.json that records its job):
    a stop request then comes after the record, and a rerun finds the job instead of submitting it again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class SlurmLauncher:
    """The sweep ``sweep`` (run from ``cwd``) submitted as SLURM jobs, then waited for."""

    def __init__(self, sweep: Sweep, cwd: str):
        self.sweep, self.cwd = sweep, cwd
        self.folder = sweep.out_dir / "slurm"
        """submitit's folder, every job's work dir: each job's pickled callable and its log (``<job id>_0_log.out``)."""
        text = sweep.settings_yaml or ""
        self.settings = self.folder / f"sweep.{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
        """The resolved settings this submission's jobs rebuild the sweep from (written by `submit`)."""
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic

    def states(self) -> dict[str, JobState]:
        return job_states()

    def ours(self, states: Mapping[str, JobState], name: str) -> list[str]:
        """The live jobs of this sweep named ``name`` (a cell's, or the report's): its name and its work dir."""
        return [job_id for job_id, s in states.items() if s.name == name and s.work_dir == str(self.folder) and s.state not in ENDED]

    def submit_job(self, name: str, function: Callable, settings: SlurmSettings, after: list[str]) -> str:
        """One job through submitit: ``function`` run in ``python -m submitit.core._submit``, after ``after``."""
        import submitit
        from submitit.core.utils import FailedJobError, FailedSubmissionError

        executor = submitit.SlurmExecutor(folder=self.folder, max_num_timeout=settings.max_num_timeout)
        # the job imports this repository's `sweep` package, wherever the sweep was started from
        path = f"export PYTHONPATH={REPO_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"
        executor.update_parameters(
            **executor_parameters(settings, name),
            setup=[path, *settings.setup],
            stderr_to_stdout=True,
            additional_parameters={**settings.additional, "chdir": str(self.folder), **dependency(after)},
        )
        try:
            with clean_slurm_env():  # submitit.helpers.clean_env, but SLURM_CONF kept: it names the cluster
                return str(executor.submit(function).job_id)
        except (FailedJobError, FailedSubmissionError, OSError, subprocess.SubprocessError) as err:
            said = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise SbatchRefused(name, said) from None

    def submit(self, plan: list[Planned]) -> Submitted:
        """Every cell that is not finished as a job (live jobs of the same definition kept), each after the jobs of the
        cells it needs; then the report job after them all. One console line per job: the cell, its job id, what it
        waits on. A live job of this sweep for another definition of a cell: `BadInput`, before anything is submitted."""
        sweep = self.sweep
        try:
            states = self.states()
        except SqueueFailed as err:
            raise MepsFault(f"{err}: cannot tell which of the sweep's jobs are still there; nothing was submitted") from None
        decided: list[tuple[Planned, str, str | None]] = []  # the cell, its definition, the live job it keeps
        renewed: set[str] = set()
        stale: list[tuple[str, str]] = []  # kept jobs that wait on a cell that gets a new job: cancelled, submitted again
        for planned in plan:
            if all(need in sweep.results for need in planned.needs) and sweep.resolve(planned) is None:
                continue  # reused, skipped, or the same as another cell: said by `resolve`
            spec, record = definition(planned), job_record(sweep.out_dir / "cells" / planned.name)
            kept = None
            for job_id in self.ours(states, planned.name):
                if job_id == str(record.get("job_id")) and record.get("definition") == spec:
                    kept = job_id
                    continue
                how = "with other arguments" if job_id == str(record.get("job_id")) else "(a job this submission does not know)"
                raise BadInput(
                    f"job {job_id} of an earlier submission is still {states[job_id].state.lower()} cell {planned.name} {how}:"
                    f" wait for it or scancel {job_id}"
                )
            if kept is not None and states[kept].state == "PENDING" and renewed & set(planned.needs):
                stale.append((planned.name, kept))
                kept = None
            if kept is None:
                renewed.add(planned.name)
            decided.append((planned, spec, kept))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings.write_text(sweep.settings_yaml or "")
        for name, job_id in stale:
            problem = cancel([job_id])
            sweep.say(f"{name}: job {job_id} cancelled: it waits on a cell submitted again" + (f" ({problem})" if problem else ""))
        jobs: dict[str, Job] = {}
        try:
            for planned, spec, kept in decided:
                if kept is not None:
                    jobs[planned.name] = Job(kept, new=False)
                    sweep.say(f"{planned.name}: job {kept} still {states[kept].state.lower()} (kept)")
                    continue
                waits = [need for need in planned.needs if need in jobs]
                jobs[planned.name] = Job(self.submit_cell(planned.name, spec, [jobs[need].job_id for need in waits]), new=True)
                shown = ", ".join(f"{need} (job {jobs[need].job_id})" for need in waits)
                sweep.say(f"{planned.name}: job {jobs[planned.name].job_id}" + (f", after {shown}" if waits else ", starts now"))
            report = self.report_job(jobs, states)
        except SbatchRefused as refused:
            new = [job.job_id for job in jobs.values() if job.new]
            already = (
                f"the {len(new)} job(s) submitted before it go on: cancel them with `scancel {' '.join(new)}`"
                if new
                else "nothing was submitted"
            )
            raise MepsFault(f"sbatch refused the job of {refused.name}: {refused.said}; {already}") from None
        except (KeyboardInterrupt, Preempted) as stop:  # Ctrl-C, or SIGTERM/SIGUSR1 to this process
            what = "Ctrl-C" if isinstance(stop, KeyboardInterrupt) else stop.signal_name
            ids = [job.job_id for job in jobs.values()]
            where = f"the {len(ids)} job(s) submitted so far go on: {self.follow_lines(ids)}" if ids else "no job was submitted"
            raise Preempted(f"stopped submitting ({what}); {where}; the same command submits the rest", what) from None
        return Submitted(jobs, report)

    def submit_cell(self, name: str, spec: str, after: list[str]) -> str:
        """A cell's job, recorded in its job.json as soon as sbatch returned (stop requests held until then)."""
        settings = stage_settings(self.sweep.slurm, self.stage_overrides(name))
        job = CellJob(str(self.settings), self.cwd, name, settings.cpus_per_task, settings.signal_delay_s)
        folder = self.sweep.out_dir / "cells" / name
        folder.mkdir(parents=True, exist_ok=True)
        with signals_deferred():
            job_id = self.submit_job(name, job, settings, after)
            update_job_record(folder, job_id=job_id, definition=spec, outcome="submitted", line=None, error=None, exit_code=None)
        return job_id

    def report_job(self, jobs: dict[str, Job], states: Mapping[str, JobState]) -> str:
        """The report job after every cell job: an earlier one of these settings kept while it waits on the same jobs
        (no cell job is new), else a new one (earlier ones of this sweep still waiting: cancelled)."""
        sweep, path = self.sweep, self.folder / REPORT_JOB_FILE
        record = read_json(path) or {}
        live = self.ours(states, REPORT)
        earlier = str(record.get("job_id", ""))
        if live == [earlier] and record.get("settings") == str(self.settings) and not any(job.new for job in jobs.values()):
            sweep.say(f"report: job {earlier} still {states[earlier].state.lower()} (kept)")
            return earlier
        if live and (problem := cancel(live)):
            sweep.say(f"warning: the earlier report job {', '.join(live)} may still run: {problem}")
        after = [job.job_id for job in jobs.values()]
        with signals_deferred():
            report = self.submit_job(REPORT, ReportJob(str(self.settings), self.cwd, sweep.started), report_settings(sweep.slurm), after)
            write_json(path, {"job_id": report, "settings": str(self.settings)})
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

    def poll(self, everything: list[str]) -> dict[str, JobState]:
        """``squeue``'s answer; a failure is retried with a growing pause for `SQUEUE_PATIENCE_S` (one warning line),
        then one error line: the jobs go on."""
        failing_since, pause = None, POLL_S
        while True:
            try:
                return self.states()
            except SqueueFailed as err:
                now = self.clock()
                if failing_since is None:
                    failing_since = now
                    self.sweep.say(f"warning: {err}; retrying for up to {SQUEUE_PATIENCE_S / 60:.0f} minutes")
                elif now - failing_since >= SQUEUE_PATIENCE_S:
                    raise MepsFault(
                        f"{err}, for {SQUEUE_PATIENCE_S / 60:.0f} minutes: stopped waiting; the sweep's jobs go on on the cluster:"
                        f" {self.follow_lines(everything)}; the same command waits for them again"
                    ) from None
                self.sleep(pause)
                pause = min(pause * 2, MAX_POLL_S * 2)

    def wait(self, plan: list[Planned], submitted: Submitted) -> Path:
        """Until the report job ends: a console line per cell as its job starts, is requeued, ends; then the report's
        path. A failed cell: `CellFailed` naming the failed cells (plan order) with the first one's last `error:` line
        and exit code. A job pending for a reason that waiting will not change (`NEVER_STARTS`): `BadInput`."""
        sweep, report_path = self.sweep, sweep_report(self.sweep)
        before = report_path.stat().st_mtime if report_path.is_file() else None
        names = {job.job_id: name for name, job in submitted.jobs.items()} | {submitted.report: REPORT}
        waiting = dict(names)
        everything = list(names)
        failed: list[tuple[str, int]] = []
        seen: dict[str, JobState] = {}
        preempted_since: dict[str, float] = {}
        started, pause = self.clock(), POLL_S
        final = JobState("GONE", "", REPORT, "")
        try:
            while waiting:
                states, changed = self.poll(everything), False
                for job_id, name in list(waiting.items()):
                    now = states.get(job_id)
                    if now is not None and now != seen.get(job_id):
                        changed = True
                        self.say_change(name, job_id, seen.get(job_id), now, everything)
                    ended = self.ended(job_id, now, seen, preempted_since, started)
                    if now is not None:
                        seen[job_id] = now
                    if not ended:
                        continue
                    del waiting[job_id]
                    if job_id == submitted.report:
                        final = now or seen.get(job_id) or final
                    elif (outcome := self.cell_outcome(name, job_id, (now or seen.get(job_id) or final).state)) is not None:
                        failed.append((name, outcome))
                if waiting:
                    pause = POLL_S if changed else min(pause * 1.5, MAX_POLL_S)
                    self.sleep(pause)
        except (KeyboardInterrupt, Preempted) as stop:  # Ctrl-C, or SIGTERM/SIGUSR1 to this process
            what = "Ctrl-C" if isinstance(stop, KeyboardInterrupt) else stop.signal_name
            raise Preempted(
                f"stopped waiting ({what}); the sweep's jobs go on on the cluster: {self.follow_lines(everything)}", what
            ) from None
        if failed:
            self.raise_failed(plan, failed)
        written = report_path.is_file() and report_path.stat().st_mtime != before
        if not written:  # a written report is accepted whatever the report job's final state
            log = self.folder / f"{submitted.report}_0_log.out"
            why = last_error_line(log) or f"see {log}"
            raise MepsFault(f"the report job {submitted.report} ended {final.state.lower()} without writing {report_path}: {why}")
        sweep.say(f"report: {report_path} (written by job {submitted.report})")
        return report_path

    def ended(self, job_id: str, now: JobState | None, seen: Mapping[str, JobState], preempted_since: dict, started: float) -> bool:
        """Whether a job has ended: an ended state (PREEMPTED for `GRACE_S`: not requeued), or gone from squeue once
        seen there (or never seen, `GRACE_S` after the wait started)."""
        if now is None:
            return job_id in seen or self.clock() - started >= GRACE_S
        if now.state != "PREEMPTED":
            preempted_since.pop(job_id, None)
            return now.state in ENDED
        return self.clock() - preempted_since.setdefault(job_id, self.clock()) >= GRACE_S

    def say_change(self, name: str, job_id: str, before: JobState | None, now: JobState, everything: list[str]) -> None:
        """A line when a job starts running, is requeued, or is suspended; `BadInput` when it waits for what never comes."""
        was = before.state if before is not None else None
        if now.state == "PENDING" and now.reason in NEVER_STARTS:
            raise BadInput(
                f"job {job_id} ({name}) can never start: it is pending with reason {now.reason} (its resources, time limit, QOS"
                f" or account do not fit the cluster); cancel the sweep's jobs with `scancel {' '.join(everything)}`, fix the"
                " settings and run the sweep again"
            )
        if now.state == "RUNNING" and was != "RUNNING":
            self.sweep.say(f"{name}: job {job_id} running")
        elif was in ("RUNNING", "COMPLETING", "PREEMPTED") and now.state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"):
            self.sweep.say(f"{name}: job {job_id} requeued ({now.state.lower()}, {now.reason})")
        elif now.state in ("SUSPENDED", "STOPPED") and was != now.state:
            self.sweep.say(f"{name}: job {job_id} {now.state.lower()}")

    def raise_failed(self, plan: list[Planned], failed: list[tuple[str, int]]) -> None:
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

    def cell_outcome(self, name: str, job_id: str, state: str) -> int | None:
        """The console line of a cell whose job ended, from its records (job.json, results.json, submitit's result
        pickle); its exit code when it failed (None: it ended well)."""
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
        shown = state.lower() if state != "GONE" else "gone from squeue"
        if record.get("outcome") == "stopped":
            why = f": {record['error']}" if record.get("error") else ""
            sweep.say(f"{name}: job {job_id} stopped with a checkpoint ({shown}){why}; it resumes when the sweep is run again")
        else:
            sweep.say(f"{name}: FAILED (job {job_id} {shown}, exit code {code}): {self.error_of(name)}")
        return code

    def error_of(self, name: str) -> str:
        """The cell's last `error:` line: its train.py log's, else its job's record, else submitit's result."""
        folder = self.sweep.out_dir / "cells" / name
        line = last_error_in(folder)
        if line.startswith("error:"):
            return line
        record = job_record(folder)
        if record.get("error"):
            return f"error: {record['error']}"
        job_id = record.get("job_id")
        if (result := job_result_error(self.folder / f"{job_id}_0_result.pkl")) is not None:
            return f"error: {result}"
        return f"see {folder / 'log.txt'} and {self.folder / f'{job_id}_0_log.out'}"


class SbatchRefused(Exception):
    """submitit's sbatch of a job failed (`SlurmLauncher.submit_job`): the cell (or report) and sbatch's first line."""

    def __init__(self, name: str, said: str):
        super().__init__(f"{name}: {said}")
        self.name, self.said = name, said


def job_result_error(path: Path) -> str | None:
    """The last line of the traceback in submitit's result pickle of a job that raised (None: no such pickle, or a success)."""
    try:
        with open(path, "rb") as file:
            outcome, value = pickle.load(file)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError):
        return None
    if outcome != "error":
        return None
    return next((line.strip() for line in reversed(str(value).splitlines()) if line.strip()), None)


def sweep_report(sweep: Sweep) -> Path:
    return sweep.out_dir / "report.md"


def submit_and_wait(sweep: Sweep, cwd: str | None = None) -> Path:
    """`sweep.py --launcher slurm`: the plan submitted (`SlurmLauncher.submit`), then waited for (`SlurmLauncher.wait`)."""
    launcher = SlurmLauncher(sweep, cwd or os.getcwd())
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

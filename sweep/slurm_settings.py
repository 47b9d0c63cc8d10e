"""What each cell job asks SLURM for (`sweep.py --launcher slurm`): the sweep-wide ``slurm:`` group of a sweep config,
and a stage's own ``slurm:`` overrides (``neural: {config: ..., slurm: {gpus_per_node: 1, time: 120}}``).

Resources are not part of a cell's identity (`Cell.key` hashes its train.py arguments only): a cell finished under
one launcher, or with other resources, is reused. Every value is checked here, before torch, Lightning, W&B or
submitit are imported: one line naming the flag and the value (exit code 2).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from runtime.errors import BadInput

LAUNCHERS = ("local", "slurm")
"""``--launcher``: ``local`` runs the cells on this machine (`sweep/schedule.py`); ``slurm`` submits each as a job."""

SLURM_COMMANDS = ("sbatch", "srun", "squeue", "scancel")
"""What `--launcher slurm` runs: submitit's sbatch (and srun in each job), squeue while it waits, scancel."""


@dataclass
class SlurmSettings:
    """One cell job's ``sbatch`` options (None: the cluster's default)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: int = 60
    """Minutes; the job is sent SIGUSR2 ``signal_delay_s`` before the limit, checkpoints, and is requeued."""
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    mem_gb: float | None = None
    signal_delay_s: int = 120
    """How long before the time limit the job is told to checkpoint (``--signal=USR2@<s>``)."""
    max_num_timeout: int = 3
    """How many times a job that reached its time limit is requeued (submitit's ``max_num_timeout``); one more: it
    stops with its checkpoint and the sweep says to raise ``time``."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before the cell (``module load ...``, ``source venv/bin/activate``); a stage's own come after
    the sweep-wide ones."""
    additional: dict[str, Any] = field(default_factory=dict)
    """Any other ``sbatch`` option, e.g. ``{constraint: a100, exclude: node7}``; a stage's own are merged over the
    sweep-wide ones (`OWNED` refused: the sweep sets them)."""


OWNED = ("job-name", "output", "error", "open-mode", "signal", "dependency", "kill-on-invalid-dep", "chdir", "array", "wrap", "parsable")
"""sbatch options that submitit or the sweep set on every job (its name and work dir identify the cell's job): not
for ``additional``."""


TAKES = {
    "launcher": f"one of {', '.join(LAUNCHERS)}",
    "partition": "a partition name, or null (the cluster's default)",
    "account": "an account name, or null (the cluster's default)",
    "qos": "a QOS name, or null (the cluster's default)",
    "time": "an integer >= 1 (minutes)",
    "cpus_per_task": "an integer >= 1, or null (the cluster's default)",
    "gpus_per_node": "an integer >= 0, or null (none asked)",
    "mem_gb": "a number > 0 (GB), or null (the cluster's default)",
    "signal_delay_s": "an integer >= 1 (seconds before the time limit)",
    "max_num_timeout": "an integer >= 0 (requeues at the time limit)",
    "setup": "a list of shell lines",
    "additional": "a mapping of sbatch options to a string, a number or true, e.g. {constraint: a100}",
}
"""What each ``slurm`` key takes, as its `error:` line says it."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(key: str, value) -> bool:
    """Whether ``value`` is what ``key`` takes (`TAKES`)."""
    if key in ("partition", "account", "qos"):
        return value is None or (isinstance(value, str) and bool(value.strip()))
    if key in ("time", "signal_delay_s"):
        return _is_int(value) and value >= 1
    if key == "cpus_per_task":
        return value is None or (_is_int(value) and value >= 1)
    if key == "gpus_per_node":
        return value is None or (_is_int(value) and value >= 0)
    if key == "mem_gb":
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0)
    if key == "setup":
        return isinstance(value, list) and all(isinstance(line, str) for line in value)
    if key == "max_num_timeout":
        return _is_int(value) and value >= 0
    if key == "additional":
        return isinstance(value, Mapping) and all(isinstance(k, str) and _scalar(v) for k, v in value.items())
    return False


def _scalar(value) -> bool:
    """An sbatch option's value submitit writes as ``--key=value``: a string or a number (``true``: ``--key`` alone)."""
    return value is True or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def _shown(value) -> str:
    return "null" if value is None else str(value)


def check_slurm_group(flag: str, values: Mapping[str, Any]) -> None:
    """Each key of a ``slurm`` group (``--slurm``, ``--<stage>.slurm``) one that `SlurmSettings` has, with a value it takes."""
    keys = [f.name for f in fields(SlurmSettings)]
    for key, value in values.items():
        if key not in keys:
            raise BadInput(f"{flag}.{key}: no such option; {flag} takes {', '.join(keys)}")
        if not _fits(key, value):
            raise BadInput(f"{flag}.{key} {_shown(value)}: expected {TAKES[key]}")
    for option in values.get("additional") or {}:
        if (written := option.replace("_", "-")) in OWNED or written in SETTINGS_OPTIONS:
            own = f"{flag}.{SETTINGS_OPTIONS[written]}" if written in SETTINGS_OPTIONS else "the sweep (every job's)"
            raise BadInput(f"{flag}.additional.{option}: set by {own}; leave it out of additional")


SETTINGS_OPTIONS = {"partition": "partition", "account": "account", "qos": "qos", "time": "time", "cpus-per-task": "cpus_per_task"}
SETTINGS_OPTIONS |= {"gpus-per-node": "gpus_per_node", "mem": "mem_gb", "signal-delay-s": "signal_delay_s"}
"""sbatch options that a `SlurmSettings` key sets: refused in ``additional`` too (two values of one option)."""


def check_launcher(launcher: str, slurm: SlurmSettings | None, stages: Mapping[str, Any], trainer: Any, threads: int | None = None) -> None:
    """``--launcher`` and every ``slurm`` setting; ``--launcher slurm`` needs ``sbatch`` on PATH, one node per cell,
    no more threads than CPUs nor devices than GPUs per job, and resources that ``sbatch --test-only`` accepts."""
    if launcher not in LAUNCHERS:
        raise BadInput(f"--launcher {launcher}: expected {TAKES['launcher']}")
    check_slurm_group("--slurm", asdict(slurm) if slurm is not None else {})
    for name, stage in stages.items():
        if stage is not None and getattr(stage, "slurm", None) is not None:
            if not isinstance(stage.slurm, Mapping):
                raise BadInput(f"--{name}.slurm {stage.slurm}: expected a mapping of slurm options, e.g. {{gpus_per_node: 1, time: 120}}")
            check_slurm_group(f"--{name}.slurm", stage.slurm)
    for name, stage in {"": None, **stages}.items():
        if name and stage is None:
            continue
        chosen = stage_settings(slurm, getattr(stage, "slurm", None))
        if chosen.signal_delay_s >= chosen.time * 60:
            flag = f"--{name}.slurm" if name and stage.slurm and {"time", "signal_delay_s"} & set(stage.slurm) else "--slurm"
            raise BadInput(
                f"{flag}.signal_delay_s {chosen.signal_delay_s}: the job would be told to checkpoint before it starts (time"
                f" {chosen.time} min = {chosen.time * 60} s); give a signal_delay_s below it, or more time"
            )
    if launcher != "slurm":
        return
    num_nodes = getattr(trainer, "num_nodes", None)
    if missing := [command for command in SLURM_COMMANDS if shutil.which(command) is None]:
        raise BadInput(
            f"--launcher slurm: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not on PATH (no SLURM client here);"
            " run it on a SLURM login node, or use --launcher local"
        )
    if (num_nodes or 1) > 1:
        raise BadInput(
            f"--trainer.num_nodes {num_nodes} with --launcher slurm: each cell job is one node (its train.py launches"
            " the ranks of --trainer.devices); run multi-node cells with sbatch (docs/clusters.md)"
        )
    groups = {"--slurm": stage_settings(slurm, None)}
    groups |= {f"--{name}.slurm": stage_settings(slurm, stage.slurm) for name, stage in stages.items() if stage is not None and stage.slurm}
    for flag, chosen in groups.items():
        check_job_fits(flag, chosen, threads, trainer)
    tested: set[tuple[str, ...]] = set()
    for flag, chosen in {**groups, "--slurm (the report job's)": report_settings(slurm)}.items():
        if (options := tuple(sbatch_options(chosen))) not in tested:
            tested.add(options)
            check_sbatch_accepts(flag, chosen, list(options))


def check_job_fits(flag: str, chosen: SlurmSettings, threads: int | None, trainer: Any) -> None:
    """A cell job's threads within its CPUs, its devices within its GPUs (on a GPU accelerator)."""
    if threads is not None and chosen.cpus_per_task is not None and threads > chosen.cpus_per_task:
        raise BadInput(
            f"--threads {threads} with {flag}.cpus_per_task {chosen.cpus_per_task}: each cell job has {chosen.cpus_per_task}"
            f" CPU(s); give --threads {chosen.cpus_per_task} or less (null: as many as the job's CPUs), or more cpus_per_task"
        )
    devices, accelerator = getattr(trainer, "devices", None), str(getattr(trainer, "accelerator", None) or "").lower()
    if (
        accelerator in ("gpu", "cuda")
        and isinstance(devices, int)
        and not isinstance(devices, bool)
        and devices > (chosen.gpus_per_node or 0)
    ):
        raise BadInput(
            f"--trainer.devices {devices} with {flag}.gpus_per_node {_shown(chosen.gpus_per_node)}: each cell job has"
            f" {chosen.gpus_per_node or 0} GPU(s); give {flag}.gpus_per_node {devices}, or fewer devices"
        )


def sbatch_options(settings: SlurmSettings) -> list[str]:
    """The resources of a job as ``sbatch`` flags (what submitit writes into its script, with the same names)."""
    chosen = {**executor_parameters(settings, "check"), **settings.additional}
    chosen.pop("job_name", None)
    chosen.pop("signal_delay_s", None)
    return [f"--{key.replace('_', '-')}" + ("" if value is True else f"={value}") for key, value in sorted(chosen.items())]


def check_sbatch_accepts(flag: str, settings: SlurmSettings, options: list[str]) -> None:
    """``sbatch --test-only`` of the job's resources (nothing is submitted): a partition, GPU request, QOS or account
    the cluster refuses is one line here, before anything is written, instead of a refusal halfway through submitting."""
    try:
        with clean_slurm_env():
            result = subprocess.run(["sbatch", "--test-only", *options, "--wrap", "true"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BadInput(f"{flag}: sbatch --test-only could not check the job's resources ({err}); is the SLURM controller up?") from None
    if result.returncode != 0:
        said = next(
            (line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()), f"exit code {result.returncode}"
        )
        shown = ", ".join(options)
        raise BadInput(f"{flag} {{{shown}}}: sbatch refuses these resources ({said})")


SLURM_ENV_PREFIXES = ("SLURM_", "SLURMD_", "SBATCH_", "SRUN_", "SALLOC_", "SUBMITIT_")
"""What a job inherits from the allocation it was submitted from, if any (submitit.helpers.clean_env's list)."""


@contextmanager
def clean_slurm_env() -> Iterator[None]:
    """SLURM's variables of an enclosing allocation hidden while sbatch runs (they would leak into the new job's
    options): submitit's ``helpers.clean_env`` without importing submitit (the argument checks come before it)."""
    hidden = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith(SLURM_ENV_PREFIXES) and name != "SLURM_CONF"}
    try:
        yield
    finally:
        os.environ.update(hidden)


def stage_settings(slurm: SlurmSettings | None, overrides: Mapping[str, Any] | None) -> SlurmSettings:
    """The sweep-wide settings with a stage's own overrides (checked already): ``setup`` lines after the sweep-wide
    ones, ``additional`` options merged over them; any other key replaced."""
    base, own = slurm or SlurmSettings(), dict(overrides or {})
    own["setup"] = [*base.setup, *own.get("setup", [])]
    own["additional"] = {**base.additional, **own.get("additional", {})}
    return replace(base, **own)


REPORT_TIME_MIN = 30
"""The report job's time limit at most (it writes report.json, the plots and the W&B summary run: a minute or two)."""


def report_settings(slurm: SlurmSettings | None) -> SlurmSettings:
    """The report job's resources: the sweep-wide partition, account, QOS, memory, setup and options, one CPU, no GPU,
    at most `REPORT_TIME_MIN` minutes."""
    base = slurm or SlurmSettings()
    time = min(base.time, REPORT_TIME_MIN)
    return replace(base, cpus_per_task=1, gpus_per_node=None, time=time, signal_delay_s=min(base.signal_delay_s, time * 60 // 2))


def executor_parameters(settings: SlurmSettings, name: str) -> dict[str, Any]:
    """`SlurmSettings` as submitit's ``SlurmExecutor.update_parameters`` takes them (None left out)."""
    chosen = {
        "job_name": name,
        "partition": settings.partition,
        "account": settings.account,
        "qos": settings.qos,
        "time": settings.time,
        "cpus_per_task": settings.cpus_per_task,
        "gpus_per_node": settings.gpus_per_node or None,
        "mem": f"{max(1, round(settings.mem_gb * 1024))}MB" if settings.mem_gb else None,
        "signal_delay_s": settings.signal_delay_s,
    }
    return {key: value for key, value in chosen.items() if value is not None}

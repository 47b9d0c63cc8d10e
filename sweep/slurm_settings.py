"""What each cell job asks SLURM for (`sweep.py --launcher slurm`): the sweep-wide ``slurm:`` group of a sweep config,
and a stage's own ``slurm:`` overrides (``neural: {config: ..., slurm: {gpus_per_node: 1, time: 120}}``).

Resources are not part of a cell's identity (`Cell.key` hashes its train.py arguments only): a cell finished under
one launcher, or with other resources, is reused. Every value is checked here, before torch, Lightning, W&B or
submitit are imported: one line naming the flag and the value (exit code 2).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
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
    setup: list[str] = field(default_factory=list)
    """Shell lines run before the cell (``module load ...``, ``source venv/bin/activate``)."""
    additional: dict[str, Any] = field(default_factory=dict)
    """Any other ``sbatch`` option, e.g. ``{constraint: a100, exclude: node7}``."""


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
    "setup": "a list of shell lines",
    "additional": "a mapping of sbatch options to values, e.g. {constraint: a100}",
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
    if key == "additional":
        return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in value.items())
    return False


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


def check_launcher(launcher: str, slurm: SlurmSettings | None, stages: Mapping[str, Any], num_nodes: int | None) -> None:
    """``--launcher`` and every ``slurm`` setting; ``--launcher slurm`` needs ``sbatch`` on PATH and one node per cell."""
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


def stage_settings(slurm: SlurmSettings | None, overrides: Mapping[str, Any] | None) -> SlurmSettings:
    """The sweep-wide settings with a stage's own overrides (checked already)."""
    return replace(slurm or SlurmSettings(), **dict(overrides or {}))


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


def setup_lines(settings: SlurmSettings, extra: Sequence[str] = ()) -> list[str]:
    return [*settings.setup, *extra]

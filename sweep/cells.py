"""What a sweep cell is: one `train.py` run (its name, arguments, folder and role), the plan entry that
builds it once the cells it needs are done, and the overrides every cell shares.

`Cell.key` (a hash of `MEASUREMENTS_VERSION`, the subcommand and arguments) is the cell's identity: a finished cell is reused only
while its key is unchanged (`sweep/records.py`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the parent of this package): train.py and the configs/ that stage args name."""
SUBCOMMAND = {"blae": "fit", "vae": "fit", "kernel": "validate", "neural": "fit"}
MEASUREMENTS_VERSION = 2
"""Part of every cell's key: raised when what a cell measures or trains changes under the same arguments (2: the
VAE's ELBO-scale β, log-domain overlaps, memorization floors in decoded space, KID intervals, membership), so that
a sweep rerun in an older folder runs such cells again instead of reusing figures of another definition."""


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
    """A stage of the sweep: its train.py config, extra arguments and (--launcher slurm) job resources.

    ``slurm`` overrides the sweep's ``slurm:`` group for this stage's cells (`sweep/slurm_settings.py`); it is not part
    of a cell's key: a cell finished with other resources, or under the other launcher, is reused."""

    config: str
    args: list[str] = field(default_factory=list)
    slurm: dict[str, Any] | None = None


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
        return hashlib.sha256(json.dumps([MEASUREMENTS_VERSION, self.subcommand, self.args]).encode()).hexdigest()[:16]

    @property
    def results_path(self) -> Path:
        return self.folder / "results.json"

    @property
    def partial_path(self) -> Path:
        return self.folder / "results.json.partial"


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

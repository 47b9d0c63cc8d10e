"""What a W&B agent runs for one run of a sweep, offline: the sweep file's ``command``, expanded as ``wandb agent`` does.

The agent (``wandb/wandb_agent.py``, ``Agent._command_run``) fills ``${envvar:NAME}`` from the environment
(``create_sweep_command``), replaces ``${env}`` by ``/usr/bin/env``, ``${interpreter}`` by ``python``,
``${program}`` by the file's ``program`` and ``${args}`` by ``--key=value`` per parameter
(``create_sweep_command_args``), writes the run's parameters to ``WANDB_SWEEP_PARAM_PATH`` and starts the
command with ``WANDB_RUN_ID`` (the run id the sweep server chose), ``WANDB_SWEEP_ID`` and ``WANDB_DIR`` (its
working directory) set. The same W&B functions do it here, without a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import yaml
from wandb.sdk.launch.sweeps import utils as sweep_utils
from wandb.sdk.lib import config_util


class AgentRun(NamedTuple):
    """The command one agent run starts, and the environment it adds."""

    command: list[str]
    env: dict[str, str]


def agent_run(sweep_file: Path, values: dict[str, Any], run_id: str, sweep_id: str, cwd: Path) -> AgentRun:
    """The command and environment of the agent's run ``run_id`` with parameters ``values``, started in ``cwd``."""
    sweep = yaml.safe_load(Path(sweep_file).read_text())
    command = sweep_utils.create_sweep_command([str(chunk) for chunk in sweep["command"]])
    arguments = {"args": {key: {"value": value} for key, value in values.items()}}
    expansions: dict[str, list[str]] = sweep_utils.create_sweep_command_args(arguments)
    expansions.update(interpreter=["python"], program=[sweep["program"]], env=["/usr/bin/env"])
    expanded: list[str] = []
    for chunk in command:
        expanded += (expansions.get(chunk[2:-1]) or []) if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    param_path = cwd / "wandb" / f"sweep-{sweep_id}" / f"config-{run_id}.yaml"
    param_path.parent.mkdir(parents=True, exist_ok=True)
    config_util.save_config_file_from_dict(str(param_path), arguments["args"])
    env = {"WANDB_RUN_ID": run_id, "WANDB_SWEEP_ID": sweep_id, "WANDB_SWEEP_PARAM_PATH": str(param_path), "WANDB_DIR": str(cwd)}
    return AgentRun(expanded, env)

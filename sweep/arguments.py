"""The sweep's command line: its parser (train.py's override syntax: --data.path uoft-cs/cifar10,
--gammas [1,2,global], --trainer.devices 4), whose errors are one line naming the flag and the value
(`SweepArgumentParser`); `sweep/argument_checks.py` checks the values it parsed, before any cell starts
(`sweep_from_args`: the sweep of a command line, for the command and for the SLURM jobs that rebuild it)."""

from __future__ import annotations

import difflib
import inspect
import os
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser

from report.cells import TOKEN_MODELS
from runtime.argument_errors import argument_error_line, config_files
from runtime.errors import BadInput, squeeze
from sweep.argument_checks import TAKES, check_sweep_settings
from sweep.cells import DataOverrides, Stage, TrainerOverrides
from sweep.slurm_settings import LAUNCHERS, SlurmSettings

if TYPE_CHECKING:
    from sweep.schedule import Sweep

DESCRIPTION = "The main job: does memorization rise with γ? `python sweep.py -c configs/sweeps/digits.yaml`."


_KEY = re.compile(r'Parser key "([\w.]+)"')
_GIVEN = re.compile(r"(?:Given value|Got value): (.*)")
_MISSING_FILE = re.compile(r"File does not exist: '([^']+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (\S+)")
_GROUP_OPTION = re.compile(r"Group '(\w+)' does not accept option '(\w+)'")
STAGES = ("blae", "vae", "kernel", "neural")
"""The sweep's stages (`--blae`, `--vae`, `--kernel`, `--neural`): a train.py config and its arguments each."""
PASSED_ON = {"trainer": [f.name for f in fields(TrainerOverrides)], "data": [f.name for f in fields(DataOverrides)]}
"""The train.py options the sweep passes on to every cell (`--trainer.<name>`, `--data.<name>`): no others."""
STAGE_KEYS = [f.name for f in fields(Stage)]
"""What a stage (`--blae`, ..., `--probes`) takes: a train.py config and its arguments."""
SLURM_KEYS = [f.name for f in fields(SlurmSettings)]
"""What ``--slurm`` (each cell job's sbatch options) takes."""
CLOSE = 0.85
"""How close a name must be to one the sweep takes to be called a typo of it: ``max_stepz`` is ``max_steps``, while
``min_epochs`` (a train.py option of its own, 0.8 from ``max_epochs``) is not."""


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value given to ``flag`` on the command line (``--flag v`` or ``--flag=v``), the last one; None when not given."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(f"{flag}="):
            value = arg.split("=", 1)[1]
    return value


def absolute(path: str | Path, folder: str | None) -> str:
    """``path`` as jsonargparse resolves a ``-c`` file: from ``folder``, where the parse started (while it reads a
    config, jsonargparse works from that config's folder), the current one when None."""
    return os.path.normpath(os.path.join(folder or os.getcwd(), os.path.expanduser(path)))


def sweep_config_files(argv: list[str], folder: str | None = None) -> list[Path]:
    """The ``-c`` files of the command line and the sweep configs they name in turn (``config: other.yaml``, relative
    to the naming file, as jsonargparse reads it), as absolute paths, in order."""
    found: list[Path] = []
    waiting = [Path(absolute(path, folder)) for path in config_files(argv)]
    while waiting and len(found) < 100:
        path = waiting.pop(0)
        if path in found:
            continue
        found.append(path)
        try:
            tree = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        named = tree.get("config") if isinstance(tree, dict) else None
        waiting.extend(Path(os.path.normpath(path.parent / n)) for n in ([named] if isinstance(named, str) else named or []))
    return found


def config_with_key(argv: list[str], key: str, folder: str | None = None) -> str | None:
    """The last sweep config (a ``-c`` file or one it names) that sets the dotted ``key`` (``gammas``, ``trainer.max_steps``)."""
    found = None
    for path in sweep_config_files(argv, folder):
        try:
            tree = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        for part in key.split("."):
            tree = tree.get(part) if isinstance(tree, dict) else None
        if tree is not None:
            found = str(path)
    return found


def missing_config_line(path: str, argv: list[str], folder: str | None = None) -> str:
    """``-c nope.yaml: no such file`` as the user wrote the path (``-c``, ``--config``, ``--config=``); a config a
    sweep config names (``config: nope.yaml``) with the file that names it."""
    for written in config_files(argv):
        if absolute(written, folder) == path:
            return f"-c {written}: no such file"
    for config in sweep_config_files(argv, folder):
        try:
            named = yaml.safe_load(config.read_text()).get("config")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        for name in [named] if isinstance(named, str) else named if isinstance(named, list) else []:
            if os.path.normpath(config.parent / str(name)) == path:
                return f"{config}: config {name}: no such file"
    return f"config file {path}: no such file"


def not_passed_on_line(section: str, name: str, value: str | None, where: str = "") -> str:
    """An option of ``--section`` (trainer, data, a stage) the sweep does not take: the close one it does take (a
    typo), or, for a train.py option the sweep does not pass on to every cell, how a stage takes it. ``where``: the
    config file that sets it (``FILE: ``), empty for the command line."""
    takes = SLURM_KEYS if section == "slurm" else PASSED_ON.get(section, STAGE_KEYS)
    written = f"{where}{section}.{name}" if where else f"--{section}.{name}"
    if section == "slurm" and not difflib.get_close_matches(name, takes, n=1, cutoff=CLOSE):
        return f"{written}: no such option; --slurm takes {', '.join(takes)}"
    if close := difflib.get_close_matches(name, takes, n=1, cutoff=CLOSE):
        return f"{written}: no such option; did you mean '{'' if where else '--'}{section}.{close[0]}'?"
    if section not in PASSED_ON:
        return f"{written}: no such option; a stage takes {', '.join(takes)}"
    option = f"--{section}.{name}" if section == "trainer" else f"--{section}.init_args.{name}"
    others = ", ".join(f"--{stage}.args+=" for stage in STAGES[1:])
    return (
        f"{written}: the sweep's --{section} takes {', '.join(takes)}; give any other train.py option"
        f" to a stage: --{STAGES[0]}.args+={option}={value if value is not None else 'VALUE'} (or {others})"
    )


def unrecognized_line(flag: str, argv: list[str]) -> str:
    """`not_passed_on_line` of a command-line flag (``--trainer.max_stepz 5``, ``--trainer.max_stepz=5``)."""
    written, inline, inline_value = flag.partition("=")
    section, _, name = written[2:].partition(".")
    return not_passed_on_line(section, name, inline_value if inline else flag_value(argv, written))


def group_option_line(section: str, name: str, argv: list[str], folder: str | None = None) -> str:
    """`not_passed_on_line` of an option a sweep config sets (``trainer: {max_step: 5}``), named with the file (as a
    flag when no config sets it: ``--trainer '{max_step: 5}'``)."""
    if (config := config_with_key(argv, f"{section}.{name}", folder)) is None:
        return not_passed_on_line(section, name, None)
    return not_passed_on_line(section, name, shown_yaml(yaml.safe_load(Path(config).read_text())[section][name]), f"{config}: ")


def shown_yaml(value) -> str:
    """A config value as a command line writes it: 1, null, true, [a, b]."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def sweep_error_line(message: str, argv: list[str], known: list[str], folder: str | None = None) -> str:
    """One line for a parse error of the sweep's command line: the flag, the value as given, what the flag takes.
    ``folder``: where the parse started, which relative ``-c`` paths are relative to (None: the current folder)."""
    if (key := _KEY.search(message)) is not None and key.group(1) == "config" and (path := _MISSING_FILE.search(message)):
        return missing_config_line(path.group(1), argv, folder)
    if key is not None and key.group(1) != "config":
        flag = f"--{key.group(1)}"
        given = _GIVEN.findall(message)
        value = flag_value(argv, flag)
        if value is None:  # set in a config file: named with the file
            value = given[-1].strip() if given else "?"
            flag = f"{config}: {key.group(1)}" if (config := config_with_key(argv, key.group(1), folder)) else flag
        expected = [line.strip().removeprefix("- ") for line in message.splitlines() if "Expected" in line]
        return f"{flag} {value}: expected {TAKES.get(key.group(1)) or squeeze('; '.join(expected) or message)}"
    if (unknown := _UNRECOGNIZED.search(message)) is not None and unknown.group(1).split(".")[0][2:] in (*PASSED_ON, "slurm"):
        return unrecognized_line(unknown.group(1), argv)
    if (group := _GROUP_OPTION.search(message)) is not None:
        return group_option_line(group.group(1), group.group(2), argv, folder)
    return argument_error_line(message, argv, known)


class SweepArgumentParser(ArgumentParser):
    """A parse error is one line naming the flag, the value and what the flag takes (`sweep_error_line`), raised as
    `BadInput` (exit code 2), not jsonargparse's usage and nested report (``MEPS_DEBUG=1``: those).

    ``command_line``: the arguments being parsed (None: ``sys.argv``), where the line finds the value as the user wrote it."""

    command_line: list[str] | None = None
    start_folder: str | None = None
    """Where the parse started: jsonargparse reads a config from the config's own folder, and errors come from there."""

    def parse_args(self, *args, **kwargs):
        self.start_folder = os.getcwd()
        return super().parse_args(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or os.environ.get("MEPS_DEBUG"):  # jsonargparse's nested parsers catch these
            return super().error(message, ex)
        argv = list(self.command_line if self.command_line is not None else sys.argv[1:])
        known = sorted({action.dest.split(".")[0] for action in self._actions if action.dest and action.dest != "help"})
        raise BadInput(sweep_error_line(message, argv, known, self.start_folder))


def build_parser() -> SweepArgumentParser:
    parser = SweepArgumentParser(description=DESCRIPTION, parser_mode="omegaconf+")
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    parser.add_argument("--out_dir", type=str, default="outputs/sweeps/digits")
    parser.add_argument("--gammas", type=list[int | str], default=[1, 2, 3, 4, "global"])
    parser.add_argument("--group", type=str | None, default=None, help="W&B group of the runs (default: sweep-<out_dir name>)")
    parser.add_argument("--threads", type=int | None, default=None, help="torch intra-op threads per run (default: torch's choice)")
    parser.add_argument("--workers", type=int, default=1, help="cells run side by side (one device only)")
    # list[float | str]: a value that is not a number reaches check_levels (sweep/argument_checks.py), which names it
    parser.add_argument(
        "--vae_betas",
        type=list[float | str] | None,
        default=None,
        help="one VAE cell per KL weight β >= 0 on the ELBO scale (β = 1: the ELBO; default: the VAE config's own)",
    )
    parser.add_argument(
        "--blae_noises",
        type=list[float | str],
        default=[],
        help="one more BL-AE cell per training noise rate > 0 (Gaussian noise_rate), beside the main cell's own: the MEPS frontier",
    )
    parser.add_argument("--spread_cells", type=list[str], default=[], help="cells run again at other seeds, e.g. [neural-global]")
    parser.add_argument("--spread_seeds", type=list[int], default=[], help="the other seeds (seed_everything) of --spread_cells")
    parser.add_argument(
        "--train_sizes", type=list[int | None], default=[], help="phase diagram: training-set sizes (null = the whole training split)"
    )
    parser.add_argument("--phase_models", type=list[str], default=["kernel"], help="the models of the phase diagram")
    parser.add_argument(
        "--phase_args", type=dict[str, list[str]], default={}, help="extra train.py arguments of the phase-diagram cells, per model"
    )
    parser.add_argument(
        "--probes",
        type=Stage | None,
        default=None,
        help="probe cells (validate) on every main token cell: the preset and its extra arguments",
    )
    parser.add_argument("--probe_models", type=list[str], default=list(TOKEN_MODELS), help="the models the probes run on")
    parser.add_argument(
        "--launcher",
        type=str,
        default="local",
        help=f"where the cells run: {' or '.join(LAUNCHERS)} (each cell a SLURM job through submitit; its resources: --slurm)",
    )
    parser.add_argument(
        "--slurm",
        type=SlurmSettings,
        default=SlurmSettings(),
        help="each cell job's sbatch options with --launcher slurm (a stage's own: --<stage>.slurm)",
    )
    for stage in STAGES:
        parser.add_argument(f"--{stage}", type=Stage, required=True)
    parser.add_argument("--data", type=DataOverrides, default=DataOverrides())
    parser.add_argument("--trainer", type=TrainerOverrides, default=TrainerOverrides())
    return parser


def sweep_from_args(args: list[str] | None = None) -> Sweep:
    """The sweep of a command line, every argument checked first (a bad one: `BadInput`, one line naming it)."""
    parser = build_parser()
    parser.command_line = list(sys.argv[1:] if args is None else args)
    parsed = parser.parse_args(args)
    config = parser.instantiate(parsed)
    settings = {name: config[name] for name in inspect.signature(check_sweep_settings).parameters}
    check_sweep_settings(**settings)
    from sweep.schedule import Sweep  # only now: it imports what the cells run (torch, Lightning, W&B)

    sweep = Sweep(**settings)
    resolved = parsed.clone()
    resolved.out_dir = str(sweep.out_dir)  # absolute: the jobs of --launcher slurm rebuild the sweep from this dump
    sweep.settings_yaml = parser.dump(resolved)
    return sweep

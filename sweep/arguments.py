"""The sweep's command line: its parser (train.py's override syntax: --data.path uoft-cs/cifar10,
--gammas [1,2,global], --trainer.devices 4), whose errors are one line naming the flag and the value
(`SweepArgumentParser`); `sweep/argument_checks.py` checks the values it parsed, before any cell starts."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import fields

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser

from report.cells import TOKEN_MODELS
from runtime.argument_errors import argument_error_line, config_files
from runtime.errors import BadInput, squeeze
from sweep.argument_checks import TAKES
from sweep.cells import DataOverrides, Stage, TrainerOverrides

DESCRIPTION = "The main job: does memorization rise with γ? `python sweep.py -c configs/sweeps/digits.yaml`."


_KEY = re.compile(r'Parser key "([\w.]+)"')
_GIVEN = re.compile(r"(?:Given value|Got value): (.*)")
_MISSING_FILE = re.compile(r"File does not exist: '([^']+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (\S+)")
STAGES = ("blae", "vae", "kernel", "neural")
"""The sweep's stages (`--blae`, `--vae`, `--kernel`, `--neural`): a train.py config and its arguments each."""
PASSED_ON = {"trainer": [f.name for f in fields(TrainerOverrides)], "data": [f.name for f in fields(DataOverrides)]}
"""The train.py options the sweep passes on to every cell (`--trainer.<name>`, `--data.<name>`): no others."""


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value given to ``flag`` on the command line (``--flag v`` or ``--flag=v``), the last one; None when not given."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(f"{flag}="):
            value = arg.split("=", 1)[1]
    return value


def config_with_key(argv: list[str], key: str) -> str | None:
    """The last ``-c`` file of the command line that sets the dotted ``key`` (``gammas``, ``trainer.max_steps``)."""
    found = None
    for path in config_files(argv):
        try:
            tree = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        for part in key.split("."):
            tree = tree.get(part) if isinstance(tree, dict) else None
        if tree is not None:
            found = str(path)
    return found


def missing_config_line(path: str, argv: list[str]) -> str:
    """``-c nope.yaml: no such file``, as the user wrote the path."""
    written = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("-c", "--config")]
    named = next((w for w in written if os.path.abspath(w) == path), written[-1] if written else path)
    return f"-c {named}: no such file"


def not_passed_on_line(flag: str, argv: list[str]) -> str:
    """A train.py option the sweep does not pass on to every cell: what it passes, and how a stage takes any other."""
    written, inline, inline_value = flag.partition("=")
    value = inline_value if inline else flag_value(argv, written)
    section, _, name = written[2:].partition(".")
    option = f"--{section}.{name}" if section == "trainer" else f"--{section}.init_args.{name}"
    others = ", ".join(f"--{stage}.args+=" for stage in STAGES[1:])
    return (
        f"{written}: the sweep's --{section} takes {', '.join(PASSED_ON[section])}; give any other train.py option"
        f" to a stage: --{STAGES[0]}.args+={option}={value if value is not None else 'VALUE'} (or {others})"
    )


def sweep_error_line(message: str, argv: list[str], known: list[str]) -> str:
    """One line for a parse error of the sweep's command line: the flag, the value as given, what the flag takes."""
    if (key := _KEY.search(message)) is not None and key.group(1) == "config" and (path := _MISSING_FILE.search(message)):
        return missing_config_line(path.group(1), argv)
    if key is not None and key.group(1) != "config":
        flag = f"--{key.group(1)}"
        given = _GIVEN.findall(message)
        value = flag_value(argv, flag)
        if value is None:  # set in a config file: named with the file
            value = given[-1].strip() if given else "?"
            flag = f"{config}: {key.group(1)}" if (config := config_with_key(argv, key.group(1))) else flag
        expected = [line.strip().removeprefix("- ") for line in message.splitlines() if "Expected" in line]
        return f"{flag} {value}: expected {TAKES.get(key.group(1)) or squeeze('; '.join(expected) or message)}"
    if (unknown := _UNRECOGNIZED.search(message)) is not None and unknown.group(1).split(".")[0][2:] in PASSED_ON:
        return not_passed_on_line(unknown.group(1), argv)
    return argument_error_line(message, argv, known)


class SweepArgumentParser(ArgumentParser):
    """A parse error is one line naming the flag, the value and what the flag takes (`sweep_error_line`), raised as
    `BadInput` (exit code 2), not jsonargparse's usage and nested report (``MEPS_DEBUG=1``: those).

    ``command_line``: the arguments being parsed (None: ``sys.argv``), where the line finds the value as the user wrote it."""

    command_line: list[str] | None = None

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or os.environ.get("MEPS_DEBUG"):  # jsonargparse's nested parsers catch these
            return super().error(message, ex)
        argv = list(self.command_line if self.command_line is not None else sys.argv[1:])
        known = sorted({action.dest.split(".")[0] for action in self._actions if action.dest and action.dest != "help"})
        raise BadInput(sweep_error_line(message, argv, known))


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
    for stage in STAGES:
        parser.add_argument(f"--{stage}", type=Stage, required=True)
    parser.add_argument("--data", type=DataOverrides, default=DataOverrides())
    parser.add_argument("--trainer", type=TrainerOverrides, default=TrainerOverrides())
    return parser

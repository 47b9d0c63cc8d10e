"""The sweep as a command: `python sweep.py -c configs/sweeps/digits.yaml` (or `python -m sweep ...`).

A bad argument or a failed cell is one `error:` line (exit code 2 or the cell's); a stop request leaves every
finished cell and the interrupted cell's checkpoint, and the same command resumes (exit code 75).
Every argument is checked (`sweep/argument_checks.py`) before the modules that run cells (torch, Lightning,
W&B) are imported: a bad one is refused within the parser's own start-up.
"""

from __future__ import annotations

import inspect
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runtime import exit_codes
from runtime.console import report_error, say_resumable
from runtime.errors import Preempted
from runtime.quiet import quiet_known_noise
from runtime.signals import stop_at_once
from sweep.argument_checks import check_sweep_settings
from sweep.arguments import build_parser

if TYPE_CHECKING:
    from sweep.schedule import Sweep


def sweep_from_args(args: list[str] | None = None) -> Sweep:
    """The sweep of a command line, every argument checked first (a bad one: `BadInput`, one line naming it)."""
    parser = build_parser()
    parser.command_line = list(sys.argv[1:] if args is None else args)
    config = parser.instantiate(parser.parse_args(args))
    settings = {name: config[name] for name in inspect.signature(check_sweep_settings).parameters}
    check_sweep_settings(**settings)
    from sweep.schedule import Sweep  # only now: it imports what the cells run (torch, Lightning, W&B)

    return Sweep(**settings)


def main(args: list[str] | None = None) -> Path:
    from runtime.wandb_run import ensure_wandb_mode

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
        say_resumable(stop, shlex.join(["python", "sweep.py", *argv]))  # the same command resumes the sweep
        return exit_codes.RESUMABLE
    except Exception as err:
        return report_error(err)
    return exit_codes.OK


def run_from_command_line() -> None:
    """The process's exit: 75 through `exit_codes.exit_now` (a stopped sweep skips the interpreter's slow
    teardown), any other code through `sys.exit`."""
    code = console_main()
    if code == exit_codes.RESUMABLE:
        exit_codes.exit_now(code)
    sys.exit(code)

"""The sweep as a command: `python sweep.py -c configs/sweeps/digits.yaml` (or `python -m sweep ...`).

A bad argument or a failed cell is one `error:` line (exit code 2 or the cell's); a stop request leaves every
finished cell and the interrupted cell's checkpoint, and the same command resumes (exit code 75).
Every argument is checked (`sweep/argument_checks.py`) before the modules that run cells (torch, Lightning,
W&B) are imported: a bad one is refused within the parser's own start-up.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from runtime import exit_codes
from runtime.console import report_error, say_resumable
from runtime.errors import Preempted
from runtime.quiet import quiet_known_noise
from runtime.signals import stop_at_once
from sweep.arguments import sweep_from_args

__all__ = ["console_main", "main", "run_from_command_line", "sweep_from_args"]


def main(args: list[str] | None = None) -> Path:
    from runtime.wandb_run import ensure_wandb_mode

    quiet_known_noise()
    argv = list(sys.argv[1:] if args is None else args)
    sweep = sweep_from_args(argv)
    # W&B mode decided once, here: the cells (forked workers, subprocesses, SLURM jobs) inherit it, and so does the
    # summary run started at the end (without a key and no WANDB_MODE, wandb.init would ask for a login)
    ensure_wandb_mode()
    if sweep.launcher == "slurm":
        from sweep.submission import submit_and_wait  # each cell a SLURM job (submitit)

        return submit_and_wait(sweep)
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

"""How a ``train.py`` process starts and ends: the launcher watchdog, stop requests, one-line errors, exit codes.

A bad input is ``error: <one line>`` and exit code 2, a detected fault exit code 1, a stop request a
checkpoint and exit code 75 with the command that resumes (``runtime/exit_codes.py``); a stop before
anything was saved says so and gives the same command again (a resume would find nothing to continue);
Ctrl-C exits with 130 unless it left a checkpoint of the step reached. ``MEPS_DEBUG=1`` shows the
traceback as well, with the same exit code.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from runtime import exit_codes
from runtime.errors import Preempted, StoppedAtOnce, loop_started, mark_loop_started, one_line_error
from runtime.launcher_watchdog import mark_stopped_for_resume, stop_when_launcher_dies, stopped_for_resume
from runtime.ranks import is_main_process
from runtime.run_status import without_resume_flags
from runtime.signals import stop_at_once


def resume_command(argv: list[str], script: str = "train.py") -> str:
    """The command that continues a stopped run: the same one with ``--ckpt_path last``."""
    return shlex.join(["python", script, *without_resume_flags(argv), "--ckpt_path", "last"])


def same_command(argv: list[str], script: str = "train.py") -> str:
    """The command as it was given: what to run again when a stop came before anything was saved."""
    return shlex.join(["python", script, *argv])


def run_command(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> int:
    """``main(argv)`` as a command: every bad input, fault or stop request ends in one or two lines and an exit code.

    ``argv=None``: the command line (``main`` gets None, so LightningCLI reads ``sys.argv`` itself)."""
    stop_when_launcher_dies()
    mark_loop_started(False)
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    main_process = is_main_process()
    try:
        with stop_at_once():
            main(None if from_command_line else argv)  # None: LightningCLI reads sys.argv itself
    except Preempted as stop:
        mark_stopped_for_resume()
        if main_process:
            say_stopped(stop, argv)
        return exit_codes.ABORTED if stop.checkpoint is None and stop.signal_name == signal.Signals.SIGINT.name else stop.exit_code
    except (KeyboardInterrupt, SystemExit) as stop:
        interrupt = stop if isinstance(stop, KeyboardInterrupt) else stop.__context__  # Lightning: sys.exit(1) after Ctrl-C
        if not isinstance(interrupt, KeyboardInterrupt):
            raise  # --help, --print_config
        if main_process:
            print(interrupted_line(interrupt, argv), file=sys.stderr, flush=True)
        return exit_codes.ABORTED
    except Exception as err:
        return report_error(err)
    return exit_codes.OK


def say_stopped(stop: Preempted, argv: list[str]) -> None:
    """A stop request's lines: the command that resumes when a checkpoint was saved, else the same command again."""
    if stop.checkpoint is not None:
        say_resumable(stop, resume_command(argv))
    else:
        print(f"{stop}: nothing was saved; run the same command again: {same_command(argv)}", file=sys.stderr, flush=True)


def interrupted_line(interrupt: KeyboardInterrupt, argv: list[str]) -> str:
    """What a Ctrl-C that stopped the command at once left: the checkpoint a resume continues from, or nothing."""
    if isinstance(interrupt, StoppedAtOnce):
        how = "stopped at once by a second Ctrl-C" + (f" at global step {interrupt.step}" if interrupt.step is not None else "")
        if interrupt.checkpoint is not None:
            return f"{how}: {interrupt.checkpoint} holds the last step saved before it\nto resume: {resume_command(argv)}"
        return f"{how}: no checkpoint was saved yet; run the same command again: {same_command(argv)}"
    if not loop_started():
        return f"stopped by Ctrl-C before training started: nothing was saved; run the same command again: {same_command(argv)}"
    return "stopped by Ctrl-C"


def say_resumable(stop: Preempted, command: str) -> None:
    """The two lines of a command stopped with a checkpoint: what stopped it, and the command that goes on."""
    print(f"{stop} (exit code {exit_codes.RESUMABLE}: resumable)\nto resume: {command}", file=sys.stderr, flush=True)


def report_error(err: Exception) -> int:
    """Print ``err`` as one ``error:`` line and return its exit code; re-raise it when it has no line (a bug:
    its own traceback, exit code 1). ``MEPS_DEBUG`` set: the traceback, then the line, and the same exit code."""
    line = one_line_error(err)
    if line is None:
        raise err
    if os.environ.get("MEPS_DEBUG"):
        traceback.print_exception(err, file=sys.stderr)
        print(f"error: {line.message}  (exit code {line.exit_code})", file=sys.stderr, flush=True)
    else:
        print(f"error: {line.message}  [MEPS_DEBUG=1 shows the traceback]", file=sys.stderr, flush=True)
    return line.exit_code


def exit_with(code: int) -> None:
    """Leave the process with ``code``; a rank stopped for a resume leaves at once (its launcher may be gone)."""
    if stopped_for_resume():
        exit_codes.exit_now(code)
    sys.exit(code)

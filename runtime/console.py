"""How a ``train.py`` process starts and ends: the launcher watchdog, stop requests, one-line errors, exit codes.

A bad input is ``error: <one line>`` and exit code 2, a detected fault exit code 1, a stop request a
checkpoint and exit code 75 with the command that resumes (``runtime/exit_codes.py``);
``MEPS_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from runtime import exit_codes
from runtime.errors import Preempted, mark_loop_started, one_line_error
from runtime.launcher_watchdog import mark_stopped_for_resume, stop_when_launcher_dies, stopped_for_resume
from runtime.ranks import is_main_process
from runtime.run_status import without_resume_flags
from runtime.signals import stop_at_once


def resume_command(argv: list[str], script: str = "train.py") -> str:
    """The command that continues a stopped run: the same one with ``--ckpt_path last``."""
    return shlex.join(["python", script, *without_resume_flags(argv), "--ckpt_path", "last"])


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
            say_resumable(stop, resume_command(argv))
        return stop.exit_code
    except (KeyboardInterrupt, SystemExit) as stop:
        interrupted = isinstance(stop, KeyboardInterrupt) or isinstance(stop.__context__, KeyboardInterrupt)
        if not interrupted:
            raise  # --help, --print_config
        if main_process:
            print(
                f"stopped at once by a second Ctrl-C: last.ckpt holds the last step saved before it\nto resume: {resume_command(argv)}",
                file=sys.stderr,
                flush=True,
            )
        return exit_codes.ABORTED
    except Exception as err:
        return report_error(err)
    return exit_codes.OK


def say_resumable(stop: Preempted, command: str) -> None:
    """The two lines of a command stopped with a checkpoint: what stopped it, and the command that goes on."""
    print(f"{stop} (exit code {exit_codes.RESUMABLE}: resumable)\nto resume: {command}", file=sys.stderr, flush=True)


def report_error(err: Exception) -> int:
    """Print ``err`` as one ``error:`` line and return its exit code; re-raise it when it has no line
    (a bug: its own traceback) or when ``MEPS_DEBUG`` is set."""
    line = None if os.environ.get("MEPS_DEBUG") else one_line_error(err)
    if line is None:
        raise err
    print(f"error: {line.message}  [MEPS_DEBUG=1 shows the traceback]", file=sys.stderr, flush=True)
    return line.exit_code


def exit_with(code: int) -> None:
    """Leave the process with ``code``; a rank stopped for a resume leaves at once (its launcher may be gone)."""
    if stopped_for_resume():
        exit_codes.exit_now(code)
    sys.exit(code)

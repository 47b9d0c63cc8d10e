"""One line per failure: the exceptions this project raises on purpose, and how any error reads on the command line.

``train.py``/``sweep.py`` print ``error: <line>`` and exit with the code of ``runtime/exit_codes.py``;
``MEPS_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from runtime import exit_codes
from runtime.atomic_files import PARTIAL_PREFIX


class MepsFault(RuntimeError):
    """A fault this project detects and explains in one line (a non-finite loss, a bad batch...).

    ``exit_code`` is what ``train.py`` exits with: 1 for a fault of the run, 2 for a bad input.
    """

    exit_code = exit_codes.FAULT


class BadInput(MepsFault, ValueError):
    """A bad input found by this project's own checks (a checkpoint, a sweep argument, a value an ``__init__``
    refused): exit code 2. A ``ValueError`` too, so that callers of ``train.main`` catch it as one."""

    exit_code = exit_codes.BAD_INPUT


class StoppedAtOnce(KeyboardInterrupt):
    """A second Ctrl-C while training: stop now, without waiting for the step to end.

    ``runtime/signals.py`` raises it; ``callbacks/run/preemption.py`` fills in ``step`` (the global step
    reached) and ``checkpoint`` (the newest checkpoint on disk that a resume would continue, None when
    there is none), so that the command line says what was kept.
    """

    def __init__(self) -> None:
        super().__init__()
        self.step: int | None = None
        self.checkpoint: str | None = None


class Preempted(MepsFault):
    """The run was asked to stop (SIGTERM, SIGUSR1, Ctrl-C) and stopped at a step boundary, resumable.

    ``checkpoint`` is the file that resumes it (None when the request came before training started:
    nothing to save), ``step`` the global step it holds, ``signal_name`` what was received.
    """

    exit_code = exit_codes.RESUMABLE

    def __init__(
        self, message: str, signal_name: str, step: int | None = None, checkpoint: str | None = None, exit_code: int | None = None
    ):
        super().__init__(message)
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        if exit_code is not None:
            self.exit_code = exit_code


_LOOP_STARTED = False
"""Set once a fit/validate/test/predict loop has started: errors before it are input errors."""


def loop_started() -> bool:
    return _LOOP_STARTED


def mark_loop_started(started: bool = True) -> None:
    global _LOOP_STARTED
    _LOOP_STARTED = started


PLAIN_INPUT_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def input_errors() -> tuple[type[BaseException], ...]:
    """Raised before the loop starts, these are bad inputs (a path, a value, a checkpoint): one line, exit code 2.

    Lightning's ``MisconfigurationException`` is one of them; it is imported here, on first use, because
    importing Lightning takes seconds that a ``--help`` or a Ctrl-C during start-up should not wait for."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return (*PLAIN_INPUT_ERRORS, MisconfigurationException)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
PEER_FAILURE_SIGNS = ("Connection closed by peer", "remote worker crash", "Connection reset by peer", "ncclRemoteError")


class ErrorLine(NamedTuple):
    message: str
    exit_code: int


def squeeze(text: object) -> str:
    """All whitespace runs (newlines included) of ``str(text)`` as single spaces."""
    return " ".join(str(text).split())


def one_line_error(err: BaseException) -> ErrorLine | None:
    """The line and exit code that stand for ``err`` on the command line, or None to show the traceback."""
    message = squeeze(err) or type(err).__name__
    if isinstance(err, MepsFault):
        return ErrorLine(message, err.exit_code)
    if isinstance(err, RuntimeError) and any(sign in message for sign in PEER_FAILURE_SIGNS):
        return ErrorLine(
            f"another rank of this job failed (its error is above), so this rank stopped too: {message[:200]}", exit_codes.FAULT
        )
    if (full := disk_full(err)) is not None:
        what = full.strerror or os.strerror(full.errno or errno.ENOSPC)
        where = f" writing {written_file(str(full.filename))}" if full.filename else ""
        return ErrorLine(f"{what}{where} (disk full: nothing partial was kept; free space and run again)", exit_codes.FAULT)
    if isinstance(err, input_errors()) and not loop_started():
        return ErrorLine(message, exit_codes.BAD_INPUT)
    return None


def written_file(filename: str) -> str:
    """The file a write was for: an atomic write's temporary file stands for the folder it was written into."""
    path = Path(filename)
    return f"into {path.parent}" if path.name.startswith(PARTIAL_PREFIX) else filename


def exception_chain(err: BaseException) -> Iterator[BaseException]:
    """``err``, then the exceptions it was raised from or while handling (``__cause__``, ``__context__``), once each."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def disk_full(err: BaseException) -> OSError | None:
    """The "no space left" (or quota) ``OSError`` behind ``err``, or None.

    ``torch.save`` on a full disk raises a ``RuntimeError`` ("[enforce fail at inline_container.cc] ...
    unexpected pos"), raised while handling the ``OSError`` of the write: the fault is on that chain.
    """
    return next((link for link in exception_chain(err) if isinstance(link, OSError) and link.errno in DISK_FULL), None)


_WRAPPER_SIGNS = ("Does not validate against any of the Union subtypes", "Problem with given class_path", "Parser key ")


def root_cause(err: BaseException) -> BaseException:
    """The exception our own code raised, beneath the ones jsonargparse wraps it in while instantiating.

    jsonargparse reports a ``ValueError`` from a model's ``__init__`` as a new ``ValueError`` listing every
    Union subtype it tried plus a dump of the settings; the original is on the ``__context__`` chain.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not any(sign in str(current) for sign in _WRAPPER_SIGNS) and type(current).__module__.split(".")[0] != "jsonargparse":
            return current
        current = current.__cause__ or current.__context__
    return err

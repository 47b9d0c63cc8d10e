"""This process's stdout and stderr into a log file for the length of a block (a sweep's cell run in this
process writes its whole output to its own log while the console keeps one line per cell)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


@contextlib.contextmanager
def output_to(log: Path):
    """This process's stdout and stderr go to ``log`` (appended) until the block ends: file descriptors 1 and 2
    (what C code and subprocesses print) and ``sys.stdout``/``sys.stderr`` (whatever object they are now)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", buffering=1) as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield sink
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])

"""Stop requests: SIGTERM, SIGUSR1 and Ctrl-C become a flag that a training loop acts on at a step boundary.

A scheduler asks a job to stop with SIGTERM (preemption) or SIGUSR1 (``sbatch --signal=USR1@90``: the
time limit is near). Python's default for SIGTERM kills the process wherever it is, mid-step or
mid-write. ``StopRequests`` only records the first signal; ``callbacks/run/preemption.py`` checks it after
every optimizer step, saves a checkpoint of the step reached and stops. A second Ctrl-C raises
``StoppedAtOnce`` (a ``KeyboardInterrupt``) at once, for a user who does not want to wait for the step to end.

Before training starts there is nothing to save, so ``stop_at_once`` (what ``train.py`` installs for the
whole process) ends the run right away with ``Preempted``; a Ctrl-C then is Python's own
``KeyboardInterrupt``, which ``runtime/console.py`` turns into one line.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from runtime.errors import Preempted, StoppedAtOnce

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
EARLY_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
"""Ctrl-C keeps Python's KeyboardInterrupt before training starts (``train.py`` turns it into one line)."""


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class StopRequests:
    """Records the first of ``signals`` received; install while a loop can act on it, restore afterwards."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS):
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str | None:
        return None if self.received is None else signal_name(self.received)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise StoppedAtOnce  # the second Ctrl-C: stop now
        if self.received is None:
            self.received = signum
            if signum == signal.SIGINT:
                print("\nCtrl-C: stopping after this step with a checkpoint of it (Ctrl-C again to stop at once)", flush=True)

    def install(self) -> StopRequests:
        if _in_main_thread() and not self._previous:
            self._previous = {signum: signal.signal(signum, self.handle) for signum in self.signals}
        return self

    def restore(self) -> None:
        if _in_main_thread():
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        self._previous = {}


def _stop_at_once(signum: int, frame: FrameType | None) -> None:
    name = signal_name(signum)
    raise Preempted(f"stopped by {name} before training started", name)


@contextlib.contextmanager
def stop_at_once(signals: tuple[int, ...] = EARLY_SIGNALS, handler: Callable = _stop_at_once):
    """While the body runs, SIGTERM/SIGUSR1 raise ``Preempted`` (before training; the loop installs ``StopRequests``).

    Installing a SIGUSR1 handler also keeps Lightning from installing its own SLURM one, which saves an
    ``hpc_ckpt_<n>.ckpt`` into ``default_root_dir`` that any later run started from there would load.
    """
    if not _in_main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def forward_to(process, signals: tuple[int, ...] = EARLY_SIGNALS):
    """While a parent waits on a child (a sweep's ``train.py`` run), pass SIGTERM/SIGUSR1 on to it: the child
    checkpoints and exits with 75, and the parent then stops too. Ctrl-C is left alone: the terminal sends it
    to the child already (a forwarded copy would read as the second Ctrl-C, "stop at once")."""
    if not _in_main_thread():
        yield
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in signals}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)

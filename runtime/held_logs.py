"""Lightning's start-up lines (seed set, GPU available, tips), held back until the command is known to be good.

A command with a typo or a bad value should print the one error line, not the error after a few lines of
start-up chatter. ``HeldLogs`` buffers what Lightning's loggers emit while the command is parsed and its
classes are built (in the standard library's ``logging.handlers.MemoryHandler``); ``release()`` (called once
they are) hands it all, in order, to those loggers' own handlers, and an error discards it.
"""

from __future__ import annotations

import logging
from logging.handlers import MemoryHandler

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


class HeldLogs:
    def __init__(self, names: tuple[str, ...] = LIGHTNING_LOGGERS) -> None:
        self.loggers = [logging.getLogger(name) for name in names]
        self._hold = MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1)  # no target: it only holds
        self._saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []

    def __enter__(self) -> HeldLogs:
        for logger in self.loggers:
            self._saved.append((logger, list(logger.handlers), logger.propagate))
            logger.handlers, logger.propagate = [self._hold], False
        return self

    def _restore(self) -> None:
        for logger, handlers, propagate in self._saved:
            logger.handlers, logger.propagate = handlers, propagate
        self._saved = []

    def release(self) -> None:
        """Print what was held (through the loggers' own handlers) and stop holding."""
        if not self._saved:
            return
        by_name = {logger.name: logger for logger, _, _ in self._saved}
        self._restore()
        for record in self._hold.buffer:
            owner = next((by_name[name] for name in by_name if record.name == name or record.name.startswith(f"{name}.")), None)
            (owner or logging.getLogger(record.name)).handle(record)
        self._hold.buffer.clear()

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.release()
        else:
            self._restore()  # the command failed: its error line is all there is to read

"""Silence the lines a researcher learns to ignore, and only those: Lightning's advertising tips (litlogger,
litmodels) and W&B's own banner and footer (``WANDB_QUIET``; ``train.py`` prints where the W&B run, the run
folder and the best checkpoint are, as absolute paths, at the end). ``WANDB_QUIET=false`` brings W&B's back."""

from __future__ import annotations

import logging
import os

LIGHTNING_INFO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)


class DropTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing ..." lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_known_noise() -> None:
    """Idempotent; call before the Trainer is built."""
    os.environ.setdefault("WANDB_QUIET", "true")
    for name in LIGHTNING_INFO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropTips) for f in logger.filters):
            logger.addFilter(DropTips())

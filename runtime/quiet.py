"""Silence the lines a researcher learns to ignore, and only those: Lightning's advertising tips (litlogger,
litmodels), W&B's own banner and footer (``WANDB_QUIET``; ``train.py`` prints where the W&B run, the run
folder and the best checkpoint are, as absolute paths, at the end; ``WANDB_QUIET=false`` brings W&B's back), and
outside a SLURM job Lightning's warning that ``srun`` is installed but not used: on a machine with SLURM (a login
node, a workstation, the test suite's cluster) every command would print it, while it matters only inside a job,
where a multi-task run started without ``srun`` hangs (there it stays)."""

from __future__ import annotations

import logging
import os
import warnings

LIGHTNING_INFO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)


SRUN_NOT_USED = "The `srun` command is available on your system but is not used"
"""The start of Lightning's warning (``SLURMEnvironment._validate_srun_used``) when ``srun`` is on PATH but the process
was not started by it."""


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
    if "SLURM_JOB_ID" not in os.environ:  # not inside a SLURM job: nothing to start with srun
        warnings.filterwarnings("ignore", message=SRUN_NOT_USED)

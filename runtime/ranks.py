"""Which process of a job this is, before any process group exists (read from the launchers' variables)."""

import os

RANK_VARIABLES = ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID")
"""Set by Lightning's launcher, torchrun and srun; 0 or unset on the job's first process."""


def is_main_process() -> bool:
    """The job's first process (global rank 0): the one that prints what every rank would say."""
    return all(os.environ.get(var, "0") == "0" for var in RANK_VARIABLES)

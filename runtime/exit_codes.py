"""What ``train.py`` and ``sweep.py`` exit with, so that a script or a scheduler can tell the cases apart.

| code | meaning |
|---|---|
| 0  | finished |
| 1  | a fault of the run (non-finite loss, disk full, another rank crashed): look at the error line |
| 2  | a bad input (a path, a value, a config key, a checkpoint): the error line names it; nothing was written |
| 75 | stopped early on request (SIGTERM, SIGUSR1, Ctrl-C): a checkpoint of the step reached was saved, rerun |
|    | the same command with ``--ckpt_path last`` (a requeued SLURM job resumes by itself); before training |
|    | started (SIGTERM, SIGUSR1) nothing was saved: rerun the same command as it was |
| 130| Ctrl-C that stopped at once: a second Ctrl-C (the line names the checkpoint a resume continues from, |
|    | if any), or Ctrl-C before training started (nothing saved: rerun the same command) |

75 is ``EX_TEMPFAIL`` of BSD's sysexits.h: "a temporary failure; the user is invited to retry".
"""

import atexit
import os
import sys

OK = 0
FAULT = 1
BAD_INPUT = 2
RESUMABLE = 75
ABORTED = 130


def exit_now(code: int) -> None:
    """Exit after the atexit handlers (W&B finishes its run there), skipping the interpreter's own teardown of
    torch and friends: 5-10 s on a loaded node, which a preempted job may not have. Only for a process that
    stopped on a stop request: what it wrote is complete on disk already (atomic, fsynced checkpoint and status)."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)

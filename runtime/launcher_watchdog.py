"""A DDP rank > 0 stops when the process that launched it is gone, instead of hanging in a collective."""

from __future__ import annotations

import os
import sys
import threading
import time

from runtime import exit_codes

_STOPPED_FOR_RESUME = threading.Event()
"""Set when this process stopped on a stop request, with the checkpoint saved: its launcher may exit before it."""


def mark_stopped_for_resume() -> None:
    _STOPPED_FOR_RESUME.set()


def stopped_for_resume() -> bool:
    return _STOPPED_FOR_RESUME.is_set()


def stop_when_launcher_dies(poll_s: float = 2.0) -> None:
    """A DDP rank > 0 exits when the process that launched it is gone (rank 0 under Lightning's launcher,
    torchrun's agent, slurmstepd): a killed or crashed rank 0 would otherwise leave it blocked in a
    collective until the process-group timeout (30 min), holding its GPU."""
    if os.environ.get("LOCAL_RANK", "0") == "0":
        return
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent and stopped_for_resume():
                os._exit(exit_codes.OK)  # rank 0 saved, said so and left first; this rank is only finishing its exit
            if os.getppid() != parent:
                print(
                    f"error: rank {os.environ.get('RANK', os.environ['LOCAL_RANK'])}: the process that launched it"
                    f" (pid {parent}) is gone, stopping this rank too",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(1)

    threading.Thread(target=watch, name="launcher-watchdog", daemon=True).start()

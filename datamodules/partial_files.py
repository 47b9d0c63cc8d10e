"""Leftovers of interrupted atomic writes (temp file + rename) carry the writer's pid in their name."""
import os


def process_alive(pid: int) -> bool:
    """Whether a process of this host still runs (a partial file of a live writer must not be removed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True

"""One W&B run per job: offline when there is no key or no server, a run id shared by every rank, a run folder.

The run folder `<save_dir>/<project>/<run id>/` holds `config.yaml` and `checkpoints/` (Lightning's
ModelCheckpoint puts them there for a WandbLogger), so two runs never collide on config.yaml.
A resumed run (`fit --ckpt_path`, same run id) continues the same W&B run and keeps the config of
each earlier attempt as `config.attempt-<n>.yaml` (`runtime/wandb_config.py` writes it).

Imports neither Lightning nor wandb nor urllib's HTTP stack at module level: the sweep's parser imports
this module, and its first line must not wait for them (`bench/bench_startup.py`).
"""

from __future__ import annotations

import netrc
import os
import secrets
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.ranks import is_main_process

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

PROJECT = "meps-ldh"
"""The W&B project of every run and of the sweep's summary run (runs land in ``<save_dir>/<PROJECT>/<run id>``)."""
RUN_ID_ENV = "MEPS_RUN_ID"


DEFAULT_WANDB_URL = "https://api.wandb.ai"
PROBE_TIMEOUT_ENV = "MEPS_WANDB_PROBE_TIMEOUT"
"""Seconds the W&B server may take to answer the reachability probe (default 5)."""


def wandb_base_url() -> str:
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_URL


def wandb_key_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        netrc_path = os.environ.get("NETRC") or Path.home() / ".netrc"
        host = urllib.parse.urlparse(wandb_base_url()).hostname or "api.wandb.ai"
        return netrc.netrc(netrc_path).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_unreachable_reason(timeout: float | None = None) -> str | None:
    """None when the W&B server answers HTTP at all (any status), else why not (refused, DNS, timeout).

    Goes through urllib, so HTTP(S)_PROXY settings apply as they do for wandb itself.
    """
    import ssl
    import urllib.error
    import urllib.request

    timeout = float(os.environ.get(PROBE_TIMEOUT_ENV, 5)) if timeout is None else timeout
    url = wandb_base_url()
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # the server answered
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, ssl.SSLError):
            return None  # the server answered; certificates are wandb's business (it may use another CA bundle)
        return f"{url} unreachable ({' '.join(str(reason).split()) or type(reason).__name__})"
    return None


_OFFLINE_NOTE: list[str] = []
"""Why this process logs offline, until ``announce_wandb_mode`` says it (once)."""
_MODE_ERROR: list[str] = []
"""Why the W&B mode asked for cannot work, until ``check_wandb_mode`` raises it (once)."""
UPLOADING_MODES = ("online", "run", "shared")
"""The values of WANDB_MODE with which ``wandb.init`` logs in to the server (and needs an API key)."""


def no_key_message(mode: str) -> str:
    """The one line for WANDB_MODE=<an uploading mode> without an API key (wandb would raise a ``UsageError``)."""
    netrc_path = os.environ.get("NETRC") or "~/.netrc"
    return (
        f"WANDB_MODE={mode} but no W&B API key (WANDB_API_KEY is unset and {netrc_path} has none): run `wandb login`,"
        " or set WANDB_MODE=offline to log locally (`wandb sync <run dir>` uploads later)"
    )


def ensure_wandb_mode(announce: bool = True) -> str:
    """Pick offline mode when there is no API key or the server cannot be reached, so no run waits on
    a login prompt or a dead network. Says so once (DDP children inherit WANDB_MODE and stay quiet),
    right away or, with ``announce=False``, when ``announce_wandb_mode`` is called (``train.py`` does so
    once the command has parsed, so that a typo's error line comes first). An explicit WANDB_MODE is
    respected as it is, except that an uploading mode (``UPLOADING_MODES``) without an API key is a bad
    input: ``BadInput``, raised right away or, with ``announce=False``, by ``check_wandb_mode`` (so that
    ``--help`` still works). Found without asking the server anything."""
    if "WANDB_MODE" in os.environ:
        mode = os.environ["WANDB_MODE"]
        if mode in UPLOADING_MODES and not wandb_key_available() and not _MODE_ERROR:
            _MODE_ERROR.append(no_key_message(mode))
        if announce:
            announce_wandb_mode()
        return mode
    reason: str | None
    if not wandb_key_available():
        reason = "no API key found"
    else:
        reason = wandb_unreachable_reason()
    if reason is not None:
        os.environ["WANDB_MODE"] = "offline"
        if is_main_process():
            _OFFLINE_NOTE.append(f"W&B: {reason}, logging offline (sync later with `wandb sync <run dir>`)")
    if announce:
        announce_wandb_mode()
    return os.environ.get("WANDB_MODE", "online")


def check_wandb_mode() -> None:
    """Raise ``BadInput`` (once) when the W&B mode ``ensure_wandb_mode`` found cannot work: ``train.py`` calls it
    once the command has parsed and its config has a WandbLogger, before anything is built or written."""
    if _MODE_ERROR:
        from runtime.errors import BadInput  # here: the sweep's parser needs none of what runtime.errors imports

        raise BadInput(_MODE_ERROR.pop())


def announce_wandb_mode() -> None:
    """Say why this process logs offline, after ``check_wandb_mode`` (so a mode that cannot work stops here at the latest)."""
    check_wandb_mode()
    while _OFFLINE_NOTE:
        print(_OFFLINE_NOTE.pop(0), file=sys.stderr, flush=True)


def wandb_agent_run_id() -> str | None:
    """The run id a W&B sweep agent gave this process (``WANDB_RUN_ID``), or None.

    An agent sets ``WANDB_RUN_ID`` and ``WANDB_SWEEP_ID`` for each run it starts, and W&B names the run by it: the
    run folder takes the same name. A ``WANDB_RUN_ID`` without ``WANDB_SWEEP_ID`` (exported once in a shell) is not
    taken: every run started from there would share one run folder."""
    if os.environ.get("WANDB_SWEEP_ID"):
        return os.environ.get("WANDB_RUN_ID") or None
    return None


def job_run_id() -> str:
    """A run id shared by every rank of a job: rank 0 draws it (or takes a W&B sweep agent's, ``wandb_agent_run_id``),
    DDP children inherit the env var."""
    if RUN_ID_ENV not in os.environ:
        os.environ[RUN_ID_ENV] = wandb_agent_run_id() or secrets.token_hex(4)
    return os.environ[RUN_ID_ENV]


def run_dir(trainer: Trainer) -> Path | None:
    """The run folder of the job's WandbLogger (needs no collective), or None without one."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return Path(logger.save_dir or ".") / str(logger.name) / str(logger.version)
    return None


def wandb_files_dir(trainer: Trainer) -> Path | None:
    """Local folder of the W&B run (what `wandb sync` and `wandb leet inspect` read). Rank 0 only."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger.experiment is not None and hasattr(logger.experiment, "dir"):
            return Path(logger.experiment.dir).parent
    return None


def keep_previous_config(path: Path) -> Path:
    """Rename ``config.yaml`` to the first free ``config.attempt-<n>.yaml`` before a resumed run rewrites it."""
    n = 1
    while (kept := path.with_name(f"{path.stem}.attempt-{n}{path.suffix}")).exists():
        n += 1
    os.replace(path, kept)
    return kept

"""One W&B run per job: offline when there is no key or no server, the full CLI config in the run, a run folder.

The run folder `<save_dir>/<project>/<run id>/` holds `config.yaml` and `checkpoints/` (Lightning's
ModelCheckpoint puts them there for a WandbLogger), so two runs never collide on config.yaml.
A resumed run (`fit --ckpt_path`, same run id) continues the same W&B run and keeps the config of
each earlier attempt as `config.attempt-<n>.yaml`.
"""

from __future__ import annotations

import netrc
import os
import secrets
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from runtime.ranks import is_main_process

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


def ensure_wandb_mode(announce: bool = True) -> str:
    """Pick offline mode when there is no API key or the server cannot be reached, so no run waits on
    a login prompt or a dead network. Says so once (DDP children inherit WANDB_MODE and stay quiet),
    right away or, with ``announce=False``, when ``announce_wandb_mode`` is called (``train.py`` does so
    once the command has parsed, so that a typo's error line comes first). An explicit WANDB_MODE is
    respected as it is."""
    if "WANDB_MODE" in os.environ:
        return os.environ["WANDB_MODE"]
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


def announce_wandb_mode() -> None:
    while _OFFLINE_NOTE:
        print(_OFFLINE_NOTE.pop(0), file=sys.stderr, flush=True)


def job_run_id() -> str:
    """A run id shared by every rank of a job: rank 0 draws it, DDP children inherit the env var."""
    if RUN_ID_ENV not in os.environ:
        os.environ[RUN_ID_ENV] = secrets.token_hex(4)
    return os.environ[RUN_ID_ENV]


def run_dir(trainer: Trainer) -> Path | None:
    """The run folder of the job's WandbLogger (needs no collective), or None without one."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return Path(logger.save_dir or ".") / str(logger.name) / str(logger.version)
    return None


def wandb_files_dir(trainer: Trainer) -> Path | None:
    """Local folder of the W&B run (what `wandb sync` and `wandb leet inspect` read). Rank 0 only."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger.experiment is not None and hasattr(logger.experiment, "dir"):
            return Path(logger.experiment.dir).parent
    return None


class WandbSaveConfigCallback(SaveConfigCallback):
    """Writes the resolved config into the run folder and into the W&B run's config."""

    def __init__(self, parser, config, config_filename: str = "config.yaml", overwrite: bool = True, multifile: bool = False):
        super().__init__(parser, config, config_filename, overwrite, multifile, save_to_log_dir=False)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        folder = run_dir(trainer) or Path(trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.config_filename
        if target.is_file() and stage == "fit" and self.config.get("ckpt_path"):
            keep_previous_config(target)  # a resumed run: the config of every attempt stays in the folder
        self.parser.save(self.config, str(target), skip_none=False, overwrite=True, multifile=self.multifile)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config.as_dict(), allow_val_change=True)


def keep_previous_config(path: Path) -> Path:
    """Rename ``config.yaml`` to the first free ``config.attempt-<n>.yaml`` before a resumed run rewrites it."""
    n = 1
    while (kept := path.with_name(f"{path.stem}.attempt-{n}{path.suffix}")).exists():
        n += 1
    os.replace(path, kept)
    return kept

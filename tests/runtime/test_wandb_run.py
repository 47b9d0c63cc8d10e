"""W&B without a network: offline when there is no key or no server, said once."""

from __future__ import annotations

import os
import time

from runtime.wandb_run import ensure_wandb_mode


def test_unreachable_wandb_server_means_offline_said_once(monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: connection refused
    for var in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    assert ensure_wandb_mode() == "offline" and os.environ["WANDB_MODE"] == "offline"
    assert ensure_wandb_mode() == "offline"
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.count("logging offline") == 1 and "http://127.0.0.1:9 unreachable" in err


def test_no_key_means_offline(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert ensure_wandb_mode() == "offline"

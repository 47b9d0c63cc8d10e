"""W&B without a network: offline when there is no key or no server, said once."""

from __future__ import annotations

import os
import time

import pytest

from runtime import exit_codes, wandb_run
from runtime.errors import BadInput, one_line_error
from runtime.wandb_run import announce_wandb_mode, ensure_wandb_mode


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


def without_a_key(monkeypatch, tmp_path, mode: str = "online") -> None:
    """No API key anywhere wandb would find one: no WANDB_API_KEY, an empty HOME, no ~/.netrc."""
    monkeypatch.setenv("WANDB_MODE", mode)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # were the server asked, the refusal would show
    monkeypatch.setattr(wandb_run, "_MODE_ERROR", [], raising=False)  # what a test leaves unsaid is not said in the next


def test_online_without_a_key_is_one_line_naming_the_fix(monkeypatch, tmp_path):
    """WANDB_MODE=online and no key: wandb.init would raise a UsageError traceback; this says what to do, exit 2."""
    without_a_key(monkeypatch, tmp_path)
    with pytest.raises(BadInput) as raised:
        ensure_wandb_mode()
    line = one_line_error(raised.value)
    assert line is not None and line.exit_code == exit_codes.BAD_INPUT
    for part in ("WANDB_MODE=online", "WANDB_API_KEY", "wandb login", "WANDB_MODE=offline"):
        assert part in line.message, line.message
    assert "\n" not in line.message and "127.0.0.1" not in line.message


def test_online_without_a_key_is_said_when_announced(monkeypatch, tmp_path, capsys):
    """``train.py`` decides the mode before parsing and says it after: a typo's error line and --help come first."""
    without_a_key(monkeypatch, tmp_path)
    ensure_wandb_mode(announce=False)
    with pytest.raises(BadInput, match="WANDB_API_KEY"):
        announce_wandb_mode()
    announce_wandb_mode()  # said once
    assert capsys.readouterr().err == ""


def test_train_online_without_a_key_stops_before_work_starts(monkeypatch, tmp_path, capfd):
    """Through ``train.py`` (in this process): one ``error:`` line, exit code 2, no W&B run and no run folder."""
    import train
    from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG

    without_a_key(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEPS_RUN_ID", raising=False)
    root = tmp_path / "out"
    code = train.console_main(["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, "--trainer.default_root_dir", str(root)])
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert code == exit_codes.BAD_INPUT
    assert len(lines) == 1 and lines[0].startswith("error: WANDB_MODE=online") and "Traceback" not in lines[0], lines
    assert not [path for path in root.rglob("*") if path.is_file()], "a file was written"


def test_help_works_with_online_and_no_key(monkeypatch, tmp_path, capsys):
    import train

    without_a_key(monkeypatch, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["fit", "--help"])
    assert exit_info.value.code in (0, None) and "usage:" in capsys.readouterr().out


def test_sweep_online_without_a_key_stops_before_the_first_cell(monkeypatch, tmp_path, capsys):
    from sweep import command
    from sweep.schedule import Sweep
    from tests.helpers import REPO_ROOT

    def started(self):
        raise AssertionError("the sweep started")

    without_a_key(monkeypatch, tmp_path)
    monkeypatch.setattr(Sweep, "__call__", started)
    code = command.console_main(["-c", str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml"), "--out_dir", str(tmp_path / "sweep")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == exit_codes.BAD_INPUT and len(lines) == 1 and lines[0].startswith("error: WANDB_MODE=online"), lines
    assert not (tmp_path / "sweep").exists()

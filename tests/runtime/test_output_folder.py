"""An output folder that cannot be written is one line naming it (exit code 2), before any work or file.

Tests run as root on CI, and root ignores permission bits: a ``chmod 555`` folder is writable to root. So the
cases that bind root too are a path beneath a regular file (ENOTDIR, in-process) and a real read-only
file system: a read-only tmpfs mounted in a user + mount namespace (``unshare -Urm``, where the kernel
allows them; the subprocess test is skipped elsewhere). The permission-bits case runs only as a user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from runtime.errors import BadInput
from runtime.output_folder import require_writable_output_folders, unwritable_because
from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, subprocess_env, train_in_process

FIT = ["fit", "-c", DIGITS_CONFIG, "-c", DEBUG_PRESET, "--trainer.enable_model_summary", "false"]
EXPECTED = "error: --trainer.default_root_dir {folder}: cannot write there ({why}); give a folder you can write to"


def test_a_missing_folder_under_a_writable_one_is_fine(tmp_path):
    assert unwritable_because(tmp_path / "new" / "deeper") is None
    assert not (tmp_path / "new").exists()  # the check creates nothing


def test_a_folder_beneath_a_file_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("a file\n")
    assert unwritable_because(tmp_path / "notes.txt" / "out") == f"{tmp_path / 'notes.txt'} is a file, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 555 folder (see the module docstring)")
def test_a_folder_without_write_permission_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert unwritable_because(locked / "out") == f"Permission denied at {locked}"


def test_the_wandb_folder_is_checked_only_when_wandb_logs(tmp_path, monkeypatch):
    class Config(dict):
        def __getattr__(self, name):
            return self[name]

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "file" / "wandb"))
    without_logger = Config(trainer=Config(default_root_dir=str(tmp_path), logger=False))
    require_writable_output_folders(without_logger)
    wandb = Config(class_path="lightning.pytorch.loggers.WandbLogger", init_args=Config(save_dir=None))
    with pytest.raises(BadInput, match=r"^WANDB_DIR .*/file/wandb: cannot write there \(.*/file is a file, not a folder\)"):
        require_writable_output_folders(Config(trainer=Config(default_root_dir=str(tmp_path), logger=wandb)))


def test_fit_into_a_folder_beneath_a_file_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    for var in ("MEPS_DEBUG", "MEPS_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "notes.txt").write_text("a file\n")
    folder = tmp_path / "notes.txt" / "out"
    code, err = train_in_process([*FIT, "--trainer.default_root_dir", str(folder)], capfd)
    assert code == 2
    assert err.splitlines() == [
        EXPECTED.format(folder=folder, why=f"{tmp_path / 'notes.txt'} is a file, not a folder") + "  [MEPS_DEBUG=1 shows the traceback]"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no W&B run, no outputs/
    monkeypatch.setenv("MEPS_DEBUG", "1")
    code, err = train_in_process([*FIT, "--trainer.default_root_dir", str(folder)], capfd)
    assert code == 2 and "Traceback" in err  # MEPS_DEBUG shows the traceback and keeps the exit code


def user_namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not user_namespaces_work(), reason="needs `unshare -Urm` (user and mount namespaces)")
def test_fit_into_a_read_only_file_system_is_one_line_naming_the_folder(tmp_path):
    """A real read-only mount (EROFS binds root too): before, ``OSError: [Errno 30]`` and a traceback, exit code 1."""
    mount = tmp_path / "read_only"
    mount.mkdir()
    folder = mount / "out"
    fit = [*FIT, "--trainer.default_root_dir", str(folder)]
    script = f"import sys, train; sys.exit(train.console_main({fit!r}))"
    shell = f'mount -t tmpfs -o ro,size=64k none {mount} && exec {sys.executable} -c "$0"'
    env = subprocess_env(WANDB_DIR=str(tmp_path / "wandb"))
    env.pop("MEPS_DEBUG", None)
    proc = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", shell, script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        EXPECTED.format(folder=folder, why=f"Read-only file system at {mount}") + "  [MEPS_DEBUG=1 shows the traceback]"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["read_only"]  # no W&B run, nothing written anywhere

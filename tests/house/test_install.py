"""A normal (not editable) install works outside the source tree: every package is in the wheel.

The project is copied (the files git would commit), installed with ``pip install --no-deps`` into a fresh
venv whose dependencies come from the test's own environment (a path file, so nothing is downloaded),
and run from an empty folder: ``import sweep, report`` and the demo's BL-AE cell for a few steps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, subprocess_env

pytestmark = pytest.mark.slow


def copy_of_the_project(destination: Path) -> Path:
    """The files of the repository as a fresh clone would have them (tracked and not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    for name in listed.stdout.splitlines():
        source = Path(REPO_ROOT) / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def fresh_venv(folder: Path) -> Path:
    """A new venv that sees this environment's packages (pip and setuptools too) through a path file; their own
    .pth files are not read from there, so this environment's editable install of the project stays invisible."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    Path(site, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_a_plain_install_imports_and_trains_outside_the_source_tree(tmp_path):
    source = copy_of_the_project(tmp_path / "source")
    python = fresh_venv(tmp_path / "venv")
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(source)],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    shutil.rmtree(source)  # nothing may be read from the source tree any more
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in subprocess_env(OMP_NUM_THREADS="1").items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(python), "-c", "import report, sweep, train; print(report.__file__, sweep.__file__, train.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr[-3000:]
    assert all(str(tmp_path / "venv") in path for path in where.stdout.split()), where.stdout
    config = os.path.join(REPO_ROOT, "configs")
    fit = subprocess.run(
        [
            str(python),
            "-m",
            "train",
            "fit",
            "-c",
            f"{config}/blae/digits.yaml",
            "-c",
            f"{config}/presets/debug.yaml",
            "--trainer.default_root_dir",
            str(work / "outputs"),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert list((work / "outputs").rglob("last.ckpt")), "the BL-AE cell wrote no checkpoint"

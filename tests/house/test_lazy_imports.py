"""A command's first line does not wait for libraries it does not need yet (``bench/bench_startup.py`` times it).

Structural guards, not timings: each runs a fresh interpreter and looks at ``sys.modules``.

- ``datasets`` (about a second with pandas and pyarrow) is imported where data is loaded, never while a
  config is parsed: ``--help`` and an argument error of ``train.py`` come without it. jsonargparse executes
  the ``if TYPE_CHECKING:`` block of the module of every class a config names, so the data modules'
  own files annotate with ``datamodules.hf_types`` (see there) instead.
- ``sweep.py``'s parser and its checks need neither torch nor Lightning nor matplotlib nor wandb nor ``datasets``
  (``networks.gamma_mask`` imports torch in the functions that build tensors; ``report`` its writer on first use).
- wandb does come with ``train.py``'s parser: jsonargparse reads the signature of the default logger,
  Lightning's ``WandbLogger``, and in doing so executes that module's ``TYPE_CHECKING`` imports of wandb.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import DIGITS_CONFIG, REPO_ROOT, subprocess_env

SWEEP_CONFIG = str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml")
WATCHED = ("lightning", "torch", "wandb", "datasets", "pandas", "pyarrow", "matplotlib")


def modules_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter at the repository root; it stores what it wants reported in ``seen``."""
    script = f"import json, sys\nseen = {{}}\n{code}\nprint('SEEN ' + json.dumps(seen))\n"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    marked = [line for line in result.stdout.splitlines() if line.startswith("SEEN ")]
    assert result.returncode == 0 and marked, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(marked[-1].removeprefix("SEEN "))


def loaded() -> str:
    return f"[m for m in {WATCHED!r} if m in sys.modules]"


def test_train_parses_a_config_without_datasets():
    seen = modules_after(
        "import train\n"
        f"seen['import'] = {loaded()}\n"
        "try:\n"
        f"    train.main(['fit', '-c', {DIGITS_CONFIG!r}, '--no_such_key', '1'])\n"
        "except SystemExit as stop:\n"
        "    seen['exit'] = stop.code\n"
        f"seen['argument error'] = {loaded()}\n"
    )
    assert seen["exit"] == 2
    assert not {"wandb", "datasets", "pandas", "pyarrow"} & set(seen["import"]), seen
    assert not {"datasets", "pandas", "pyarrow"} & set(seen["argument error"]), seen


def test_the_data_modules_import_without_datasets():
    seen = modules_after(f"import datamodules, lightning_modules\nseen['import'] = {loaded()}\n")
    assert not {"datasets", "pandas", "pyarrow", "wandb"} & set(seen["import"]), seen


def test_sweep_parses_and_checks_without_lightning():
    seen = modules_after(
        "from sweep.command import console_main\n"
        f"seen['import'] = {loaded()}\n"
        f"seen['exit'] = console_main(['-c', {SWEEP_CONFIG!r}, '--threads', 'x'])\n"
        f"seen['argument error'] = {loaded()}\n"
    )
    assert seen["exit"] == 2
    for moment in ("import", "argument error"):
        assert not {"lightning", "torch", "matplotlib", "wandb", "datasets"} & set(seen[moment]), seen

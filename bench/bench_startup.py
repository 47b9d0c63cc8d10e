"""Start-up: seconds until the first line of ``--help`` and of an argument error, against ``import lightning``.

Every ``train.py`` command must import Lightning, so ``python -c "import lightning"`` is the floor; the
goal is the first line within 1.3× of it. A command's first line is what a user
waits for: the usage of ``--help``, the ``error:`` line of a typo. Rows (ratio = command / baseline,
lower is better, each a median of runs interleaved with the baseline's, so that load from other jobs
hits both alike):

  start-up: train.py fit --help                       no config: the parser of Lightning's Trainer
  start-up: train.py fit -c ... --no_such_key 1       the config's classes are imported, then the error
  start-up: sweep.py --help                           the sweep's own parser
  start-up: sweep.py -c ... --threads x               the sweep's argument error

Each run is a fresh ``python`` (warm file cache: one untimed run of each first), unbuffered output,
offline (``WANDB_MODE=offline``, ``HF_HUB_OFFLINE=1``: no network probe). The note of each row names
what the command imports on top of Lightning.

    python -m bench.bench_startup [--smoke] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from bench.common import Row
from bench.harness import interleaved_medians

REPO_ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.3
"""A command's first line within 1.3× of ``import lightning`` (lower is better)."""
UNIT = "s to first line (lower is better)"
BASELINE = ("-c", "import lightning; print('imported', flush=True)")
COMMANDS = {
    "start-up: train.py fit --help": ("train.py", "fit", "--help"),
    "start-up: train.py fit -c configs/blae/digits.yaml --no_such_key 1": (
        "train.py",
        "fit",
        "-c",
        "configs/blae/digits.yaml",
        "--no_such_key",
        "1",
    ),
    "start-up: sweep.py --help": ("sweep.py", "--help"),
    "start-up: sweep.py -c configs/sweeps/digits.yaml --threads x": ("sweep.py", "-c", "configs/sweeps/digits.yaml", "--threads", "x"),
}
ROW_NAMES = list(COMMANDS)
HEAVY_MODULES = ("torch", "lightning", "wandb", "datasets", "matplotlib", "scipy")
"""Reported in each row's note: which of these the command imports, and which of them ``import lightning`` does not."""


class FirstLine(NamedTuple):
    seconds: float
    line: str


def startup_env() -> dict[str, str]:
    """Offline and unbuffered: no network probe, and the first line leaves the process when it is printed."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def first_line(args: Sequence[str], timeout: float = 120.0) -> FirstLine:
    """Seconds from spawning ``python *args`` until its first line (stdout or stderr), and that line.

    The process is then left to finish (not timed), so every run starts on a quiet machine. A command that
    prints nothing within ``timeout``, or does not end within it (a refusal that broke and started real work),
    is killed and raises."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *args], cwd=REPO_ROOT, env=startup_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stream = process.stdout

    def read_all() -> None:  # drains the pipe, so the process never blocks on a full one
        for text in iter(stream.readline, ""):
            lines.put(text)

    threading.Thread(target=read_all, daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
        seconds = time.perf_counter() - start
        process.wait(timeout=timeout)
    except (queue.Empty, subprocess.TimeoutExpired):
        process.kill()
        process.wait()
        raise RuntimeError(f"python {' '.join(args)}: no first line, or no end, within {timeout:.0f} s (killed)") from None
    return FirstLine(seconds, line.rstrip("\n"))


def heavy_imports(args: Sequence[str]) -> list[str]:
    """Which of ``HEAVY_MODULES`` the command (a script and its arguments, or ``-c CODE``) had imported by its end.

    A second run of it, with an exit hook that lists them."""
    run = "exec(sys.argv[1])" if args[0] == "-c" else "sys.path.insert(0, '.'); runpy.run_path(sys.argv[0], run_name='__main__')"
    probe = (
        "import atexit, runpy, sys\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "atexit.register(lambda: print('HEAVY:' + ','.join(m for m in heavy if m in sys.modules), file=sys.__stderr__, flush=True))\n"
        "sys.argv = sys.argv[1:]\n"
        f"{run}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=REPO_ROOT, env=startup_env(), capture_output=True, text=True, timeout=120
    )
    marked = [line for line in result.stderr.splitlines() if line.startswith("HEAVY:")]
    return [name for name in marked[-1].removeprefix("HEAVY:").split(",") if name] if marked else []


def run(smoke: bool = False, repeats: int | None = None) -> list[Row]:
    """``--smoke``: one run of each command, no warm-up run, imports not listed (what CI runs: seconds, not minutes)."""
    repeats = repeats or (1 if smoke else 5)
    if not smoke:
        for args in (BASELINE, *COMMANDS.values()):
            first_line(args)  # warm the file cache (bytecode, shared libraries) of every command
    candidates = {"baseline": lambda: first_line(BASELINE).seconds}
    candidates.update({name: (lambda args=args: first_line(args).seconds) for name, args in COMMANDS.items()})
    seconds = interleaved_medians(candidates, repeats)
    if smoke:
        return [Row(name, seconds[name], seconds["baseline"], UNIT, GOAL, "one run each (--smoke)") for name in COMMANDS]
    baseline_imports = heavy_imports(BASELINE)
    rows = []
    for name, args in COMMANDS.items():
        imported = heavy_imports(args)
        extra = [module for module in imported if module not in baseline_imports]
        note = (
            f"median of {repeats} runs interleaved with `python -c 'import lightning'`; imports {', '.join(imported) or 'none of them'}"
            f" (watched: {', '.join(HEAVY_MODULES)}); of these, beyond `import lightning`: {', '.join(extra) or 'none'}"
        )
        rows.append(Row(name, seconds[name], seconds["baseline"], UNIT, GOAL, note))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one run of each command")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each command (default 5)")
    options = parser.parse_args()
    for row in run(options.smoke, options.repeats):
        print(f"{row.name}: {row.ours:.2f} s vs {row.baseline:.2f} s = {row.ratio:.2f}x (goal <= {GOAL}x); {row.note}")

"""Run every ``bench/bench_*.py`` and write ``bench/results.json`` plus an aligned table (``make bench``).

    python -m bench.run_all [--smoke] [--out bench/results.json] [--only NAME ...] [--threads N]

Each module exposes ``run(smoke: bool = False) -> list[Row]``. A module that fails to import or
raises becomes one row noted "failed: <error>", so one broken benchmark never hides the others.
The JSON is ``{"machine": str, "rows": [{name, ours, baseline, ratio, goal, unit, note}]}``,
written atomically (a reader never sees half a file). ``--smoke`` runs tiny sizes (what CI runs).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

# Every benchmark input is local or embedded; never let `datasets`/the Hub reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

from bench.common import Row
from bench.harness import failure_note, machine_description
from runtime.atomic_files import atomic_write

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results.json"
COLUMNS = ("name", "ours", "baseline", "ratio", "goal", "unit", "met", "note")


def discover_modules(only: Sequence[str] = ()) -> list[str]:
    """``bench_*`` module names in ``bench/``, sorted; ``only`` filters by name with or without the ``bench_`` prefix."""
    names = sorted(path.stem for path in BENCH_DIR.glob("bench_*.py"))
    wanted = [module_name(name) for name in only]
    unknown = [name for name, module in zip(only, wanted, strict=True) if module not in names]
    if unknown:
        raise SystemExit(f"--only {' '.join(unknown)}: no such benchmark; have {', '.join(names)}")
    return [name for name in names if not wanted or name in wanted]


def module_name(name: str) -> str:
    """``bench/bench_x.py``, ``bench.bench_x``, ``bench_x`` and ``x`` all name ``bench_x``."""
    stem = Path(name.replace(".", "/").removesuffix("/py")).name
    return stem if stem.startswith("bench_") else f"bench_{stem}"


def run_module(name: str, smoke: bool) -> list[Row]:
    """The module's rows, or one "failed" row named after it (import error, exception, wrong return type)."""
    try:
        module = importlib.import_module(f"bench.{name}")
        rows = list(module.run(smoke=smoke))
        if not all(isinstance(row, Row) for row in rows):
            raise TypeError(f"{name}.run returned {sorted({type(row).__name__ for row in rows})}, expected Row")
        return rows
    except Exception as err:  # noqa: BLE001 - any failure of one module becomes its row
        traceback.print_exc(file=sys.stderr)
        return [Row(name, None, None, "", note=failure_note(err))]


def run_modules(names: Sequence[str], smoke: bool) -> dict[str, list[Row]]:
    """Rows per module, in order, with each module's wall time reported on stderr."""
    results = {}
    for name in names:
        start = time.perf_counter()
        results[name] = run_module(name, smoke)
        print(f"{name}: {len(results[name])} rows in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return results


def write_json_atomically(payload: dict, path: Path) -> None:
    """The file is the old one or the new one, never half (``runtime/atomic_files``)."""
    text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write(path, lambda file: file.write(text.encode()))


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN/inf: a timing that produced one is reported as missing."""
    return value if value is None or math.isfinite(value) else None


def row_payload(row: Row) -> dict:
    payload = row.as_dict()
    return {
        key: finite_or_none(payload[key]) if key in ("ours", "baseline", "ratio", "goal") else payload[key]
        for key in ("name", "ours", "baseline", "ratio", "goal", "unit", "note")
    }


LOWER_IS_BETTER = "(lower is better)"
"""A unit that ends so (seconds, MiB) has its goal as a ceiling: ratio <= goal, shown ``≤goal``."""


def lower_is_better(row: Row) -> bool:
    return row.unit.endswith(LOWER_IS_BETTER)


def verdict(row: Row) -> str:
    """✓ goal met, ✗ missed, – nothing to judge (no goal, or a side not measured)."""
    if row.goal is None or row.ratio is None:
        return "–"
    met = row.ratio <= row.goal if lower_is_better(row) else row.ratio >= row.goal
    return "✓" if met else "✗"


def format_goal(row: Row) -> str:
    if row.goal is None:
        return "–"
    return f"{'≤' if lower_is_better(row) else '≥'}{row.goal:g}"


def format_number(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 0.01 else f"{value:.2e}"


def format_ratio(ratio: float | None) -> str:
    """Three decimals near the goals (0.949 is not 0.95), fewer for large speed-ups."""
    if ratio is None:
        return "–"
    return f"{ratio:.3f}" if ratio < 10 else f"{ratio:.1f}"


def format_table(rows: Sequence[Row]) -> str:
    """Aligned text table: name | ours | baseline | ratio | goal (≥, or ≤ for a lower-is-better unit) | unit | ✓/✗/– | note."""
    cells = [
        [
            row.name,
            format_number(row.ours),
            format_number(row.baseline),
            format_ratio(row.ratio),
            format_goal(row),
            row.unit,
            verdict(row),
            row.note,
        ]
        for row in rows
    ]
    widths = [max([len(header)] + [len(line[i]) for line in cells]) for i, header in enumerate(COLUMNS)]
    numeric = {1, 2, 3, 4}

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if i in numeric else value.ljust(width) for i, (value, width) in enumerate(zip(values, widths, strict=True))
        ]
        return " | ".join(parts[:-1]) + " | " + parts[-1]  # the note is last and unpadded

    rule = "-+-".join("-" * width for width in widths[:-1]) + "-+-" + "-" * max(4, min(widths[-1], 40))
    return "\n".join([line(COLUMNS), rule, *(line(values).rstrip() for values in cells)])


def main(argv: Sequence[str] | None = None) -> dict[str, list[Row]]:
    parser = argparse.ArgumentParser(description="Run the benchmarks in bench/ and write a JSON of their rows.")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, what CI runs (seconds per module)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON to write (default bench/results.json)")
    parser.add_argument("--only", nargs="+", default=(), metavar="NAME", help="run only these modules (bench_x or x)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch intra-op threads (default: torch's choice, one per core). On a machine shared"
        " with other jobs, 1 avoids OpenMP barrier stalls that make 2-thread timings bimodal",
    )
    args = parser.parse_args(argv)

    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        start = time.perf_counter()
        results = run_modules(discover_modules(args.only), args.smoke)
    finally:
        torch.set_num_threads(threads)  # main() may run inside another process (the smoke test)
    rows = [row for module_rows in results.values() for row in module_rows]
    machine = machine_description() + (f", {args.threads} torch threads" if args.threads is not None else "")
    write_json_atomically({"machine": machine, "rows": [row_payload(row) for row in rows]}, args.out)
    print(f"machine: {machine}")
    print(format_table(rows))
    print(f"\n{len(rows)} rows from {len(results)} modules in {time.perf_counter() - start:.0f} s -> {args.out}")
    return results


if __name__ == "__main__":
    main()

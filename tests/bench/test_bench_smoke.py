"""`python -m bench.run_all --smoke` (what CI runs of `make bench`): every benchmark module runs,
none fails, and results.json has the schema the issue fixes.

The benchmark modules are written in parallel, so this checks whatever ``bench/bench_*.py`` exist;
the modules that declare ``ROW_NAMES`` must produce exactly those rows (GPU rows included, as
"not run: no GPU" placeholders on a CPU machine).
"""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch

from bench import run_all

ROW_KEYS = {"name", "ours", "baseline", "ratio", "goal", "unit", "note"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    # One torch thread: smoke sizes gain nothing from two, and on a runner shared with other jobs
    # two threads spin in OpenMP barriers (100x slower steps). main() restores the thread count.
    threads = torch.get_num_threads()
    results = run_all.main(["--smoke", "--threads", "1", "--out", str(out)])
    assert torch.get_num_threads() == threads, "run_all.main must restore the torch thread count"
    return results, json.loads(out.read_text())


def test_results_json_has_the_issue_schema(smoke_run):
    _, payload = smoke_run
    assert set(payload) == {"machine", "rows"}
    assert isinstance(payload["machine"], str) and "torch" in payload["machine"]
    assert payload["rows"], "no rows at all"
    for row in payload["rows"]:
        assert set(row) == ROW_KEYS, row
        assert isinstance(row["name"], str) and isinstance(row["unit"], str) and isinstance(row["note"], str)
        for key in ("ours", "baseline", "ratio", "goal"):
            assert row[key] is None or (isinstance(row[key], (int, float)) and math.isfinite(row[key])), row
        if row["ours"] is not None and row["baseline"]:
            assert row["ratio"] == pytest.approx(row["ours"] / row["baseline"])
    names = [row["name"] for row in payload["rows"]]
    assert len(names) == len(set(names)), "duplicate row names"


def test_every_module_ran_and_none_failed(smoke_run):
    results, payload = smoke_run
    assert list(results) == run_all.discover_modules()
    assert {"bench_training_step", "bench_dataloading", "bench_encoding"} <= set(results)
    for module, rows in results.items():
        assert rows, f"{module} returned no rows"
    failed = [f"{row['name']}: {row['note']}" for row in payload["rows"] if row["note"].startswith("failed")]
    assert not failed, "\n".join(failed)


def test_declared_rows_are_all_present(smoke_run):
    results, _ = smoke_run
    for module, rows in results.items():
        declared = getattr(importlib.import_module(f"bench.{module}"), "ROW_NAMES", None)
        if declared is not None:
            assert [row.name for row in rows] == list(declared), module


@pytest.mark.skipif(torch.cuda.is_available(), reason="placeholders appear only without a GPU")
def test_gpu_rows_say_why_they_did_not_run(smoke_run):
    _, payload = smoke_run
    gpu_rows = [row for row in payload["rows"] if row["name"].endswith("[gpu]")]
    assert gpu_rows
    for row in gpu_rows:
        assert row["ours"] is None and row["baseline"] is None and row["note"] == "not run: no GPU", row


def test_table_marks_met_missed_and_unjudged_goals():
    from bench.common import Row

    table = run_all.format_table(
        [Row("met", 2.0, 1.0, "x/s", goal=1.0), Row("missed", 1.0, 2.0, "x/s", goal=1.0), Row("no goal", 1.0, 1.0, "x/s")]
    )
    lines = table.splitlines()
    assert len({line.index("|") for line in lines if "|" in line}) == 1, "columns are not aligned"
    assert "✓" in lines[2] and "✗" in lines[3] and "–" in lines[4]


def test_a_lower_is_better_goal_is_a_ceiling():
    from bench.common import Row

    unit = "s (lower is better)"
    met, missed = Row("met", 1.2, 1.0, unit, goal=1.3), Row("missed", 1.4, 1.0, unit, goal=1.3)
    assert (run_all.verdict(met), run_all.verdict(missed)) == ("✓", "✗")
    assert "≤1.3" in run_all.format_table([met]).splitlines()[2]


def test_startup_rows_time_each_command_against_import_lightning(smoke_run):
    """The start-up rows (bench/bench_startup.py): seconds to the first line of each command, goal ≤ 1.3x (not asserted:
    speed is a benchmark, not a timed test)."""
    from bench import bench_startup

    results, _ = smoke_run
    rows = results["bench_startup"]
    assert [row.name for row in rows] == bench_startup.ROW_NAMES
    for row in rows:
        assert row.ours and row.ours > 0 and row.baseline and row.baseline > 0, row
        assert row.goal == bench_startup.GOAL and run_all.lower_is_better(row), row


def test_first_line_is_the_first_line_a_command_prints():
    from bench import bench_startup

    seen = bench_startup.first_line(("-c", "print('one'); print('two')"))
    assert seen.line == "one" and seen.seconds > 0


# --------------------------------------------------------------------------------------------
# make gpu-check, the throughput half (bench/gpu_throughput.py): its logic on the CPU (no GPU is needed
# to build or test). The checks half is tests/gpu/ (test_device_checks.py runs it on the CPU).


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA line is only printed without CUDA")
def test_gpu_throughput_without_cuda_says_so_in_one_line_and_exits_0(capsys):
    from bench import gpu_throughput

    assert gpu_throughput.main([]) == 0
    out = capsys.readouterr().out
    assert out.strip() == gpu_throughput.NO_CUDA_LINE and len(out.strip().splitlines()) == 1


def test_gpu_throughput_tiny_cpu_run_prints_every_row(capsys, tmp_path):
    from bench import gpu_throughput

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        status = gpu_throughput.main(["--device", "cpu", "--tiny", "--out", str(tmp_path / "gpu.json")])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    assert status == 0, out
    names = [row["name"] for row in rows]
    for fragment in ("BL-AE training", "γ-ARVM training", "windowed vs dense", "global", "sampling", "exact L2", "exact Hamming"):
        assert any(fragment in name for name in names), fragment
    assert all(row["ours"] for row in rows), "a throughput row is empty"
    assert all(name in out for name in names)

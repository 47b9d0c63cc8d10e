"""The report written into the sweep's folder: report.json's seed spread and phase diagram, the plots, report.md."""

import json

import pytest

from report.writer import write_report
from tests.report.sweep_results import GAMMAS, agreeing_results, token_record


def test_seed_spread_and_phase_diagram_rows(tmp_path):
    extra = {
        "neural-gamma-global-seed7": token_record("neural", "global", 0.90, kind="spread", seed=7),
        "kernel-gamma-1-n300": token_record(
            "kernel", "1", 0.0, kind="phase", train_size=300, extra={"mem/train_size": 300.0, "mem/floor_psnr25_rate": 0.01}
        ),
        "kernel-gamma-global-n300": token_record("kernel", "global", 0.95, kind="phase", train_size=300, extra={"mem/train_size": 300.0}),
    }
    results = agreeing_results(extra_results=extra)
    results["kernel-gamma-1-n100"] = {
        **results["kernel-gamma-1"],
        "role": {**results["kernel-gamma-1"]["role"], "kind": "phase", "same_as": "kernel-gamma-1"},
    }
    out = tmp_path / "sweep"
    out.mkdir()
    write_report(out, results, GAMMAS, {"wall_s": 100.0, "workers": 2, "threads": 1})
    report = json.loads((out / "report.json").read_text())
    spread = report["seed_spread"][0]
    assert (spread["model"], spread["gamma"]) == ("neural", "global") and spread["seeds"] == [None, 7]
    assert spread["mem_psnr25"] == [0.98, 0.90] and spread["range"] == pytest.approx(0.08)
    phase = {(r["gamma"], r["train_size"]): r for r in report["memorization_vs_train_size"]}
    assert set(phase) == {(1, 100.0), (1, 300.0), ("global", 300.0)}
    assert phase[(1, 100.0)]["cell"] == "kernel-gamma-1" and phase[(1, 300.0)]["floor_mem_psnr25"] == 0.01
    assert report["costs"]["cells_cpu_s"] == pytest.approx(9.0 * 11)  # the reused size is not counted twice
    for name in ("memorization_vs_gamma.png", "frontier.png", "phase_diagram.png", "report.md"):
        assert (out / name).stat().st_size > 0
    text = (out / "report.md").read_text()
    assert "## Phase diagram" in text and "## Seed-to-seed spread" in text and "→ **agrees**" in text

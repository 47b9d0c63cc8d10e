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
    assert report["ovl"]["blae_log10_mean"] == -14.5 and len(report["meps_frontier"]) == 7
    assert set(report["ovl_vs_step"]) == {"blae", "vae-beta-1"}
    for name in (
        "memorization_vs_gamma.png",
        "frontier.png",
        "phase_diagram.png",
        "frontier_meps.png",
        "ovl_vs_step.png",
        "membership_vs_gamma.png",
        "report.md",
    ):
        assert (out / name).stat().st_size > 0
    text = (out / "report.md").read_text()
    assert "## Phase diagram" in text and "## Seed-to-seed spread" in text and "→ **agrees**" in text
    assert "![MEPS frontier](frontier_meps.png)" in text and "![overlap vs step](ovl_vs_step.png)" in text
    assert "## Membership inference per γ" in text and "![membership inference vs gamma](membership_vs_gamma.png)" in text
    assert "## Consistency checks" in text and "| **consistent** |" in text


def test_every_kid_carries_its_interval_and_fid_is_printed_only_where_measured(tmp_path):
    from report.markdown import markdown
    from report.numbers import build_report

    report = build_report(agreeing_results(), GAMMAS)
    text = markdown(report)
    assert text.count("0.0500 [0.0400, 0.0600] (40)") == 8 and "| FID novel |" in text
    assert "The memorization verdicts read the **pixel** measure" in text and "pixel copy (verdicts) [95 %]" in text
    results = agreeing_results()
    for record in results.values():
        record["metrics"].pop("quality/fid_novel", None)
        record["metrics"].pop("quality/reference_fid", None)
    text = markdown(build_report(results, GAMMAS))
    assert "| FID novel |" not in text and "FID not printed" in text

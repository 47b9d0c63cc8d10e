"""The sweep's W&B summary run carries native charts (memorization vs γ per model, the frontier), read back
from the offline run's files with W&B's own reader."""

import json

from report import log_summary_run, write_report
from tests.helpers import wandb_summary
from tests.report.sweep_results import GAMMAS, agreeing_results, token_record


def table_data(run_dir, summary, key) -> list[list]:
    return json.loads((run_dir / "files" / summary["summary"][key]["path"]).read_text())["data"]


def test_summary_run_holds_the_line_plot_and_the_frontier(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "sweep"
    out.mkdir()
    write_report(out, agreeing_results(), GAMMAS, {"wall_s": 10.0, "workers": 1, "threads": 1})
    run_dir = log_summary_run(out, "test-group")
    summary = wandb_summary(run_dir)
    line = table_data(run_dir, summary, "charts/memorization_vs_gamma_table")
    assert sorted((r[0], r[1], r[3]) for r in line) == sorted(
        (r["model"], str(r["gamma"]), r["mem_psnr25"]) for r in json.loads((out / "report.json").read_text())["rows"]
    )
    frontier = table_data(run_dir, summary, "charts/frontier_kid_table")
    assert {(r[0], r[2], round(r[3], 6), round(r[4], 6)) for r in frontier} == {(model, 0.05, 0.04, 0.06) for model in ("kernel", "neural")}
    report = json.loads((out / "report.json").read_text())
    meps = table_data(run_dir, summary, "charts/meps_frontier_table")
    assert sorted((r[0], r[4], r[5]) for r in meps) == sorted((r["model"], r["psnr"], r["log10_ovl"]) for r in report["meps_frontier"])
    steps = table_data(run_dir, summary, "charts/ovl_vs_step_table")
    assert {r[0] for r in steps} == {"blae", "vae-beta-1"} and [300, -14.5] in [r[1:] for r in steps if r[0] == "blae"]
    assert summary["summary"]["report/ovl_blae_log10_mean"] == -14.5
    assert summary["summary"]["report/ovl_vae_log10_mean"] == -1.8 and summary["summary"]["report/ovl_vae_matched_beta"] == 0.3
    assert summary["summary"]["report/dependence_radius/data"] == 4 and report["dependence_radius"]["data"]["radius"] == 4
    assert summary["summary"]["report/memorization_measure"] == "pixel"
    assert "report/frontier_meps" in summary["summary"] and "report/ovl_vs_step" in summary["summary"]
    membership = table_data(run_dir, summary, "charts/membership_auc_vs_gamma_table")
    assert sorted((r[0], r[1], r[3]) for r in membership) == sorted((r["model"], str(r["gamma"]), r["auc"]) for r in report["membership"])
    assert len(membership) == 8 and "report/membership_vs_gamma" in summary["summary"]
    log = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert b"wandb/line/v0" in log and b"wandb/scatter/v0" in log  # the chart specs, not only their tables
    assert "report/table" in summary["summary"] and "report/frontier" in summary["summary"]  # the image and table stay
    assert (run_dir / "files" / "report.md").read_text() == (out / "report.md").read_text()
    assert "wandb:" not in "".join(capfd.readouterr())  # silent: the sweep prints where the run is


def test_no_frontier_chart_without_scored_novel_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "sweep"
    out.mkdir()
    results = {
        "blae": {"metrics": {"val/psnr": 30.0}, "role": {"stage": "blae", "kind": "autoencoder"}},
        "kernel-gamma-1": token_record("kernel", "1", 0.0, kid=None),
    }
    write_report(out, results, [1], {"wall_s": 1.0, "workers": 1, "threads": 1})
    summary = wandb_summary(log_summary_run(out, "test-group"))["summary"]
    assert "charts/memorization_vs_gamma_table" in summary and "charts/frontier_kid_table" not in summary

"""configs/sweeps/probes.yaml: the digits sweep's cells unchanged (so they are reused) plus probe cells; the report sections."""

import json

from report import write_report
from report.markdown import markdown
from report.numbers import build_report
from sweep import sweep_from_args
from tests.helpers import REPO_ROOT

SWEEPS = REPO_ROOT / "configs" / "sweeps"
RESULTS = {
    "blae": {"best_checkpoint": "/ckpt/blae.ckpt", "last_checkpoint": ""},
    "kernel-gamma-1": {"metrics": {}},
    "neural-gamma-1": {"last_checkpoint": "/ckpt/neural-1-last.ckpt", "metrics": {}},
}


def plan_of(config: str, out_dir) -> dict:
    return {p.name: p for p in sweep_from_args(["-c", str(SWEEPS / config), "--out_dir", str(out_dir)]).plan()}


def test_the_probes_sweep_is_the_digits_sweep_plus_validate_cells_on_its_models(tmp_path):
    digits, probes = plan_of("digits.yaml", tmp_path), plan_of("probes.yaml", tmp_path)
    assert set(digits) < set(probes)
    added = set(probes) - set(digits)
    assert added == {f"probes-{m}-gamma-{g}" for m in ("kernel", "neural") for g in ("1", "2", "global")}
    results = dict(RESULTS, **{f"{m}-gamma-{g}": RESULTS[f"{m}-gamma-1"] for m in ("kernel", "neural") for g in ("2", "global")})
    for name in digits:  # same arguments, same key: a finished digits sweep's cells are found finished
        if all(n in results for n in digits[name].needs):
            one, other = digits[name].build(results), probes[name].build(results)
            assert (one.key, one.args) == (other.key, other.args), name
    neural = probes["probes-neural-gamma-1"].build(results)
    assert neural.subcommand == "validate" and neural.role == {
        "stage": "neural",
        "model": "neural",
        "gamma": "1",
        "kind": "probe",
        "of": "neural-gamma-1",
    }
    args = " ".join(neural.args)
    assert "--ckpt_path /ckpt/neural-1-last.ckpt" in args and "presets/probes.yaml" in args
    kernel = probes["probes-kernel-gamma-1"].build(results)
    assert kernel.subcommand == "validate" and "--ckpt_path" not in kernel.args and neural.folder.parent == tmp_path / "cells"


def probe_record(model: str, gamma: str, rate: float, length: float) -> dict:
    metrics = {"extract/ceiling_rate": 0.97, "extract/control_ceiling_rate": 0.95, "fb/window_conditioning": float(model == "kernel")}
    for k in (2, 4, 6):
        metrics.update(
            {
                f"extract/rate_rows{k}": rate,
                f"extract/control_rate_rows{k}": 0.0,
                f"extract/hamming_median_rows{k}": 3.0,
                f"extract/control_hamming_median_rows{k}": 90.0,
                f"extract/count_rows{k}": 100.0,
                f"extract/control_count_rows{k}": 100.0,
            }
        )
    for p in ("0", "0_1", "1"):
        metrics.update(
            {
                f"fb/changed_fraction_p{p}": 0.1,
                f"fb/corrupted_changed_fraction_p{p}": 0.2,
                f"fb/exact_rate_p{p}": 0.5,
                f"fb/correlation_length_p{p}": length,
                "fb/correlation_d1_p" + p: 0.5,
                "fb/correlation_d2_p" + p: float("nan"),
            }
        )
    return {"metrics": metrics, "role": {"stage": model, "model": model, "gamma": gamma, "kind": "probe", "of": f"{model}-gamma-{gamma}"}}


def test_the_report_holds_extraction_and_forward_backward_rows_tables_and_plots(tmp_path):
    results = {
        "neural-gamma-global": {"metrics": {"fit/plateaued": 0.0}, "role": {"kind": "gamma", "model": "neural", "gamma": "global"}},
        "probes-neural-gamma-global": probe_record("neural", "global", 0.9, 3.0),
        "probes-kernel-gamma-1": probe_record("kernel", "1", 0.2, 0.5),
    }
    report = build_report(results, [1, None])
    extraction = {(r["model"], r["gamma"], r["prefix_rows"]): r for r in report["extraction"]}
    assert (
        len(extraction) == 6 and extraction[("kernel", "1", 4)]["rate"] == 0.2 and extraction[("neural", "global", 6)]["control_rate"] == 0
    )
    assert {"model", "gamma", "prefix_rows", "rate", "control_rate", "hamming_median"} <= extraction[("kernel", "1", 2)].keys()
    assert extraction[("neural", "global", 2)]["fitted"] is False and extraction[("kernel", "1", 2)]["fitted"] is True
    fb = {(r["model"], r["gamma"], r["p"]): r for r in report["forward_backward"]}
    assert set(fb) == {(m, g, p) for m, g in (("kernel", "1"), ("neural", "global")) for p in (0.0, 0.1, 1.0)}
    row = fb[("kernel", "1", 0.1)]
    assert row["correlation_length"] == 0.5 and row["correlation"] == [0.5, None] and row["conditioning"] == "full window"
    assert fb[("neural", "global", 1.0)]["conditioning"] == "causal window"
    text = markdown(report)
    assert "Prefix extraction" in text and "(NOT FITTED)" in text and "0.200 / 0.000 / 3" in text and "0.100 / 0.50" in text
    (tmp_path / "cells").mkdir()
    write_report(tmp_path, results, [1, None])
    saved = json.loads((tmp_path / "report.json").read_text())
    assert len(saved["extraction"]) == 6 and len(saved["forward_backward"]) == 6
    for name in ("extraction_vs_prefix.png", "correlation_length_vs_p.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_a_report_without_probe_cells_has_empty_sections_and_no_probe_text():
    report = build_report({}, [1])
    assert report["extraction"] == [] and report["forward_backward"] == []
    assert "Prefix extraction" not in markdown(report)

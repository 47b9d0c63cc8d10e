"""`--trainer.precision bf16-mixed` through the whole chain on CPU, against 32-true: a tiny digits sweep twice.

BL-AE, VAE, the kernel and the neural γ-ARVM (γ = 1) with every measurement the digits sweep gives
them (overlap, memorization, mutual information; sample quality and membership for the token
models), each cell a few steps (debug preset). The same seeds and data at both precisions, so the
recorded metrics differ only by what bf16 autocast changes: the rounding of the training steps' GEMMs
(the measurements themselves run outside autocast, the head and the NN search in fp32 even inside:
tests/networks/test_autocast_islands.py).
"""

from __future__ import annotations

import json
import math
import time

import pytest
import yaml

from tests.helpers import DEBUG_PRESET, REPO_ROOT, run_script

QUICK = ["-c", DEBUG_PRESET]


def overlay(folder, name: str, callbacks: list) -> list[str]:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return ["-c", str(path)]


def token_measurements(folder) -> list[dict]:
    """The digits sweep's token measurements (memorization, MI, sample quality, membership) on fewer samples."""
    end_of_fit = {"num_samples": 40, "every_n_val_epochs": None}
    return [
        {"class_path": "callbacks.measurements.memorization.MemorizationCallback", "init_args": end_of_fit},
        {"class_path": "callbacks.measurements.mutual_information.MutualInformationCallback", "init_args": end_of_fit},
        {
            "class_path": "callbacks.measurements.sample_quality.NovelSampleQualityCallback",
            "init_args": {**end_of_fit, "reference_limit": 8, "max_novel": 5, "feature_cache_dir": str(folder / "features")},
        },
        {"class_path": "callbacks.measurements.membership.MembershipCallback", "init_args": {"num_members": 50, "num_nonmembers": 50}},
    ]


def tiny_digits_sweep(folder, out_dir) -> str:
    config = yaml.safe_load((REPO_ROOT / "configs" / "sweeps" / "digits.yaml").read_text())
    config.update(out_dir=str(out_dir), gammas=[1], vae_betas=[1.0], blae_noises=[], spread_cells=[], train_sizes=[100])
    for stage in ("blae", "vae"):
        config[stage]["args"] = QUICK + config[stage]["args"]
    config["blae"]["args"] += ["--trainer.val_check_interval", "4"]  # the sweep's 500 steps: once, at the debug preset's end
    config["kernel"]["args"] = overlay(folder, "kernel", token_measurements(folder))
    config["neural"]["args"] = [*QUICK, *overlay(folder, "neural", token_measurements(folder))]
    path = folder / f"{out_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def cell_metrics(out_dir) -> dict[str, dict[str, float]]:
    cells = {}
    for record in sorted((out_dir / "cells").glob("*/results.json")):
        metrics = json.loads(record.read_text())["metrics"]
        cells[record.parent.name] = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    return cells


# (metric, cells, kind, tolerance). Measured on a 2-core CPU (|bf16 - fp32|, one run): PSNR 0.003 dB, log10 OVL 0.001,
# KL 0.3 %, NLL 0.04-0.4 %, data token MI 0.8 %, AUC 0.012, KID 0.03; each tolerance is several times that and
# below what a real precision bug moves (a bf16 head: NLL off by ~1 %+; a bf16 overlap GEMM: log10 OVL by 0.1+).
CHECKS = [
    # four bf16-rounded steps from the same init move the decoder ~2^-8 of a step: PSNR to hundredths of a dB
    ("val/psnr", ("blae", "vae-beta-1"), "abs", 0.1),
    # the overlap is computed in float64 from fp32 latents; only the trained weights differ (log10 units: 12 %)
    ("ovl/log10_mean", ("blae", "vae-beta-1"), "abs", 0.05),
    ("val/kl", ("vae-beta-1",), "rel", 0.02),
    # a token model's NLL of held-out and training grids: the tokens come from the bf16-trained BL-AE, a few bits
    # of which flip; the head and its log-softmax are float32 at both precisions
    ("val/nll_bits", ("kernel-gamma-1", "neural-gamma-1"), "rel", 0.01),
    ("train/nll_bits", ("kernel-gamma-1", "neural-gamma-1"), "rel", 0.01),
    # MI of the data's tokens at distance 1 (depends on the BL-AE's codes only)
    ("ldh/data_token_mi_d1", ("blae", "kernel-gamma-1", "neural-gamma-1"), "rel", 0.03),
    # memorization rates of 40 samples: 0.05 = two samples
    ("mem/psnr25_rate", ("blae", "vae-beta-1", "kernel-gamma-1", "neural-gamma-1"), "abs", 0.05),
    # membership AUC on 50 + 50 grids: its own 95 % interval is ~±0.11 wide; 0.05 is half of it
    ("mia/auc", ("kernel-gamma-1", "neural-gamma-1"), "abs", 0.05),
]


def compare(fp32: dict[str, dict[str, float]], bf16: dict[str, dict[str, float]]) -> list[str]:
    """Every disagreement, as a line: a cell or metric missing at one precision, a CHECKS tolerance missed, a KID
    outside the other precision's bootstrap interval (5 novel samples: the samples themselves may differ)."""
    problems = [f"cells {sorted(set(fp32) ^ set(bf16))} ran at one precision only"] if set(fp32) != set(bf16) else []
    for cell in set(fp32) & set(bf16):
        if missing := set(fp32[cell]) ^ set(bf16[cell]):
            problems.append(f"{cell}: {sorted(missing)[:5]} finite at one precision only")
    for metric, cells, kind, tolerance in CHECKS:
        for cell in cells:
            a, b = fp32[cell].get(metric, math.nan), bf16[cell].get(metric, math.nan)
            error = abs(a - b) / (abs(a) if kind == "rel" else 1.0)
            if not error <= tolerance:
                problems.append(f"{cell} {metric}: fp32 {a:.5g}, bf16 {b:.5g}: {kind} |Δ| {error:.3g} > {tolerance}")
    for cell in ("kernel-gamma-1", "neural-gamma-1"):
        low, high = fp32[cell]["quality/kid_novel_low"], fp32[cell]["quality/kid_novel_high"]
        if not low <= bf16[cell]["quality/kid_novel"] <= high:
            problems.append(f"{cell} KID: bf16 {bf16[cell]['quality/kid_novel']:.4g} outside fp32's [{low:.4g}, {high:.4g}]")
    return problems


def test_the_comparison_can_fail():
    cells = ("blae", "vae-beta-1", "kernel-gamma-1", "neural-gamma-1")
    keys = {m for m, _, _, _ in CHECKS} | {"quality/kid_novel", "quality/kid_novel_low", "quality/kid_novel_high"}
    fp32 = {cell: {key: 1.0 for key in keys} for cell in cells}
    for cell in cells:
        fp32[cell].update({"quality/kid_novel_low": 0.5, "quality/kid_novel_high": 1.5})
    assert compare(fp32, fp32) == []
    bf16 = {cell: dict(metrics) for cell, metrics in fp32.items()}
    bf16["neural-gamma-1"]["val/nll_bits"] = 1.02
    bf16["kernel-gamma-1"]["quality/kid_novel"] = 2.0
    del bf16["blae"]["ovl/log10_mean"]
    problems = "\n".join(compare(fp32, bf16))
    for fragment in ("blae: ['ovl/log10_mean'] finite", "blae ovl/log10_mean", "neural-gamma-1 val/nll_bits", "kernel-gamma-1 KID"):
        assert fragment in problems, (fragment, problems)
    assert len(problems.splitlines()) == 4


@pytest.mark.slow
def test_bf16_mixed_chain_agrees_with_fp32(tmp_path):
    results = {}
    for precision in ("32-true", "bf16-mixed"):
        out = tmp_path / precision
        start = time.perf_counter()
        run_script("sweep.py", ["-c", tiny_digits_sweep(tmp_path, out), "--trainer.precision", precision], tmp_path, timeout=1200)
        print(f"{precision}: {time.perf_counter() - start:.0f} s")
        results[precision] = cell_metrics(out)
    (tmp_path / "metrics.json").write_text(json.dumps(results, indent=1))
    assert set(results["32-true"]) == {"blae", "vae-beta-1", "kernel-gamma-1", "neural-gamma-1"}
    problems = compare(results["32-true"], results["bf16-mixed"])
    assert not problems, "\n".join(problems)

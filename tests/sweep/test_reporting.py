"""Verdicts come out of the numbers: reports that agree, that disagree, that are not fitted or not measured."""
import json

import pytest

from reporting import build_report, markdown, verdicts, wilson_interval, write_report

GAMMAS = [1, 2, 4, None]
LABELS = ["1", "2", "4", "global"]


def token_record(model, gamma, rate, plateaued=1.0, step=1000, mem_step=None, kid=0.05, extra=None, kind="gamma", **role):
    metrics = {
        "mem/psnr25_rate": rate, "mem/ratio13_rate": rate, "mem/nn_psnr_median": 15 + 15 * rate,
        "mem/latent_copy_rate": rate * 0.9, "mem/num_samples": 200.0, "mem/train_size": 100.0,
        "mem/floor_psnr25_rate": 0.0, "mem/floor_ratio13_rate": 0.0, "mem/floor_nn_psnr_median": 14.0,
        "mem/ceiling_psnr25_rate": 1.0, "mem/ceiling_ratio13_rate": 1.0, "mem/ceiling_nn_psnr_median": 31.0,
        "quality/reference_kid": 0.01, "quality/reference_fid": 20.0,
        "mem/step": float(step if mem_step is None else mem_step), "train/nll_bits": 4.0 * (1 - rate) + 0.1, "val/nll_bits": 5.0,
    }
    if kid is not None:
        metrics |= {"quality/kid_novel": kid, "quality/fid_novel": 60.0, "quality/novel_scored": 40.0}
    if model == "neural" and plateaued is not None:
        metrics["fit/plateaued"] = plateaued
    metrics |= extra or {}
    return {"metrics": metrics, "global_step": step if model == "neural" else 0,
            "role": {"stage": model, "kind": kind, "model": model, "gamma": gamma, **role}, "seconds": 10.0, "cpu_s": 9.0}


def excess_metrics(values, half_width=0.01):
    metrics = {}
    for d, value in enumerate(values, start=1):
        metrics |= {f"ldh/data_token_mi_excess_d{d}": value, f"ldh/data_token_mi_excess_lo_d{d}": value - half_width,
                    f"ldh/data_token_mi_excess_hi_d{d}": value + half_width}
    return metrics


def agreeing_results(**overrides) -> dict:
    """A sweep whose numbers support every claim: both models rise from 0 to the ceiling, MEPS holds."""
    rates = overrides.pop("rates", {"kernel": [0.0, 0.6, 0.99, 1.0], "neural": [0.0, 0.4, 0.97, 0.98]})
    results = {
        "blae": {"metrics": {"val/psnr": 31.0, "val/bin_rate": 0.92, "ovl/mean": 1e-8, "ovl/lower_bound_mse": 1e-9,
                             "ovl/measured_mse": 0.004, **excess_metrics(overrides.pop("excess", [0.3, 0.1, 0.02, 0.0]))},
                 "role": {"stage": "blae", "kind": "autoencoder"}},
    }
    for beta, overlap, psnr in overrides.pop("vaes", [(0.1, 1e-6, 27.0), (1.0, 0.02, 22.0), (5.0, 0.2, 12.0)]):
        results[f"vae-beta-{beta:g}"] = {"metrics": {"val/psnr": psnr, "ovl/mean": overlap, "ovl/lower_bound_mse": overlap * 0.1,
                                                     "ovl/measured_mse": 0.04}, "role": {"stage": "vae", "kind": "vae", "beta": beta}}
    for model in ("kernel", "neural"):
        for label, rate in zip(LABELS, rates[model]):
            results[f"{model}-gamma-{label}"] = token_record(model, label, rate)
    results.update(overrides.pop("extra_results", {}))
    assert not overrides, overrides
    return results


def outcomes(results) -> dict:
    return {(v["claim"], v["model"]): v["outcome"] for v in build_report(results, GAMMAS)["verdicts"]}


def test_wilson_interval_brackets_the_rate_and_stays_in_unit_range():
    low, high = wilson_interval(0.0, 200)
    assert low == 0.0 and 0.01 < high < 0.03
    low, high = wilson_interval(0.5, 200)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * (0.25 / 200) ** 0.5, rel=0.05)
    assert wilson_interval(1.0, 200)[1] == pytest.approx(1.0) and wilson_interval(1.0, 200)[0] > 0.98


def test_a_report_whose_numbers_support_every_claim_agrees_throughout():
    found = outcomes(agreeing_results())
    assert set(found.values()) == {"agrees"}, found
    for model in ("kernel", "neural"):
        for claim in ("Small γ generates", "Memorization rises with γ", "Global context is a pure memorizer"):
            assert found[(claim, model)] == "agrees"


def test_each_memorization_claim_can_come_out_the_other_way_for_each_model():
    # neural: copies at γ = 1, falls from γ = 4 to global beyond the intervals, global far below the ceiling
    found = outcomes(agreeing_results(rates={"kernel": [0.0, 0.6, 0.99, 1.0], "neural": [0.2, 0.4, 0.9, 0.5]}))
    assert found[("Small γ generates", "neural")] == "disagrees"
    assert found[("Memorization rises with γ", "neural")] == "disagrees"
    assert found[("Global context is a pure memorizer", "neural")] == "disagrees"
    assert found[("Memorization rises with γ", "kernel")] == "agrees"
    # kernel: flat at zero is non-decreasing but does not rise
    found = outcomes(agreeing_results(rates={"kernel": [0.0, 0.0, 0.0, 0.0], "neural": [0.0, 0.4, 0.97, 0.98]}))
    assert found[("Memorization rises with γ", "kernel")] == "disagrees"
    assert found[("Global context is a pure memorizer", "kernel")] == "disagrees"


def test_a_dip_within_sampling_noise_is_not_a_drop():
    found = outcomes(agreeing_results(rates={"kernel": [0.0, 0.6, 0.99, 0.97], "neural": [0.0, 0.4, 0.97, 0.95]}))
    assert found[("Memorization rises with γ", "kernel")] == "agrees"
    assert found[("Memorization rises with γ", "neural")] == "agrees"


def test_a_cell_that_did_not_plateau_gets_no_verdict_and_shows_its_train_nll():
    results = agreeing_results()
    results["neural-gamma-global"] = token_record("neural", "global", 0.2, plateaued=0.0)
    report = build_report(results, GAMMAS)
    found = {(v["claim"], v["model"]): v for v in report["verdicts"]}
    for claim in ("Memorization rises with γ", "Global context is a pure memorizer"):
        assert found[(claim, "neural")]["outcome"] == "not fitted"
        assert "train nll 3.300" in found[(claim, "neural")]["evidence"]
    assert found[("Small γ generates", "neural")]["outcome"] == "agrees"  # γ = 1 did plateau
    assert found[("Global context is a pure memorizer", "kernel")]["outcome"] == "agrees"
    assert "NOT FITTED" in markdown(report)
    # no stopping rule at all: no plateau was recorded, so no claim about the neural model
    results["neural-gamma-1"] = token_record("neural", "1", 0.0, plateaued=None)
    assert outcomes(results)[("Small γ generates", "neural")] == "not fitted"


def test_samples_not_drawn_from_the_final_model_are_named():
    results = agreeing_results()
    results["neural-gamma-4"] = token_record("neural", "4", 0.97, step=1000, mem_step=500)
    row = next(r for r in build_report(results, GAMMAS)["rows"] if r["model"] == "neural" and r["gamma"] == 4)
    assert not row["samples_final"] and "not the final model" in row["samples_from"]


def test_meps_claims_agree_and_disagree_from_their_numbers():
    assert outcomes(agreeing_results())[("MEPS: the BL-AE's latent laws are mutually exclusive", None)] == "agrees"
    results = agreeing_results()
    results["blae"]["metrics"]["ovl/mean"] = 0.011  # an untrained encoder's tanh latents overlap
    found = outcomes(results)
    assert found[("MEPS: the BL-AE's latent laws are mutually exclusive", None)] == "disagrees"
    assert found[("MEPS: the VAE's posteriors overlap, the BL-AE's laws do not", None)] == "disagrees"  # 0.02 < 10 x 0.011
    # a dataset where the VAE (β = 1) does not overlap either (measured 0.0 on a folder of faces)
    found = outcomes(agreeing_results(vaes=[(0.1, 0.0, 30.0), (1.0, 0.0, 22.0), (5.0, 0.0, 15.0)]))
    assert found[("MEPS: the VAE's posteriors overlap, the BL-AE's laws do not", None)] == "disagrees"
    assert found[("MEPS: reconstruction and KL conflict in the VAE", None)] == "disagrees"  # the overlap never rises
    found = outcomes(agreeing_results(vaes=[(0.1, 0.05, 27.0), (1.0, 0.02, 22.0)]))
    assert found[("MEPS: reconstruction and KL conflict in the VAE", None)] == "disagrees"  # overlap falls with β


def test_the_bound_is_compared_with_the_measured_error():
    results = agreeing_results()
    results["vae-beta-1"]["metrics"]["ovl/lower_bound_mse"] = 0.05  # above the measured 0.04: impossible
    bounds = {v["model"]: v for v in build_report(results, GAMMAS)["verdicts"] if v["claim"].startswith("MEPS: overlap bounds")}
    assert bounds["BL-AE"]["outcome"] == "agrees" and bounds["VAE β = 0.10"]["outcome"] == "agrees"
    assert bounds["VAE β = 1.00"]["outcome"] == "disagrees" and "0.0500 vs measured 0.0400" in bounds["VAE β = 1.00"]["evidence"]


def test_local_dependence_uses_the_excess_over_the_null_and_its_interval():
    claim = ("LDH: dependence between latent tokens is local", None)
    assert outcomes(agreeing_results())[claim] == "agrees"
    assert outcomes(agreeing_results(excess=[0.005, 0.004, 0.003]))[claim] == "disagrees"  # d = 1 not above 0
    assert outcomes(agreeing_results(excess=[0.3, 0.29, 0.3]))[claim] == "disagrees"  # does not fall
    results = agreeing_results()
    results["blae"]["metrics"] = {k: v for k, v in results["blae"]["metrics"].items() if "excess" not in k}
    results["blae"]["metrics"]["ldh/data_token_mi_d1"] = 0.5  # a raw MI alone is not evidence
    assert outcomes(results)[claim] == "not measured"


def test_missing_figures_read_not_measured_and_the_report_still_renders(tmp_path):
    results = {"blae": {"metrics": {"val/psnr": 30.0}, "role": {"stage": "blae", "kind": "autoencoder"}}}
    results["kernel-gamma-1"] = token_record("kernel", "1", 0.0, kid=None)
    report = build_report(results, [1])
    found = {(v["claim"], v["model"]): v["outcome"] for v in report["verdicts"]}
    assert found[("MEPS: the BL-AE's latent laws are mutually exclusive", None)] == "not measured"
    assert found[("Memorization rises with γ", "kernel")] == "not measured"
    assert found[("Small γ generates", "neural")] == "not measured"
    assert report["rows"][0]["kid_novel"] is None and report["rows"][0]["fid_novel"] is None
    assert "not measured" in markdown(report)


def test_seed_spread_and_phase_diagram_rows(tmp_path):
    extra = {
        "neural-gamma-global-seed7": token_record("neural", "global", 0.90, kind="spread", seed=7),
        "kernel-gamma-1-n300": token_record("kernel", "1", 0.0, kind="phase", train_size=300,
                                            extra={"mem/train_size": 300.0, "mem/floor_psnr25_rate": 0.01}),
        "kernel-gamma-global-n300": token_record("kernel", "global", 0.95, kind="phase", train_size=300, extra={"mem/train_size": 300.0}),
    }
    results = agreeing_results(extra_results=extra)
    results["kernel-gamma-1-n100"] = {**results["kernel-gamma-1"], "role": {**results["kernel-gamma-1"]["role"], "kind": "phase", "same_as": "kernel-gamma-1"}}
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


def test_verdicts_is_a_function_of_the_report_json():
    report = json.loads(json.dumps(build_report(agreeing_results(), GAMMAS)))
    assert verdicts(report) == report["verdicts"]

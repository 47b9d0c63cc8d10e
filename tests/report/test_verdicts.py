"""Verdicts come out of the numbers: reports that agree, that disagree, that are not fitted or not measured (the MEPS
verdicts: tests/report/test_meps.py)."""

import json

from report.markdown import markdown
from report.numbers import build_report
from report.verdicts import verdicts
from tests.report.sweep_results import GAMMAS, agreeing_results, token_record


def outcomes(results) -> dict:
    return {(v["claim"], v["model"]): v["outcome"] for v in build_report(results, GAMMAS)["verdicts"]}


def test_a_report_whose_numbers_support_every_claim_agrees_throughout():
    found = outcomes(agreeing_results())
    claims = {key: outcome for key, outcome in found.items() if not key[0].startswith("Consistency:")}
    assert set(claims.values()) == {"agrees"}, claims
    assert {outcome for key, outcome in found.items() if key[0].startswith("Consistency:")} == {"consistent"}
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


def test_verdicts_is_a_function_of_the_report_json():
    report = json.loads(json.dumps(build_report(agreeing_results(), GAMMAS)))
    assert verdicts(report) == report["verdicts"]

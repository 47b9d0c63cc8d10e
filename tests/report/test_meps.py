"""The MEPS frontier on the log scale and its verdicts: each verdict agrees on the sweep built to agree and comes out the
other way on a case built for it (a VAE curve below the BL-AE, a PSNR range that does not cover it, a non-monotone β
series, a bound above the measured error)."""

import json
import math
import re

import pytest

from report.markdown import markdown
from report.meps import BOUND_CLAIM, BRACKET_CLAIM, interpolate, vae_curve
from report.numbers import build_report
from tests.report.sweep_results import GAMMAS, agreeing_results, blae_record, vae_record

CONTRAST = "MEPS: at matched PSNR the BL-AE's latent laws overlap less than the VAE's posteriors"
EXCLUSIVE = "MEPS: the BL-AE's latent laws are mutually exclusive"
CONFLICT = "MEPS: reconstruction and KL conflict in the VAE"


def meps(results) -> dict:
    """(claim, model) -> the verdict, for the MEPS claims and the consistency checks."""
    return {(v["claim"], v["model"]): v for v in build_report(results, GAMMAS)["verdicts"]}


def test_frontier_rows_hold_every_autoencoder_cell_with_its_setting_and_log10_overlap():
    report = build_report(agreeing_results(), GAMMAS)
    frontier = report["meps_frontier"]
    assert [(r["model"], r["beta"], r["noise"], r["cell"]) for r in frontier] == [
        ("VAE", 0.1, None, "vae-beta-0.1"),
        ("VAE", 0.3, None, "vae-beta-0.3"),
        ("VAE", 1.0, None, "vae-beta-1"),
        ("VAE", 5.0, None, "vae-beta-5"),
        ("BL-AE", None, 0.3, "blae-noise-0.3"),
        ("BL-AE", None, 0.5, "blae"),
        ("BL-AE", None, 0.8, "blae-noise-0.8"),
    ]
    main = next(r for r in frontier if r["main"])
    assert (main["cell"], main["psnr"], main["log10_ovl"], main["log10_bc"]) == ("blae", 29.0, -14.5, None)
    assert frontier[2]["log10_bc"] == pytest.approx(-1.0) and frontier[2]["outside_bounds"] == 0.0
    ovl = report["ovl"]
    assert ovl["blae_log10_mean"] == -14.5
    assert (ovl["vae_matched_beta"], ovl["vae_log10_mean"], ovl["vae_psnr"]) == (0.3, -1.8, 28.0)  # nearest in PSNR to 29 dB
    # between β = 0.3 (28.0 dB, -1.8) and β = 0.1 (32.6 dB, -2.5), linear in PSNR
    assert ovl["vae_log10_at_blae_psnr"] == pytest.approx(-1.8 + (1.0 / 4.6) * (-0.7))
    assert ovl["blae_decades_below_vae"] == pytest.approx(14.5 + ovl["vae_log10_at_blae_psnr"])
    assert ovl["blae_mean"] == pytest.approx(10**-14.5)  # the raw mean kept for reference


def test_a_blae_role_noise_is_read_when_the_cell_did_not_log_its_rate():
    results = agreeing_results()
    del results["blae-noise-0.3"]["metrics"]["blae/noise_rate"]
    row = next(r for r in build_report(results, GAMMAS)["meps_frontier"] if r["cell"] == "blae-noise-0.3")
    assert row["noise"] == 0.3


def test_interpolation_is_linear_in_psnr_and_never_extrapolates():
    curve = vae_curve(
        [{"model": "VAE", "psnr": p, "log10_ovl": v, "beta": b} for b, v, p in [(0.1, -4.0, 30.0), (1.0, -2.0, 20.0), (5.0, -1.0, 10.0)]]
    )
    assert interpolate(curve, 25.0).log10_ovl == pytest.approx(-3.0)
    assert interpolate(curve, 12.5).log10_ovl == pytest.approx(-1.25)
    assert interpolate(curve, 30.0).log10_ovl == pytest.approx(-4.0)  # an end point is inside the range
    assert interpolate(curve, 30.01) is None and interpolate(curve, 9.99) is None
    assert interpolate([], 20.0) is None


def test_the_meps_claims_agree_on_the_sweep_built_to_agree():
    found = meps(agreeing_results())
    for claim in (CONTRAST, EXCLUSIVE, CONFLICT):
        assert found[(claim, None)]["outcome"] == "agrees", found[(claim, None)]
    assert "12.5 decades below" in found[(CONTRAST, None)]["evidence"]
    assert "between β = 0.3 and β = 0.1" in found[(CONTRAST, None)]["evidence"]
    checks = [v for v in found.values() if v["claim"] in (BOUND_CLAIM, BRACKET_CLAIM)]
    assert len(checks) == 7 + 4 and {v["outcome"] for v in checks} == {"consistent"}


def test_a_vae_curve_lying_below_the_blae_makes_contrast_and_exclusivity_disagree():
    # a VAE that reconstructs as well and overlaps less: 20 to 40 decades below every BL-AE point
    found = meps(agreeing_results(vaes=[(0.1, -50.0, 32.6), (0.3, -45.0, 28.0), (1.0, -40.0, 24.0), (5.0, -35.0, 14.0)]))
    assert found[(CONTRAST, None)]["outcome"] == "disagrees"
    assert found[(EXCLUSIVE, None)]["outcome"] == "disagrees"
    assert "-31.6 decades below" in found[(CONTRAST, None)]["evidence"]


def test_a_blae_within_the_margin_of_the_vae_curve_disagrees():
    # 0.5 decade below the VAE curve at the same PSNR: below, but not by the stated margin
    found = meps(agreeing_results(blaes=[(0.5, -2.5, 28.0)]))
    assert found[(CONTRAST, None)]["outcome"] == "disagrees"
    assert found[(EXCLUSIVE, None)]["outcome"] == "disagrees"


def test_exclusivity_reads_every_blae_point_and_the_absolute_level():
    # the main BL-AE lies far below, but the BL-AE trained at noise 0.8 lies on the VAE curve
    found = meps(agreeing_results(blaes=[(0.5, -14.5, 29.0), (0.8, -1.5, 26.0)]))
    assert found[(CONTRAST, None)]["outcome"] == "agrees"
    assert found[(EXCLUSIVE, None)]["outcome"] == "disagrees"
    # every point 2 decades below the VAE curve, but the main BL-AE's overlap is 10^-2.5, above 10^-3
    vaes = [(0.1, -0.5, 32.6), (1.0, -0.3, 24.0), (5.0, -0.1, 14.0)]
    found = meps(agreeing_results(vaes=vaes, blaes=[(0.5, -2.5, 28.0)]))
    assert found[(CONTRAST, None)]["outcome"] == "agrees"
    assert found[(EXCLUSIVE, None)]["outcome"] == "disagrees"
    assert "above 10^-3" in found[(EXCLUSIVE, None)]["evidence"]


def test_a_blae_outside_the_vae_psnr_range_is_not_measured_with_the_range_named():
    found = meps(agreeing_results(vaes=[(1.0, -1.3, 24.0), (5.0, -0.3, 14.0)]))
    for claim in (CONTRAST, EXCLUSIVE):
        assert found[(claim, None)]["outcome"] == "not measured"
        assert "outside the VAE's PSNR range [14.0, 24.0] dB" in found[(claim, None)]["evidence"]
    # one BL-AE point inside the range: exclusivity reads it, the main one stays unmeasured for the contrast
    found = meps(agreeing_results(vaes=[(1.0, -1.3, 24.0), (5.0, -0.3, 14.0)], blaes=[(0.5, -14.5, 29.0), (0.8, -6.0, 20.0)]))
    assert found[(CONTRAST, None)]["outcome"] == "not measured"
    assert found[(EXCLUSIVE, None)]["outcome"] == "agrees"


def test_the_conflict_verdict_disagrees_on_a_non_monotone_beta_series():
    # the overlap falls from β = 0.3 to β = 1
    found = meps(agreeing_results(vaes=[(0.1, -2.5, 32.6), (0.3, -1.0, 28.0), (1.0, -1.3, 24.0), (5.0, -0.3, 14.0)]))
    assert found[(CONFLICT, None)]["outcome"] == "disagrees"
    # the PSNR rises from β = 1 to β = 5
    found = meps(agreeing_results(vaes=[(0.1, -2.5, 32.6), (1.0, -1.3, 24.0), (5.0, -0.3, 25.0)]))
    assert found[(CONFLICT, None)]["outcome"] == "disagrees"
    # flat: non-decreasing but never rising
    found = meps(agreeing_results(vaes=[(0.1, -2.0, 32.6), (1.0, -2.0, 24.0)]))
    assert found[(CONFLICT, None)]["outcome"] == "disagrees"
    assert meps(agreeing_results(vaes=[(1.0, -1.3, 24.0)]))[(CONFLICT, None)]["outcome"] == "not measured"


def test_a_bound_above_the_measured_error_is_inconsistent_and_read_on_log10():
    results = agreeing_results()
    # the raw bound underflowed to 0; its log10 (-1.0) lies above log10 of the measured 0.04 (-1.4)
    results["vae-beta-1"]["metrics"] |= {"ovl/log10_lower_bound_mse": -1.0, "ovl/lower_bound_mse": 0.0}
    found = meps(results)
    assert found[(BOUND_CLAIM, "VAE β = 1")]["outcome"] == "inconsistent"
    assert "bound 10^-1.00 vs measured 0.0400" in found[(BOUND_CLAIM, "VAE β = 1")]["evidence"]
    assert found[(BOUND_CLAIM, "VAE β = 0.1")]["outcome"] == "consistent" and found[(BOUND_CLAIM, "BL-AE")]["outcome"] == "consistent"
    # without a log10 the raw bound is read
    results["blae"]["metrics"] = {k: v for k, v in results["blae"]["metrics"].items() if k != "ovl/log10_lower_bound_mse"}
    results["blae"]["metrics"]["ovl/lower_bound_mse"] = 0.01  # above the measured 0.004
    assert meps(results)[(BOUND_CLAIM, "BL-AE")]["outcome"] == "inconsistent"


def test_vae_estimates_outside_their_bhattacharyya_bracket_are_inconsistent():
    results = agreeing_results()
    results["vae-beta-5"] = vae_record(5.0, -0.3, 14.0, outside_bounds=0.2)
    found = meps(results)
    assert found[(BRACKET_CLAIM, "VAE β = 5")]["outcome"] == "inconsistent"
    assert found[(BRACKET_CLAIM, "VAE β = 1")]["outcome"] == "consistent"
    assert "upper end, BC, holds by construction" in found[(BRACKET_CLAIM, "VAE β = 1")]["rule"]


def test_vae_estimates_on_too_few_effective_draws_are_inconsistent_inside_their_bracket():
    results = agreeing_results()
    results["vae-beta-5"] = vae_record(5.0, -0.3, 14.0, outside_bounds=0.0, low_ess_share=0.07)
    results["vae-beta-1"] = vae_record(1.0, -1.3, 24.0, outside_bounds=0.0, low_ess_share=0.05)
    found = meps(results)
    assert found[(BRACKET_CLAIM, "VAE β = 5")]["outcome"] == "inconsistent"
    assert "ESS < 10 on 0.070" in found[(BRACKET_CLAIM, "VAE β = 5")]["evidence"]
    assert found[(BRACKET_CLAIM, "VAE β = 1")]["outcome"] == "consistent"  # at the threshold
    rows = {r["cell"]: r for r in build_report(results, GAMMAS)["meps_frontier"]}
    assert rows["vae-beta-5"]["low_ess_share"] == 0.07 and rows["blae"]["low_ess_share"] is None
    # a cell from before the key was logged: the bracket alone decides, and the evidence says so
    del results["vae-beta-5"]["metrics"]["ovl/low_ess_share"]
    found = meps(results)
    assert found[(BRACKET_CLAIM, "VAE β = 5")]["outcome"] == "consistent"
    assert "ESS not logged" in found[(BRACKET_CLAIM, "VAE β = 5")]["evidence"]


def test_a_zero_bound_is_consistent_with_a_zero_measured_error():
    results = agreeing_results()
    results["blae"]["metrics"] |= {"ovl/log10_lower_bound_mse": -math.inf, "ovl/lower_bound_mse": 0.0, "ovl/measured_mse": 0.0}
    found = meps(results)
    assert found[(BOUND_CLAIM, "BL-AE")]["outcome"] == "consistent"
    results["blae"]["metrics"] |= {"ovl/log10_lower_bound_mse": -5.0, "ovl/lower_bound_mse": 1e-5}
    assert meps(results)[(BOUND_CLAIM, "BL-AE")]["outcome"] == "inconsistent"  # a positive bound above a zero MSE


def test_an_overlap_below_float_range_stays_a_finite_log10_in_the_report(tmp_path):
    results = agreeing_results(blaes=[(0.5, -400.0, 29.0)])  # the raw mean underflows to 0.0
    report = build_report(results, GAMMAS)
    assert report["ovl"]["blae_log10_mean"] == -400.0 and report["ovl"]["blae_mean"] == 0.0
    assert meps(results)[(CONTRAST, None)]["outcome"] == "agrees"
    text = markdown(report)
    assert "10^-400.0" in text
    section = text[text.index("## MEPS") : text.index("## LDH")]
    assert not re.search(r"\d\.?\d*e-\d", section)  # no float in scientific notation (a raw overlap) anywhere in the MEPS section


def test_disjoint_supports_read_as_an_exact_zero_infinitely_far_below():
    results = agreeing_results()
    results["blae"] = blae_record(0.5, -math.inf, 29.0, extra=results["blae"]["metrics"] | {"ovl/log10_mean": -math.inf})
    report = json.loads(json.dumps(build_report(results, GAMMAS)))
    found = {(v["claim"], v["model"]): v for v in report["verdicts"]}
    assert found[(CONTRAST, None)]["outcome"] == "agrees" and "∞ decades below" in found[(CONTRAST, None)]["evidence"]
    assert "0 (disjoint supports)" in markdown(report)


def test_overlap_against_step_for_the_main_blae_and_the_elbo_vae():
    report = build_report(agreeing_results(), GAMMAS)
    assert set(report["ovl_vs_step"]) == {"blae", "vae-beta-1"}
    assert report["ovl_vs_step"]["blae"] == [[100, pytest.approx(-14.5 / 3)], [200, pytest.approx(-29.0 / 3)], [300, -14.5]]
    # no β = 1: the β nearest to 1 on the log scale (0.3 is 1.2 e-folds away, 5 is 1.6)
    results = agreeing_results(vaes=[(0.1, -2.5, 32.6), (0.3, -1.8, 28.0), (5.0, -0.3, 14.0)])
    assert set(build_report(results, GAMMAS)["ovl_vs_step"]) == {"blae", "vae-beta-0.3"}
    # a cell without a series is left out, NaN points dropped
    results["blae"].pop("series")
    results["vae-beta-0.3"]["series"] = {"ovl/log10_mean": [[10, float("nan")], [20, -1.0]]}
    assert build_report(results, GAMMAS)["ovl_vs_step"] == {"vae-beta-0.3": [[20, -1.0]]}

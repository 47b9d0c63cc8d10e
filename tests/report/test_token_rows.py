"""The token cells' rows: the Wilson interval of a rate, where the samples came from."""

import pytest

from report.numbers import build_report
from report.token_rows import wilson_interval
from tests.report.sweep_results import GAMMAS, agreeing_results, token_record


def test_wilson_interval_brackets_the_rate_and_stays_in_unit_range():
    low, high = wilson_interval(0.0, 200)
    assert low == 0.0 and 0.01 < high < 0.03
    low, high = wilson_interval(0.5, 200)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * (0.25 / 200) ** 0.5, rel=0.05)
    assert wilson_interval(1.0, 200)[1] == pytest.approx(1.0) and wilson_interval(1.0, 200)[0] > 0.98


def test_samples_not_drawn_from_the_final_model_are_named():
    results = agreeing_results()
    results["neural-gamma-4"] = token_record("neural", "4", 0.97, step=1000, mem_step=500)
    row = next(r for r in build_report(results, GAMMAS)["rows"] if r["model"] == "neural" and r["gamma"] == 4)
    assert not row["samples_final"] and "not the final model" in row["samples_from"]

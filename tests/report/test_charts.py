"""The native W&B charts' rows: γ on a numeric axis in the sweep's order, the frontier's cells."""

from report.charts import frontier_rows, gamma_positions, memorization_rows
from report.numbers import build_report
from tests.report.sweep_results import GAMMAS, agreeing_results


def test_gamma_axis_is_the_sweep_order_with_global_last_and_rows_follow_the_report():
    report = build_report(agreeing_results(), GAMMAS)
    assert gamma_positions(report["rows"]) == {"1": 0, "2": 1, "4": 2, "global": 3}
    rows = memorization_rows(report)
    assert [(r[0], r[2], r[3]) for r in rows if r[0] == "kernel"] == [
        ("kernel", 0, 0.0),
        ("kernel", 1, 0.6),
        ("kernel", 2, 0.99),
        ("kernel", 3, 1.0),
    ]
    assert len(frontier_rows(report, min_novel=10)) == 8
    assert frontier_rows(report, min_novel=41) == []  # 40 novel samples scored: too few for that threshold


def test_meps_chart_rows_follow_the_frontier_and_an_exact_zero_is_left_blank():
    import math

    from report.charts import meps_rows, step_rows

    results = agreeing_results()
    results["blae-noise-0.3"]["metrics"]["ovl/log10_mean"] = -math.inf  # bounded noise, disjoint supports
    report = build_report(results, GAMMAS)
    rows = meps_rows(report)
    assert [(r[0], r[1], r[4]) for r in rows] == [(r["model"], r["beta"] or r["noise"], r["psnr"]) for r in report["meps_frontier"]]
    assert next(r for r in rows if r[-1] == "blae-noise-0.3")[5] is None and next(r for r in rows if r[-1] == "blae")[5] == -14.5
    assert {r[0] for r in step_rows(report)} == {"blae", "vae-beta-1"} and len(step_rows(report)) == 6

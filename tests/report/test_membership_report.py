"""report/membership.py on synthetic sweep results: rows per main token cell sorted by γ, the table, the plot, the chart."""

import math
from types import SimpleNamespace

import matplotlib
import pytest

matplotlib.use("Agg")

from report.membership import membership_chart, membership_rows, membership_table, plot_membership  # noqa: E402


def mia_record(auc: float, members: int = 100, nonmembers: int = 180, **extra) -> dict:
    return {
        "metrics": {
            "mia/auc": auc,
            "mia/auc_low": max(0.0, auc - 0.05),
            "mia/auc_high": min(1.0, auc + 0.05),
            "mia/tpr_at_1pct_fpr": 2 * auc - 1,
            "mia/tpr_at_1pct_fpr_low": max(0.0, 2 * auc - 1.1),
            "mia/tpr_at_1pct_fpr_high": min(1.0, 2 * auc - 0.9),
            "mia/fpr_reached": 0.0056,
            "mia/members": float(members),
            "mia/nonmembers": float(nonmembers),
            **extra,
        },
        "role": {"kind": "gamma"},
    }


def results() -> dict:
    return {
        "kernel-gamma-1": mia_record(0.55),
        "kernel-gamma-2": mia_record(0.8),
        "kernel-gamma-global": mia_record(1.0),
        "neural-gamma-global": mia_record(0.97),
        "neural-gamma-1": mia_record(0.6),
        "neural-gamma-2": {"metrics": {"val/nll_bits": 4.0}, "role": {"kind": "gamma"}},  # never measured membership
        "kernel-gamma-1-n300": mia_record(0.3),  # a phase cell: not a main cell
        "blae": {"metrics": {"val/psnr": 30.0}, "role": {"kind": "autoencoder"}},
    }


def test_rows_are_the_main_cells_sorted_by_gamma_with_global_last_whatever_the_order():
    forward = membership_rows(results(), [1, 2, None])
    assert [(r["model"], r["gamma"]) for r in forward] == [
        ("kernel", 1),
        ("neural", 1),
        ("kernel", 2),
        ("kernel", "global"),
        ("neural", "global"),
    ]
    assert membership_rows(results(), [None, 2, 1]) == forward
    assert membership_rows(results(), ["global", "2", 1]) == forward
    row = forward[0]
    assert (row["auc"], row["auc_low"], row["auc_high"]) == pytest.approx((0.55, 0.5, 0.6))
    assert row["tpr_at_1pct_fpr"] == 2 * 0.55 - 1
    assert (row["members"], row["nonmembers"]) == (100, 180) and isinstance(row["members"], int)
    assert row["cell"] == "kernel-gamma-1"


def test_a_nan_auc_reads_as_not_measured_and_gets_no_row():
    data = {"kernel-gamma-1": mia_record(math.nan)}
    assert membership_rows(data, [1]) == []


def test_table_shows_intervals_counts_and_what_the_auc_means():
    report = {"membership": membership_rows(results(), [1, 2, None])}
    table = membership_table(report)
    assert "| kernel | 1 | 0.550 [0.500, 0.600] | 0.100 [0.000, 0.200] | 100 / 180 |" in table
    assert "| kernel | global | 1.000 [0.950, 1.000]" in table
    assert "0.5 means" in table and "1 that every training image" in table
    lines = [line for line in table.splitlines() if line.startswith("| kernel") or line.startswith("| neural")]
    assert [line.split(" | ")[1] for line in lines] == ["1", "1", "2", "global", "global"]
    assert "not measured" in membership_table({"membership": []})


def test_plot_is_written_for_rows_and_refused_without(tmp_path):
    report = {"membership": membership_rows(results(), [None, 1, 2])}
    assert plot_membership(report, tmp_path / "membership.png")
    assert (tmp_path / "membership.png").stat().st_size > 1000
    assert not plot_membership({"membership": []}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


class FakeWandb:
    """Records what the chart builder asks W&B for."""

    def __init__(self):
        self.plot = SimpleNamespace(line=lambda table, x, y, stroke, title: {"line": (table, x, y, stroke, title)})

    @staticmethod
    def Table(columns, data):  # noqa: N802 - W&B's name
        return {"columns": columns, "data": data}


def test_chart_puts_auc_against_gamma_positions_with_global_last():
    report = {"membership": membership_rows(results(), [None, 2, 1])}
    charts = membership_chart(FakeWandb(), report)
    table = charts["report/membership"]
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert [(r["model"], r["gamma"], r["gamma_position"]) for r in rows] == [
        ("kernel", "1", 0),
        ("neural", "1", 0),
        ("kernel", "2", 1),
        ("kernel", "global", 2),
        ("neural", "global", 2),
    ]
    line_table, x, y, stroke, title = charts["charts/membership_auc_vs_gamma"]["line"]
    assert (x, y, stroke) == ("gamma_position", "auc", "model") and line_table is table
    assert "2 = γ global" in title
    assert membership_chart(FakeWandb(), {"membership": []}) == {}

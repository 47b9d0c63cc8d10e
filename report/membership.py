"""Membership inference per γ in the report: report.json's ``membership`` rows, their table, plot and W&B chart.

Each main token cell (``<model>-gamma-<γ>``) that ran MembershipCallback (callbacks/measurements/membership.py)
logged the ROC AUC of a likelihood-threshold attack (training grids vs held-out grids) with its 95 % bootstrap
interval and the TPR at 1 % FPR. Pure functions of the cells' results (``membership_rows``) or of the report
dict (the rest): report/numbers.py, markdown.py, plots.py and summary_run.py call them.
"""

from __future__ import annotations

from pathlib import Path

from networks.gamma_mask import gamma_name, parse_gamma
from report.cells import TOKEN_MODELS, metric, token_cell_name
from report.charts import GAMMA_AXIS, gamma_positions
from report.figure_files import save_figure
from report.formatting import fixed

FIGURES = {
    "auc": "mia/auc",
    "auc_low": "mia/auc_low",
    "auc_high": "mia/auc_high",
    "tpr_at_1pct_fpr": "mia/tpr_at_1pct_fpr",
    "tpr_at_1pct_fpr_low": "mia/tpr_at_1pct_fpr_low",
    "tpr_at_1pct_fpr_high": "mia/tpr_at_1pct_fpr_high",
    "fpr_reached": "mia/fpr_reached",
    "members": "mia/members",
    "nonmembers": "mia/nonmembers",
}
"""A row's field -> the metric its cell logged."""

COUNTS = ("members", "nonmembers")

MEANING = (
    "AUC is the probability that a training image (member) has a higher likelihood under the model than a held-out "
    "image (non-member): 0.5 means the likelihood cannot tell them apart, 1 that every training image is more likely "
    "than every held-out one (the model singles out its training set, as a copier does). TPR at 1 % FPR: the share of "
    "training images flagged at a likelihood threshold that flags at most 1 % of the held-out ones (below 100 held-out "
    "images only FPR 0 can be resolved: then the figure is the TPR at FPR 0). Intervals: 95 % stratified bootstrap."
)


def gamma_order(gamma) -> tuple[bool, int]:
    """Sort key of a γ (an int, None, "global" or "2"): finite radii ascending, global last."""
    parsed = parse_gamma(gamma)
    return parsed is None, parsed or 0


def report_gamma(gamma) -> int | str:
    """γ as report.json writes it: an int, or "global"."""
    parsed = parse_gamma(gamma)
    return "global" if parsed is None else parsed


def as_count(value: float | None) -> int | None:
    """A count logged as a float metric, as an int (None: not logged)."""
    return None if value is None else int(value)


def membership_rows(results: dict, gammas: list) -> list[dict]:
    """report.json's ``membership``: one row per main token cell that measured membership, by γ (global last, whatever
    the order of ``gammas``), the models in TOKEN_MODELS order within a γ.

    Row fields: model, gamma (int or "global"), auc, auc_low, auc_high, tpr_at_1pct_fpr (+ _low, _high), fpr_reached,
    members, nonmembers (ints), cell. A cell absent, or one that logged no AUC, has no row.
    """
    rows = []
    for gamma in sorted(dict.fromkeys(parse_gamma(g) for g in gammas), key=gamma_order):
        for model in TOKEN_MODELS:
            name = token_cell_name(model, gamma)
            record = results.get(name)
            if metric(record, "mia/auc") is None:
                continue
            figures = {field: metric(record, key) for field, key in FIGURES.items()}
            counts = {count: as_count(figures[count]) for count in COUNTS}
            rows.append({"model": model, "gamma": report_gamma(gamma), **figures, **counts, "cell": name})
    return rows


def interval_text(value, low, high) -> str:
    """``0.932 [0.901, 0.960]``; the bare value where the interval is missing; "–" where nothing was measured."""
    if value is None:
        return "–"
    if low is None or high is None:
        return fixed(value, 3)
    return f"{fixed(value, 3)} [{fixed(low, 3)}, {fixed(high, 3)}]"


def membership_table(report: dict) -> str:
    """The markdown block of report.md: the per-γ table with its intervals, and what AUC 0.5 and 1 mean."""
    rows = report.get("membership") or []
    if not rows:
        return "Membership inference was not measured (no token cell logged `mia/auc`)."
    lines = [
        "| model | γ | AUC [95 % CI] | TPR at 1 % FPR [95 % CI] | members / non-members |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        tpr = interval_text(row["tpr_at_1pct_fpr"], row.get("tpr_at_1pct_fpr_low"), row.get("tpr_at_1pct_fpr_high"))
        lines.append(
            f"| {row['model']} | {row['gamma']} | {interval_text(row['auc'], row['auc_low'], row['auc_high'])} | {tpr} "
            f"| {row['members'] if row['members'] is not None else '–'} / {row['nonmembers'] if row['nonmembers'] is not None else '–'} |"
        )
    return "\n".join([*lines, "", MEANING])


def model_membership(report: dict, model: str) -> list[dict]:
    """The model's membership rows, γ ascending with global last."""
    return sorted((r for r in report.get("membership") or [] if r["model"] == model), key=lambda r: gamma_order(r["gamma"]))


def plot_membership(report: dict, path: Path) -> bool:
    """AUC against γ (global last), one line per model with its 95 % interval, chance (0.5) dashed. False: no rows, no file.

    Imports pyplot here: report/plots.py selects the Agg backend before it calls this.
    """
    rows = report.get("membership") or []
    if not rows:
        return False
    import matplotlib.pyplot as plt

    labels = [gamma_name(parse_gamma(g)) for g in sorted(dict.fromkeys(str(r["gamma"]) for r in rows), key=gamma_order)]
    fig, ax = plt.subplots(figsize=(6, 4))
    for offset, (model, marker) in zip((-0.06, 0.06), zip(TOKEN_MODELS, "os", strict=True), strict=True):
        mine = model_membership(report, model)
        if not mine:
            continue
        x = [labels.index(gamma_name(parse_gamma(r["gamma"]))) + offset for r in mine]  # the models side by side at each γ
        aucs = [r["auc"] for r in mine]
        errors = [
            [max(0.0, r["auc"] - (r["auc_low"] if r["auc_low"] is not None else r["auc"])) for r in mine],
            [max(0.0, (r["auc_high"] if r["auc_high"] is not None else r["auc"]) - r["auc"]) for r in mine],
        ]
        ax.errorbar(x, aucs, yerr=errors, marker=marker, capsize=3, label=f"{model} γ-ARVM")
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="chance (AUC 0.5)")
    ax.set_xticks(range(len(labels)), labels)
    ax.set(xlabel="γ (observation radius)", ylabel="ROC AUC (training vs held-out)", ylim=(0.4, 1.02))
    ax.set_title("Membership inference from the likelihood vs γ (95 % bootstrap intervals)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)
    return True


CHART_COLUMNS = ["model", "gamma", GAMMA_AXIS, "auc", "auc_low", "auc_high", "tpr_at_1pct_fpr", "members", "nonmembers"]


def membership_chart(wandb, report: dict) -> dict:
    """``{key: W&B media}`` for the summary run: the rows as a table and a native line chart of AUC vs γ (one line per
    model; γ on a numeric axis in the sweep's order, global last). ``{}`` without rows."""
    rows = sorted(report.get("membership") or [], key=lambda r: (gamma_order(r["gamma"]), r["model"]))
    if not rows:
        return {}
    positions = gamma_positions(rows)
    data = [[r["model"], str(r["gamma"]), positions[str(r["gamma"])], *(r[c] for c in CHART_COLUMNS[3:])] for r in rows]
    table = wandb.Table(columns=CHART_COLUMNS, data=data)
    order = ", ".join(f"{position} = γ {name}" for name, position in positions.items())
    return {
        "report/membership": table,
        "charts/membership_auc_vs_gamma": wandb.plot.line(
            table, GAMMA_AXIS, "auc", stroke="model", title=f"Membership inference: ROC AUC vs γ ({order}; 0.5 = chance)"
        ),
    }

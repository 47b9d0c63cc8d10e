"""Native W&B charts of the sweep report (beside its images and tables in the summary run): memorization
against γ, one line per model, the generation–memorization frontier (memorization against the KID / FID
of the novel samples), the MEPS frontier (log10 overlap against PSNR, one line per autoencoder) and the log10
overlap against training step. Each chart is a ``wandb.plot`` over a ``wandb.Table`` of report.json's rows."""

from __future__ import annotations

import math

GAMMA_AXIS = "gamma_position"


def gamma_positions(rows: list[dict]) -> dict[str, int]:
    """γ in the sweep's order (finite radii ascending, then global) -> 0, 1, 2, ...: a numeric x axis."""
    names = list(dict.fromkeys(str(row["gamma"]) for row in rows))
    return {name: i for i, name in enumerate(sorted(names, key=lambda g: (g == "global", int(g) if g.isdigit() else 0)))}


def measure_rate(report: dict, row: dict) -> float | None:
    """A row's memorization rate on the measure the verdicts read (report.json ``memorization_measure``; pixel without one)."""
    name = (report.get("memorization_measure") or {}).get("name", "pixel")
    return ((row.get("measures") or {}).get(name) or {}).get("rate") if row.get("measures") else row.get("mem_psnr25")


def memorization_rows(report: dict) -> list[list]:
    """``[model, γ, γ position, memorization, fitted]`` for every main cell with a rate on the verdicts' measure."""
    positions = gamma_positions(report["rows"])
    return [
        [row["model"], str(row["gamma"]), positions[str(row["gamma"])], measure_rate(report, row), bool(row["fitted"])]
        for row in report["rows"]
        if measure_rate(report, row) is not None
    ]


def frontier_rows(report: dict, min_novel: int) -> list[list]:
    """``[model, γ, KID, KID low, KID high, FID, memorization, novel scored]`` for the cells whose novel samples were scored."""
    return [
        [
            row["model"],
            str(row["gamma"]),
            row["kid_novel"],
            row.get("kid_novel_low"),
            row.get("kid_novel_high"),
            row["fid_novel"],
            measure_rate(report, row),
            row["novel_scored"],
        ]
        for row in report["rows"]
        if row.get("kid_novel") is not None and measure_rate(report, row) is not None and (row.get("novel_scored") or 0) >= min_novel
    ]


MEPS_COLUMNS = ["model", "setting", "beta", "noise", "psnr", "log10_ovl", "log10_bc", "outside_bounds", "cell"]


def finite(value):
    """A figure as a W&B table cell: a non-finite float (a log10 overlap of -inf: exactly 0) as None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def meps_rows(report: dict) -> list[list]:
    """``MEPS_COLUMNS`` of every autoencoder on the MEPS frontier with a PSNR (each curve in its setting's order)."""
    return [
        [
            row["model"],
            row["beta"] if row["model"] == "VAE" else row["noise"],
            *(finite(row[c]) for c in MEPS_COLUMNS[2:-1]),
            row["cell"],
        ]
        for row in report.get("meps_frontier") or []
        if row["psnr"] is not None
    ]


def step_rows(report: dict) -> list[list]:
    """``[cell, step, log10 overlap]`` of the overlap-against-step series (finite points)."""
    return [
        [cell, step, value] for cell, points in (report.get("ovl_vs_step") or {}).items() for step, value in points if math.isfinite(value)
    ]


def meps_table(wandb, report: dict):
    """The MEPS frontier as a ``wandb.Table`` (``MEPS_COLUMNS``)."""
    return wandb.Table(columns=MEPS_COLUMNS, data=meps_rows(report))


def meps_charts(wandb, report: dict) -> dict:
    """The MEPS frontier and the overlap against step as native W&B line charts (where report.json has them)."""
    charts = {}
    if meps_rows(report):
        table = meps_table(wandb, report)
        charts["charts/meps_frontier"] = wandb.plot.line(
            table, "psnr", "log10_ovl", stroke="model", title="MEPS frontier: log10 overlap vs PSNR (VAE over β, BL-AE over noise)"
        )
    if rows := step_rows(report):
        table = wandb.Table(columns=["cell", "step", "log10_ovl"], data=rows)
        charts["charts/ovl_vs_step"] = wandb.plot.line(
            table, "step", "log10_ovl", stroke="cell", title="log10 latent overlap vs training step"
        )
    return charts


def native_charts(wandb, report: dict, min_novel: int) -> dict:
    """``{key: wandb.plot...}`` to log into the summary run; the frontier only where report.json has it (cells with
    at least ``min_novel`` novel samples scored, as on the report's frontier plot)."""
    positions = gamma_positions(report["rows"])
    order = ", ".join(f"{position} = γ {name}" for name, position in positions.items())
    charts = {}
    if rows := memorization_rows(report):
        table = wandb.Table(columns=["model", "gamma", GAMMA_AXIS, "memorization", "fitted"], data=rows)
        name = (report.get("memorization_measure") or {}).get("name", "pixel")
        charts["charts/memorization_vs_gamma"] = wandb.plot.line(
            table, GAMMA_AXIS, "memorization", stroke="model", title=f"Memorization ({name} measure) vs γ ({order})"
        )
    if rows := frontier_rows(report, min_novel):
        columns = ["model", "gamma", "kid_novel", "kid_novel_low", "kid_novel_high", "fid_novel", "memorization", "novel_scored"]
        table = wandb.Table(columns=columns, data=rows)
        charts["charts/frontier_kid"] = wandb.plot.scatter(
            table, "kid_novel", "memorization", title="Generation–memorization frontier: memorization vs KID of novel samples"
        )
        if any(row[5] is not None for row in rows):  # FID only where measured at its stated n
            charts["charts/frontier_fid"] = wandb.plot.scatter(
                table, "fid_novel", "memorization", title="Generation–memorization frontier: memorization vs FID of novel samples"
            )
    return charts | meps_charts(wandb, report)

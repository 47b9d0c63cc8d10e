"""Native W&B charts of the sweep report (beside its images and tables in the summary run): memorization
against γ, one line per model, and the generation–memorization frontier (memorization against the KID / FID
of the novel samples). Each chart is a ``wandb.plot`` over a ``wandb.Table`` of report.json's rows."""

from __future__ import annotations

GAMMA_AXIS = "gamma_position"


def gamma_positions(rows: list[dict]) -> dict[str, int]:
    """γ in the sweep's order (finite radii ascending, then global) -> 0, 1, 2, ...: a numeric x axis."""
    names = list(dict.fromkeys(str(row["gamma"]) for row in rows))
    return {name: i for i, name in enumerate(sorted(names, key=lambda g: (g == "global", int(g) if g.isdigit() else 0)))}


def memorization_rows(report: dict) -> list[list]:
    """``[model, γ, γ position, memorization, fitted]`` for every main cell with a memorization figure."""
    positions = gamma_positions(report["rows"])
    return [
        [row["model"], str(row["gamma"]), positions[str(row["gamma"])], row["mem_psnr25"], bool(row["fitted"])]
        for row in report["rows"]
        if row.get("mem_psnr25") is not None
    ]


def frontier_rows(report: dict, min_novel: int) -> list[list]:
    """``[model, γ, KID, FID, memorization, novel scored]`` for the cells whose novel samples were scored."""
    return [
        [row["model"], str(row["gamma"]), row["kid_novel"], row["fid_novel"], row["mem_psnr25"], row["novel_scored"]]
        for row in report["rows"]
        if row.get("kid_novel") is not None and row.get("mem_psnr25") is not None and (row.get("novel_scored") or 0) >= min_novel
    ]


def native_charts(wandb, report: dict, min_novel: int) -> dict:
    """``{key: wandb.plot...}`` to log into the summary run; the frontier only where report.json has it (cells with
    at least ``min_novel`` novel samples scored, as on the report's frontier plot)."""
    positions = gamma_positions(report["rows"])
    order = ", ".join(f"{position} = γ {name}" for name, position in positions.items())
    charts = {}
    if rows := memorization_rows(report):
        table = wandb.Table(columns=["model", "gamma", GAMMA_AXIS, "memorization", "fitted"], data=rows)
        charts["charts/memorization_vs_gamma"] = wandb.plot.line(
            table, GAMMA_AXIS, "memorization", stroke="model", title=f"Memorization (PSNR > 25 dB rate) vs γ ({order})"
        )
    if rows := frontier_rows(report, min_novel):
        table = wandb.Table(columns=["model", "gamma", "kid_novel", "fid_novel", "memorization", "novel_scored"], data=rows)
        charts["charts/frontier_kid"] = wandb.plot.scatter(
            table, "kid_novel", "memorization", title="Generation–memorization frontier: memorization vs KID of novel samples"
        )
        charts["charts/frontier_fid"] = wandb.plot.scatter(
            table, "fid_novel", "memorization", title="Generation–memorization frontier: memorization vs FID of novel samples"
        )
    return charts

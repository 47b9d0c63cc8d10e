"""The probes' part of the report: `extraction` and `forward_backward` rows and their report.md section.

Read from the probe cells (role kind "probe", callbacks/measurements/probes.py keys `extract/` and `fb/`); a pure
function of the cells' results, like the rest of report.json. docs/probes.md defines every figure. Their plots
are in report/plots.py, their W&B tables in report/summary_run.py.
"""

from __future__ import annotations

import re

from networks.gamma_mask import parse_gamma
from report.cells import TOKEN_MODELS, cells_of, metrics_of
from report.formatting import fixed

CONDITIONING: dict[float | None, str] = {1.0: "full window", 0.0: "causal window"}


def probe_cells(results: dict) -> list[tuple[str, dict]]:
    """``(name, record)`` of the probe cells, model by model (TOKEN_MODELS order), then in results order."""
    cells = cells_of(results, "probe")
    order = {name: i for i, name in enumerate(results)}
    return sorted(
        cells, key=lambda c: (TOKEN_MODELS.index(c[1]["role"]["model"]) if c[1]["role"]["model"] in TOKEN_MODELS else 9, order[c[0]])
    )


def probed_model_fitted(results: dict, record: dict) -> bool | None:
    """Whether the model the probes ran on had fitted its training set (the main cell's verdict)."""
    role = record["role"]
    if role["model"] == "kernel":
        return True
    plateaued = (results.get(role.get("of", "")) or {}).get("metrics", {}).get("fit/plateaued")
    return None if plateaued is None else plateaued >= 1


def level_from_key(name: str) -> float:
    """``0_1`` (a noise level as a metric key writes it) -> 0.1."""
    return float(name.replace("_", "."))


def extraction_rows(results: dict) -> list[dict]:
    """One row per (probe cell, prefix rows k): the extraction rate and its held-out control."""
    rows = []
    for _, record in probe_cells(results):
        m, role = metrics_of(record), record["role"]
        for key in sorted((k for k in m if re.fullmatch(r"extract/rate_rows\d+", k)), key=lambda k: int(k.rsplit("rows", 1)[1])):
            k = int(key.rsplit("rows", 1)[1])
            rows.append(
                {
                    "model": role["model"],
                    "gamma": role["gamma"],
                    "prefix_rows": k,
                    "rate": m.get(key),
                    "control_rate": m.get(f"extract/control_rate_rows{k}"),
                    "hamming_median": m.get(f"extract/hamming_median_rows{k}"),
                    "control_hamming_median": m.get(f"extract/control_hamming_median_rows{k}"),
                    "ceiling_rate": m.get("extract/ceiling_rate"),
                    "control_ceiling_rate": m.get("extract/control_ceiling_rate"),
                    "num_sources": m.get(f"extract/count_rows{k}"),
                    "num_control": m.get(f"extract/control_count_rows{k}"),
                    "fitted": probed_model_fitted(results, record),
                }
            )
    return rows


def forward_backward_rows(results: dict) -> list[dict]:
    """One row per (probe cell, noise level p): the changed fraction and the changes' correlation curve and length."""
    rows = []
    for _, record in probe_cells(results):
        m, role = metrics_of(record), record["role"]
        levels = sorted({level_from_key(k.rsplit("_p", 1)[1]) for k in m if k.startswith("fb/changed_fraction_p")})
        for p in levels:
            name = f"{p:g}".replace(".", "_")
            curve = []
            for d in range(1, 64):
                key = f"fb/correlation_d{d}_p{name}"
                if key not in m:
                    break
                curve.append(m[key])
            rows.append(
                {
                    "model": role["model"],
                    "gamma": role["gamma"],
                    "p": p,
                    "changed_fraction": m.get(f"fb/changed_fraction_p{name}"),
                    "corrupted_changed_fraction": m.get(f"fb/corrupted_changed_fraction_p{name}"),
                    "exact_rate": m.get(f"fb/exact_rate_p{name}"),
                    "correlation_length": m.get(f"fb/correlation_length_p{name}"),
                    "correlation": curve,
                    "conditioning": CONDITIONING.get(m.get("fb/window_conditioning")),
                    "fitted": probed_model_fitted(results, record),
                }
            )
    return rows


def probe_sections(results: dict) -> dict:
    """report.json's two probe sections (empty lists without probe cells)."""
    return {"extraction": extraction_rows(results), "forward_backward": forward_backward_rows(results)}


def gammas_of(rows: list[dict], model: str) -> list:
    """The model's γ values in increasing order, global last (cells finish in any order)."""
    gammas = dict.fromkeys(r["gamma"] for r in rows if r["model"] == model)
    return sorted(gammas, key=lambda g: (parse_gamma(g) is None, parse_gamma(g) or 0))


def extraction_table(rows: list[dict]) -> str:
    """One line per (model, γ); per prefix k: rate / control rate / median Hamming distance."""
    prefixes = sorted({r["prefix_rows"] for r in rows})
    lines = [
        "| model | γ | " + " | ".join(f"k = {k}: rate / control / Hamming" for k in prefixes) + " | ceiling (train / control) |",
        "|---|---|" + "---|" * (len(prefixes) + 1),
    ]
    for model in TOKEN_MODELS:
        for gamma in gammas_of(rows, model):
            mine = {r["prefix_rows"]: r for r in rows if r["model"] == model and r["gamma"] == gamma}
            cells = [
                f"{fixed(mine[k]['rate'])} / {fixed(mine[k]['control_rate'])} / {fixed(mine[k]['hamming_median'], 0)}" if k in mine else "–"
                for k in prefixes
            ]
            first = next(iter(mine.values()))
            note = "" if first["fitted"] is not False else " (NOT FITTED)"
            lines.append(
                f"| {model}{note} | {gamma} | "
                + " | ".join(cells)
                + f" | {fixed(first['ceiling_rate'])} / {fixed(first['control_ceiling_rate'])} |"
            )
    return "\n".join(lines)


def forward_backward_table(rows: list[dict]) -> str:
    """One line per (model, γ); per noise level p: changed fraction / correlation length."""
    levels = sorted({r["p"] for r in rows})
    lines = ["| model (conditioning) | γ | " + " | ".join(f"p = {p:g}" for p in levels) + " |", "|---|---|" + "---|" * len(levels)]
    for model in TOKEN_MODELS:
        for gamma in gammas_of(rows, model):
            mine = {r["p"]: r for r in rows if r["model"] == model and r["gamma"] == gamma}
            first = next(iter(mine.values()))
            cells = [
                f"{fixed(mine[p]['changed_fraction'])} / {fixed(mine[p]['correlation_length'], 2)}" if p in mine else "–" for p in levels
            ]
            lines.append(f"| {model} ({first['conditioning']}) | {gamma} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def probes_markdown(report: dict) -> str:
    """report.md's probes section ("" without probe rows)."""
    extraction, fb = report.get("extraction") or [], report.get("forward_backward") or []
    if not extraction and not fb:
        return ""
    text = "## Probes: prefix extraction and forward–backward resampling\n\nDefinitions: docs/probes.md.\n\n"
    if extraction:
        text += (
            "**Prefix extraction.** The first k rows of each training grid are kept and the model completes the rest; a "
            "completion is extracted when it decodes to ≥ 25 dB PSNR of its source image (as the memorization rate "
            "compares). Control: the same on held-out grids (the floor: what a prefix gives without memorization). "
            "Hamming: median bits between the completed and the source grid. Ceiling: the source grids' own decodings.\n\n"
            + extraction_table(extraction)
            + "\n\n![extraction vs prefix](extraction_vs_prefix.png)\n\n"
        )
    if fb:
        text += (
            "**Forward–backward.** A fraction p of the cells of each training grid is erased (uniformly chosen) and "
            "the model redraws them; cells: changed fraction / correlation length (Σ_d of the correlation of the "
            "changed indicator between erased cells at Chebyshev distance d, in cells).\n\n"
            + forward_backward_table(fb)
            + "\n\n![correlation length vs p](correlation_length_vs_p.png)\n\n"
        )
    return text

"""The probes' part of the sweep report: `extraction` and `forward_backward` rows, their tables, plots and W&B tables.

Read from the probe cells (role kind "probe", callbacks/probes.py keys `extract/` and `fb/`); a pure
function of the cells' results, like the rest of reporting.py. docs/probes.md defines every figure.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from networks.gamma_mask import parse_gamma  # noqa: E402

MODELS = ("kernel", "neural")
CONDITIONING = {1.0: "full window", 0.0: "causal window"}


def _metrics(record: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in (record.get("metrics") or {}).items()}


def _probe_cells(results: dict) -> list[tuple[str, dict]]:
    cells = [(name, r) for name, r in results.items() if (r.get("role") or {}).get("kind") == "probe"]
    order = {name: i for i, name in enumerate(results)}
    return sorted(cells, key=lambda c: (MODELS.index(c[1]["role"]["model"]) if c[1]["role"]["model"] in MODELS else 9, order[c[0]]))


def _fitted(results: dict, record: dict) -> bool | None:
    """Whether the model the probes ran on had fitted its training set (the main cell's verdict)."""
    role = record["role"]
    if role["model"] == "kernel":
        return True
    plateaued = (results.get(role.get("of", "")) or {}).get("metrics", {}).get("fit/plateaued")
    return None if plateaued is None else plateaued >= 1


def level_from_key(name: str) -> float:
    return float(name.replace("_", "."))


def extraction_rows(results: dict) -> list[dict]:
    rows = []
    for _, record in _probe_cells(results):
        m, role = _metrics(record), record["role"]
        for key in sorted((k for k in m if re.fullmatch(r"extract/rate_rows\d+", k)), key=lambda k: int(k.rsplit("rows", 1)[1])):
            k = int(key.rsplit("rows", 1)[1])
            rows.append({
                "model": role["model"], "gamma": role["gamma"], "prefix_rows": k,
                "rate": m.get(key), "control_rate": m.get(f"extract/control_rate_rows{k}"),
                "hamming_median": m.get(f"extract/hamming_median_rows{k}"),
                "control_hamming_median": m.get(f"extract/control_hamming_median_rows{k}"),
                "ceiling_rate": m.get("extract/ceiling_rate"), "control_ceiling_rate": m.get("extract/control_ceiling_rate"),
                "num_sources": m.get(f"extract/count_rows{k}"), "num_control": m.get(f"extract/control_count_rows{k}"),
                "fitted": _fitted(results, record),
            })
    return rows


def forward_backward_rows(results: dict) -> list[dict]:
    rows = []
    for _, record in _probe_cells(results):
        m, role = _metrics(record), record["role"]
        levels = sorted({level_from_key(k.rsplit("_p", 1)[1]) for k in m if k.startswith("fb/changed_fraction_p")})
        for p in levels:
            name = f"{p:g}".replace(".", "_")
            curve = []
            for d in range(1, 64):
                key = f"fb/correlation_d{d}_p{name}"
                if key not in m:
                    break
                curve.append(m[key])
            rows.append({
                "model": role["model"], "gamma": role["gamma"], "p": p,
                "changed_fraction": m.get(f"fb/changed_fraction_p{name}"),
                "corrupted_changed_fraction": m.get(f"fb/corrupted_changed_fraction_p{name}"),
                "exact_rate": m.get(f"fb/exact_rate_p{name}"),
                "correlation_length": m.get(f"fb/correlation_length_p{name}"),
                "correlation": curve,
                "conditioning": CONDITIONING.get(m.get("fb/window_conditioning")),
                "fitted": _fitted(results, record),
            })
    return rows


def probe_sections(results: dict) -> dict:
    return {"extraction": extraction_rows(results), "forward_backward": forward_backward_rows(results)}


# ------------------------------------------------------------------------------------------------
# report.md


def _f(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _gammas(rows: list[dict], model: str) -> list:
    """The model's γ values in increasing order, global last (cells finish in any order)."""
    gammas = dict.fromkeys(r["gamma"] for r in rows if r["model"] == model)
    return sorted(gammas, key=lambda g: (parse_gamma(g) is None, parse_gamma(g) or 0))


def extraction_table(rows: list[dict]) -> str:
    prefixes = sorted({r["prefix_rows"] for r in rows})
    lines = ["| model | γ | " + " | ".join(f"k = {k}: rate / control / Hamming" for k in prefixes) + " | ceiling (train / control) |",
             "|---|---|" + "---|" * (len(prefixes) + 1)]
    for model in MODELS:
        for gamma in _gammas(rows, model):
            mine = {r["prefix_rows"]: r for r in rows if r["model"] == model and r["gamma"] == gamma}
            cells = [f"{_f(mine[k]['rate'])} / {_f(mine[k]['control_rate'])} / {_f(mine[k]['hamming_median'], 0)}" if k in mine else "–"
                     for k in prefixes]
            first = next(iter(mine.values()))
            note = "" if first["fitted"] is not False else " (NOT FITTED)"
            lines.append(f"| {model}{note} | {gamma} | " + " | ".join(cells) + f" | {_f(first['ceiling_rate'])} / {_f(first['control_ceiling_rate'])} |")
    return "\n".join(lines)


def forward_backward_table(rows: list[dict]) -> str:
    levels = sorted({r["p"] for r in rows})
    lines = ["| model (conditioning) | γ | " + " | ".join(f"p = {p:g}" for p in levels) + " |", "|---|---|" + "---|" * len(levels)]
    for model in MODELS:
        for gamma in _gammas(rows, model):
            mine = {r["p"]: r for r in rows if r["model"] == model and r["gamma"] == gamma}
            first = next(iter(mine.values()))
            cells = [f"{_f(mine[p]['changed_fraction'])} / {_f(mine[p]['correlation_length'], 2)}" if p in mine else "–" for p in levels]
            lines.append(f"| {model} ({first['conditioning']}) | {gamma} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def probes_markdown(report: dict) -> str:
    extraction, fb = report.get("extraction") or [], report.get("forward_backward") or []
    if not extraction and not fb:
        return ""
    text = "## Probes: prefix extraction and forward–backward resampling\n\nDefinitions: docs/probes.md.\n\n"
    if extraction:
        text += ("**Prefix extraction.** The first k rows of each training grid are kept and the model completes the rest; a "
                 "completion is extracted when it decodes to ≥ 25 dB PSNR of its source image (as the memorization rate "
                 "compares). Control: the same on held-out grids (the floor: what a prefix gives without memorization). "
                 "Hamming: median bits between the completed and the source grid. Ceiling: the source grids' own decodings.\n\n"
                 + extraction_table(extraction) + "\n\n![extraction vs prefix](extraction_vs_prefix.png)\n\n")
    if fb:
        text += ("**Forward–backward.** A fraction p of the cells of each training grid is erased (uniformly chosen) and "
                 "the model redraws them; cells: changed fraction / correlation length (Σ_d of the correlation of the "
                 "changed indicator between erased cells at Chebyshev distance d, in cells).\n\n"
                 + forward_backward_table(fb) + "\n\n![correlation length vs p](correlation_length_vs_p.png)\n\n")
    return text


# ------------------------------------------------------------------------------------------------
# plots


def _panels(models: list[str], title: str):
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(4.6 * max(1, len(models)), 3.6), squeeze=False)
    fig.suptitle(title, fontsize=10)
    return fig, axes[0]


def plot_extraction(report: dict, path: Path) -> None:
    rows = report["extraction"]
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    fig, axes = _panels(models, "Prefix extraction: rate vs prefix rows (dashed: held-out control)")
    for ax, model in zip(axes, models):
        for i, gamma in enumerate(_gammas(rows, model)):
            mine = sorted((r for r in rows if r["model"] == model and r["gamma"] == gamma), key=lambda r: r["prefix_rows"])
            colour = f"C{i}"
            ax.plot([r["prefix_rows"] for r in mine], [r["rate"] for r in mine], marker="o", color=colour, label=f"γ = {gamma}")
            ax.plot([r["prefix_rows"] for r in mine], [r["control_rate"] for r in mine], linestyle="--", marker="x", color=colour)
        ax.set(xlabel="prefix rows k", ylabel="extraction rate (≥ 25 dB)", ylim=(-0.02, 1.05), title=model)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_correlation_length(report: dict, path: Path) -> None:
    rows = report["forward_backward"]
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    fig, axes = _panels(models, "Forward–backward: correlation length of the changes vs noise level p")
    for ax, model in zip(axes, models):
        for gamma in _gammas(rows, model):
            mine = sorted((r for r in rows if r["model"] == model and r["gamma"] == gamma), key=lambda r: r["p"])
            ax.plot([r["p"] for r in mine], [r["correlation_length"] for r in mine], marker="o", label=f"γ = {gamma}")
        conditioning = next((r["conditioning"] for r in rows if r["model"] == model), "")
        ax.set(xlabel="noise level p (fraction of cells erased)", ylabel="correlation length (cells)", title=f"{model} ({conditioning})")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


PROBE_PLOTS = {"extraction_vs_prefix.png": (plot_extraction, "extraction"),
               "correlation_length_vs_p.png": (plot_correlation_length, "forward_backward")}


def write_probe_plots(report: dict, out_dir: Path) -> list[str]:
    """The plots whose rows exist; their file names."""
    written = []
    for name, (draw, section) in PROBE_PLOTS.items():
        if report.get(section):
            draw(report, out_dir / name)
            written.append(name)
    return written


def probe_tables(wandb, report: dict) -> dict:
    """W&B tables of the two sections (for the summary run)."""
    media = {}
    if report.get("extraction"):
        columns = ["model", "gamma", "prefix_rows", "rate", "control_rate", "hamming_median", "control_hamming_median", "ceiling_rate"]
        media["report/extraction"] = wandb.Table(columns=columns, data=[[str(r[c]) if c == "gamma" else r[c] for c in columns]
                                                                        for r in report["extraction"]])
    if report.get("forward_backward"):
        columns = ["model", "gamma", "p", "changed_fraction", "corrupted_changed_fraction", "exact_rate", "correlation_length", "conditioning"]
        media["report/forward_backward"] = wandb.Table(columns=columns, data=[[str(r[c]) if c == "gamma" else r[c] for c in columns]
                                                                              for r in report["forward_backward"]])
    return media

"""The report's matplotlib figures (PNG files beside report.md): memorization vs γ, the generation–memorization
frontier, the phase diagram, the MEPS frontier, the overlap against training step, membership inference against γ
(drawn by report/membership.py), and the probes' extraction and correlation-length curves.

Each is drawn from report.json's content alone. The Agg backend (files, no display) is chosen here, the one
place in the report that imports pyplot.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from report.cells import TOKEN_MODELS  # noqa: E402
from report.figure_files import save_figure  # noqa: E402
from report.membership import plot_membership  # noqa: E402
from report.probes import gammas_of  # noqa: E402
from report.verdicts import FRONTIER_MIN_NOVEL  # noqa: E402


def measure_name(report: dict) -> str:
    """The measure the memorization verdicts read (report.json ``memorization_measure``; pixel when none was chosen)."""
    return (report.get("memorization_measure") or {}).get("name", "pixel")


def measured_rows(report: dict, model: str) -> list[dict]:
    """The model's main rows with a rate on the verdicts' measure, each with ``rate``/``low``/``high`` on it."""
    name, rows = measure_name(report), []
    for r in report["rows"]:
        pixel = {"rate": r["mem_psnr25"], "low": r["mem_psnr25_low"], "high": r["mem_psnr25_high"]}
        rate = (r.get("measures") or {"pixel": pixel}).get(name) or {}
        if r["model"] == model and rate.get("rate") is not None:
            rows.append({**r, "rate": rate["rate"], "low": rate.get("low"), "high": rate.get("high")})
    return rows


def references(report: dict) -> tuple[float | None, float | None]:
    """(floor, ceiling) of the verdicts' measure (the pixel measure's without a chosen one)."""
    choice = report.get("memorization_measure")
    if choice:
        return choice["floor"], choice["ceiling"]
    return report["floor"]["mem_psnr25"], report["ceiling"]["mem_psnr25"]


def plot_memorization(report: dict, path: Path) -> None:
    """Memorization (the verdicts' measure) against γ, one line per model with 95 % Wilson intervals, between the floor
    and the ceiling."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, marker in zip(TOKEN_MODELS, "os", strict=True):
        rows = measured_rows(report, model)
        if rows:
            errors = [
                [max(0.0, r["rate"] - r["low"]) if r["low"] is not None else 0.0 for r in rows],
                [max(0.0, r["high"] - r["rate"]) if r["high"] is not None else 0.0 for r in rows],
            ]
            labels = [str(r["gamma"]) for r in rows]
            ax.errorbar(labels, [r["rate"] for r in rows], yerr=errors, marker=marker, capsize=3, label=f"{model} γ-ARVM")
    floor, ceiling = references(report)
    if floor is not None:
        ax.axhspan(0, max(floor, 0.005), color="grey", alpha=0.3, label=f"floor (held-out) {floor:.2f}")
    if ceiling is not None:
        ax.axhline(ceiling, color="black", linestyle="--", linewidth=1, label=f"ceiling (copying) {ceiling:.2f}")
    ax.set(
        xlabel="γ (observation radius)",
        ylabel=f"memorization rate ({measure_name(report)} measure)",
        ylim=(-0.02, 1.05),
        title="Memorization vs γ (95 % Wilson intervals)",
    )
    ax.legend(loc="center right", fontsize=8)
    save_figure(fig, path)


def plot_frontier(report: dict, path: Path) -> None:
    """Memorization (the verdicts' measure) against the KID of the novel samples with its bootstrap 95 % interval, one
    point per γ with enough novel samples."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, marker in zip(TOKEN_MODELS, "os", strict=True):
        rows = [r for r in measured_rows(report, model) if r["kid_novel"] is not None and (r["novel_scored"] or 0) >= FRONTIER_MIN_NOVEL]
        if rows:
            errors = [
                [max(0.0, r["kid_novel"] - r["kid_novel_low"]) if r.get("kid_novel_low") is not None else 0.0 for r in rows],
                [max(0.0, r["kid_novel_high"] - r["kid_novel"]) if r.get("kid_novel_high") is not None else 0.0 for r in rows],
            ]
            rates = [r["rate"] for r in rows]
            ax.errorbar(rates, [r["kid_novel"] for r in rows], yerr=errors, marker=marker, capsize=3, label=f"{model} γ-ARVM")
            for r in rows:
                ax.annotate(
                    f"γ={r['gamma']} (n={int(r['novel_scored'])})",
                    (r["rate"], r["kid_novel"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    ref = report["reference"]
    if ref["kid"] is not None:
        ax.axhline(ref["kid"], color="black", linestyle="--", linewidth=1, label="autoencoder reconstructions (reference)")
        if ref.get("kid_low") is not None and ref.get("kid_high") is not None:
            ax.axhspan(ref["kid_low"], ref["kid_high"], color="grey", alpha=0.2)
    ax.set(xlabel=f"memorization ({measure_name(report)} measure)", ylabel="KID of the novel samples vs held-out", xlim=(-0.02, 1.02))
    ax.set_title(f"Generation–memorization frontier (γ with ≥ {FRONTIER_MIN_NOVEL} novel samples; KID 95 % intervals)", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_phase_diagram(report: dict, path: Path) -> None:
    """Memorization over γ × training-set size, one heat map per model."""
    rows = report["memorization_vs_train_size"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(4.5 * max(1, len(models)), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=False):
        mine = [r for r in rows if r["model"] == model]
        gammas = list(dict.fromkeys(str(r["gamma"]) for r in mine))
        sizes = sorted({int(r["train_size"]) for r in mine if r["train_size"] is not None})
        grid = [[math.nan] * len(sizes) for _ in gammas]
        for r in mine:
            if r["train_size"] is not None and r["mem_psnr25"] is not None:
                grid[gammas.index(str(r["gamma"]))][sizes.index(int(r["train_size"]))] = r["mem_psnr25"]
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
        for i, line in enumerate(grid):
            for j, value in enumerate(line):
                if not math.isnan(value):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if value < 0.6 else "black")
        ax.set(
            xticks=range(len(sizes)),
            xticklabels=sizes,
            yticks=range(len(gammas)),
            yticklabels=gammas,
            xlabel="training images N",
            ylabel="γ",
            title=f"{model}: mem_psnr25",
        )
        fig.colorbar(image, ax=ax)
    save_figure(fig, path)


def finite_points(rows: list[dict], x: str, y: str) -> list[dict]:
    """The rows with a finite x and y (a log10 overlap of -inf, exactly 0, cannot be drawn on a log axis)."""
    return [r for r in rows if r[x] is not None and r[y] is not None and math.isfinite(r[x]) and math.isfinite(r[y])]


def plot_frontier_meps(report: dict, path: Path) -> None:
    """The MEPS frontier: log10 overlap against PSNR, the VAE's curve over β and the BL-AE's over its training noise.
    The VAE line joins its points in PSNR order, the order the verdicts interpolate it in (report/meps.py): a
    β series whose PSNR is not monotone would otherwise draw a curve other than the one the verdicts read."""
    fig, ax = plt.subplots(figsize=(6, 4))
    frontier = report.get("meps_frontier") or []
    for model, key, marker in (("VAE", "beta", "o"), ("BL-AE", "noise", "s")):
        points = finite_points([r for r in frontier if r["model"] == model], "psnr", "log10_ovl")
        rows = sorted(points, key=lambda r: r["psnr"]) if model == "VAE" else sorted(points, key=lambda r: r[key] or 0.0)
        if not rows:
            continue
        ax.plot(
            [r["psnr"] for r in rows],
            [r["log10_ovl"] for r in rows],
            marker=marker,
            label=f"{model} (over {'β' if key == 'beta' else 'noise'})",
        )
        for r in rows:
            name = "β" if key == "beta" else "noise"
            text = f"{name}={r[key]:g}" if r[key] is not None else r["cell"]
            ax.annotate(
                text + (" (main)" if r["main"] else ""), (r["psnr"], r["log10_ovl"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set(xlabel="val PSNR (dB)", ylabel="log10 mean pairwise overlap")
    ax.set_title("MEPS frontier: log10 latent overlap vs reconstruction quality", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_ovl_vs_step(report: dict, path: Path) -> None:
    """Log10 overlap against training step: the main BL-AE and the VAE nearest the ELBO."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for cell, points in (report.get("ovl_vs_step") or {}).items():
        finite = [p for p in points if math.isfinite(p[1])]
        ax.plot([p[0] for p in finite], [p[1] for p in finite], marker=".", label=cell)
    ax.set(xlabel="training step", ylabel="log10 mean pairwise overlap", title="Latent overlap during training")
    ax.legend(fontsize=8)
    save_figure(fig, path)


PLOTS = {
    "memorization_vs_gamma.png": plot_memorization,
    "frontier.png": plot_frontier,
    "phase_diagram.png": plot_phase_diagram,
    "frontier_meps.png": plot_frontier_meps,
    "ovl_vs_step.png": plot_ovl_vs_step,
    "membership_vs_gamma.png": plot_membership,
}
"""The main figures by file name (each only where report.json has its section: `drawn`)."""

SECTIONS = {"phase_diagram.png": "memorization_vs_train_size", "ovl_vs_step.png": "ovl_vs_step", "membership_vs_gamma.png": "membership"}
"""The figures drawn only where report.json's section of that name is non-empty."""


def drawn(report: dict, name: str) -> bool:
    """Whether the main figure ``name`` has numbers to draw."""
    return name not in SECTIONS or bool(report.get(SECTIONS[name]))


def probe_panels(models: list[str], title: str):
    """A figure with one panel per model, side by side, under one title: (figure, panels)."""
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(4.6 * max(1, len(models)), 3.6), squeeze=False)
    fig.suptitle(title, fontsize=10)
    return fig, axes[0]


def plot_extraction(report: dict, path: Path) -> None:
    """Extraction rate against prefix rows, one panel per model, one colour per γ (dashed: the held-out control)."""
    rows = report["extraction"]
    models = [m for m in TOKEN_MODELS if any(r["model"] == m for r in rows)]
    fig, axes = probe_panels(models, "Prefix extraction: rate vs prefix rows (dashed: held-out control)")
    for ax, model in zip(axes, models, strict=False):
        for i, gamma in enumerate(gammas_of(rows, model)):
            mine = sorted((r for r in rows if r["model"] == model and r["gamma"] == gamma), key=lambda r: r["prefix_rows"])
            colour = f"C{i}"
            ax.plot([r["prefix_rows"] for r in mine], [r["rate"] for r in mine], marker="o", color=colour, label=f"γ = {gamma}")
            ax.plot([r["prefix_rows"] for r in mine], [r["control_rate"] for r in mine], linestyle="--", marker="x", color=colour)
        ax.set(xlabel="prefix rows k", ylabel="extraction rate (≥ 25 dB)", ylim=(-0.02, 1.05), title=model)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_correlation_length(report: dict, path: Path) -> None:
    """Correlation length of the forward–backward changes against the noise level p, one panel per model."""
    rows = report["forward_backward"]
    models = [m for m in TOKEN_MODELS if any(r["model"] == m for r in rows)]
    fig, axes = probe_panels(models, "Forward–backward: correlation length of the changes vs noise level p")
    for ax, model in zip(axes, models, strict=False):
        for gamma in gammas_of(rows, model):
            mine = sorted((r for r in rows if r["model"] == model and r["gamma"] == gamma), key=lambda r: r["p"])
            ax.plot([r["p"] for r in mine], [r["correlation_length"] for r in mine], marker="o", label=f"γ = {gamma}")
        conditioning = next((r["conditioning"] for r in rows if r["model"] == model), "")
        ax.set(xlabel="noise level p (fraction of cells erased)", ylabel="correlation length (cells)", title=f"{model} ({conditioning})")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.legend(fontsize=7)
    save_figure(fig, path)


PROBE_PLOTS = {
    "extraction_vs_prefix.png": (plot_extraction, "extraction"),
    "correlation_length_vs_p.png": (plot_correlation_length, "forward_backward"),
}
"""The probes' figures by file name, each with the report.json section it draws (drawn only where that section has rows)."""


def write_probe_plots(report: dict, out_dir: Path) -> list[str]:
    """The plots whose rows exist; their file names."""
    written = []
    for name, (draw, section) in PROBE_PLOTS.items():
        if report.get(section):
            draw(report, out_dir / name)
            written.append(name)
    return written


def write_plots(report: dict, out_dir: Path) -> None:
    """Every figure report.json has the numbers for, into ``out_dir``: the main ones, then the probes'."""
    for name, draw in PLOTS.items():
        if drawn(report, name):
            draw(report, out_dir / name)
    write_probe_plots(report, out_dir)

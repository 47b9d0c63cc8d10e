"""report.md: the tables of report.json's numbers, the plots' places, and one line per verdict."""

from __future__ import annotations

from report.formatting import fmt
from report.probes import probes_markdown
from report.verdicts import FRONTIER_MIN_NOVEL


def verdict_line(v: dict) -> str:
    """``- **claim** (model) — rule: …. Numbers: …. → **outcome**``."""
    who = f" ({v['model']})" if v["model"] else ""
    return f"- **{v['claim']}**{who} — rule: {v['rule']}. Numbers: {v['evidence']}. → **{v['outcome']}**"


def main_table(report: dict) -> str:
    """One line per main token cell: fitted, where the samples came from, memorization, likelihoods, KID/FID, seconds."""
    header = (
        "| model | γ | fitted | samples from | mem_psnr25 [95 % CI] | latent copy | NN-PSNR median (dB) | train nll | val nll "
        "| KID novel (n) | FID novel | s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['model']} | {r['gamma']} | {'yes' if r['fitted'] else 'NOT FITTED'} | {r['samples_from']} | "
        f"{fmt(r['mem_psnr25'], 3)} [{fmt(r['mem_psnr25_low'], 3)}, {fmt(r['mem_psnr25_high'], 3)}] | {fmt(r['latent_copy'], 3)} | "
        f"{fmt(r['nn_psnr_median'], 1)} | {fmt(r['train_nll_bits'], 3)} | {fmt(r['nll_bits'], 3)} | "
        f"{fmt(r['kid_novel'], 4)} ({int(r['novel_scored'] or 0)}) | {fmt(r['fid_novel'], 1)} | {r['seconds'] or 0:.0f} |\n"
        for r in report["rows"]
    )
    return header + body


def references_table(report: dict) -> str:
    """The floor and ceiling of memorization and the reference KID/FID."""
    floor, ceiling, ref = report["floor"], report["ceiling"], report["reference"]
    return (
        "| reference | mem_psnr25 | mem_ratio13 | NN-PSNR median (dB) | KID | FID |\n|---|---|---|---|---|---|\n"
        f"| floor (held-out images vs train) | {fmt(floor['mem_psnr25'], 3)} | {fmt(floor['mem_ratio13'], 3)} "
        f"| {fmt(floor['nn_psnr_median'], 1)} | | |\n"
        f"| ceiling (BL-AE reconstructions of train) | {fmt(ceiling['mem_psnr25'], 3)} | {fmt(ceiling['mem_ratio13'], 3)} "
        f"| {fmt(ceiling['nn_psnr_median'], 1)} | | |\n"
        f"| BL-AE reconstructions of held-out vs held-out | | | | {fmt(ref['kid'], 4)} | {fmt(ref['fid'], 1)} |\n"
    )


def spread_table(report: dict) -> str:
    """The seed-to-seed spread section ("" without spread cells)."""
    if not report["seed_spread"]:
        return ""
    lines = [
        "| model | γ | seeds | mem_psnr25 per seed | train nll per seed | range | 95 % sampling interval width |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report["seed_spread"]:
        lines.append(
            f"| {s['model']} | {s['gamma']} | {', '.join('config' if x is None else str(x) for x in s['seeds'])} | "
            f"{', '.join(fmt(x, 3) for x in s['mem_psnr25'])} | {', '.join(fmt(x, 3) for x in s['train_nll_bits'])} | "
            f"{fmt(s['range'], 3)} | {fmt(s['sampling_interval_width'], 3)} |"
        )
    return (
        "## Seed-to-seed spread\n\nThe same cell trained from other seeds (same samples' seeds); the range is read against "
        "the width of the 95 % interval that sampling alone gives at that rate.\n\n" + "\n".join(lines) + "\n\n"
    )


def vae_table(report: dict) -> str:
    """The MEPS section: the BL-AE's and each VAE's PSNR, overlap and MSE bound."""
    rows = [
        (
            "BL-AE",
            report["blae"]["psnr"],
            report["ovl"]["blae_mean"],
            report["ovl"]["blae_lower_bound_mse"],
            report["ovl"]["blae_measured_mse"],
        )
    ]
    rows += [
        (f"VAE β = {fmt(r['beta'])}" if r["beta"] is not None else "VAE", r["psnr"], r["ovl_mean"], r["lower_bound_mse"], r["measured_mse"])
        for r in report["vae_betas"]
    ]
    lines = ["| model | val PSNR (dB) | ovl/mean | MSE lower bound | measured MSE |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {fmt(psnr, 2)} | {fmt(ovl, 3)} | {fmt(bound, 4)} | {fmt(mse, 4)} |" for name, psnr, ovl, bound, mse in rows]
    return "## MEPS: overlap of the latent laws\n\n" + "\n".join(lines) + "\n\n"


def phase_table(report: dict) -> str:
    """The phase diagram section: memorization per (model, γ) × training-set size ("" without phase cells)."""
    rows = report["memorization_vs_train_size"]
    if not rows:
        return ""
    sizes = sorted({r["train_size"] for r in rows if r["train_size"] is not None})
    lines = ["| model | γ | " + " | ".join(f"N = {int(n)}" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for model in dict.fromkeys(r["model"] for r in rows):
        for gamma in dict.fromkeys(r["gamma"] for r in rows if r["model"] == model):
            cells = {r["train_size"]: r for r in rows if r["model"] == model and r["gamma"] == gamma}
            values = [
                f"{fmt(cells[n]['mem_psnr25'], 3)}{'' if cells[n]['fitted'] else ' (not fitted)'}" if n in cells else "–" for n in sizes
            ]
            lines.append(f"| {model} | {gamma} | " + " | ".join(values) + " |")
    floors = {r["train_size"]: r["floor_mem_psnr25"] for r in rows}
    lines.append("| floor (held-out) | | " + " | ".join(fmt(floors.get(n), 3) for n in sizes) + " |")
    return (
        "## Phase diagram: memorization over γ × training-set size\n\nmem_psnr25 of each (γ, N) cell: N training images, a "
        "seeded random subset (each smaller subset lies inside the larger ones).\n\n"
        + "\n".join(lines)
        + "\n\n![phase diagram](phase_diagram.png)\n\n"
    )


def excess_table(report: dict) -> str:
    """The LDH section: the training tokens' MI excess over the null per distance ("" when not measured)."""
    curve = report["mi_excess"].get("data") or []
    if not curve:
        return ""
    lines = ["| d | MI excess over the null, training tokens (bits) [95 %] |", "|---|---|"]
    lines += [f"| {p['d']} | {fmt(p['excess'], 3)} [{fmt(p['low'], 3)}, {fmt(p['high'], 3)}] |" for p in curve]
    return "## LDH: token dependence vs distance\n\n" + "\n".join(lines) + "\n\n"


def markdown(report: dict) -> str:
    """report.md's text, a pure function of report.json."""
    blae, costs = report["blae"], report["costs"]
    cost = f"Wall time {report['wall_s'] or 0:.0f} s; CPU time of the cells {costs.get('cells_cpu_s', 0):.0f} s"
    if costs.get("workers"):
        cost += f" ({costs['workers']} cell(s) at a time, {costs.get('threads') or 'default'} thread(s) each)"
    return (
        "# Memorization vs γ\n\n"
        f"BL-AE: hard-sign val PSNR {fmt(blae['psnr'])} dB, bin rate {fmt(blae['bin_rate'])}. "
        f"Samples per cell: {report['rows'][0]['num_samples'] if report['rows'] else '–'}. {cost}.\n\n"
        "Neural cells train until their training loss plateaus (`fit/plateaued`); a cell whose budget ended first is "
        "marked NOT FITTED and no verdict reads it. Samples come from the final model of each fit, not from the "
        "best-val-nll checkpoint (selecting by held-out nll picks the least-memorizing model). train/val nll: bits per "
        "token of the training / held-out grids under the final model. KID/FID novel: the novel samples (NN-PSNR < 25 dB, "
        "the first n) against held-out images, with the shipped Inception.\n\n"
        + main_table(report)
        + "\n"
        + references_table(report)
        + "\n![memorization vs gamma](memorization_vs_gamma.png)\n\n"
        "## Generation–memorization frontier\n\nOne point per γ: memorization against the KID of the novel samples (γ with "
        f"at least {FRONTIER_MIN_NOVEL} novel samples: a memorizer leaves too few to score); the dashed line is the BL-AE's "
        "reconstructions of held-out images, the best any model scores through this decoder.\n\n"
        "![frontier](frontier.png)\n\n"
        + spread_table(report)
        + vae_table(report)
        + excess_table(report)
        + phase_table(report)
        + probes_markdown(report)
        + "## Verdicts\n\nEach computed from the numbers above by the rule stated with it.\n\n"
        + "\n".join(verdict_line(v) for v in report["verdicts"])
        + "\n"
    )

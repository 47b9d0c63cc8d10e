"""report.md: the tables of report.json's numbers, the plots' places, and one line per verdict."""

from __future__ import annotations

from report.formatting import decades, fmt, log10_text
from report.ldh import excess_table
from report.membership import membership_table
from report.meps import BOUND_CLAIM, BRACKET_CLAIM, gaps, setting
from report.probes import probes_markdown
from report.verdicts import FRONTIER_MIN_NOVEL

CHECKS = (BOUND_CLAIM, BRACKET_CLAIM)
"""The consistency checks' claims (listed apart from the paper's claims)."""


def verdict_line(v: dict) -> str:
    """``- **claim** (model) — rule: …. Numbers: …. → **outcome**``."""
    who = f" ({v['model']})" if v["model"] else ""
    return f"- **{v['claim']}**{who} — rule: {v['rule']}. Numbers: {v['evidence']}. → **{v['outcome']}**"


def consistency_section(report: dict) -> str:
    """The consistency checks, one table per check (its rule stated once): checks of the measurements, not claims."""
    text = (
        "## Consistency checks\n\nChecks of the measurements against what must hold whatever the data (theorems), not claims "
        "of the paper: an inconsistent line means a figure above is mismeasured.\n\n"
    )
    for claim in CHECKS:
        lines = [v for v in report["verdicts"] if v["claim"] == claim]
        if lines:
            text += f"**{claim}** — rule: {lines[0]['rule']}.\n\n| autoencoder | numbers | outcome |\n|---|---|---|\n"
            text += "".join(f"| {v['model']} | {v['evidence']} | **{v['outcome']}** |\n" for v in lines) + "\n"
    return text


MEASURE_COLUMNS = {"pixel": "pixel copy", "decoded": "decoded copy", "latent": "latent near-copy"}
"""The memorization measures' column names (report/memorization_measures.py defines each)."""


def interval(value, low, high, digits: int = 3) -> str:
    """``0.400 [0.335, 0.469]``; the value alone where its interval was not recorded; "–" where not measured."""
    if value is None:
        return "–"
    return f"{fmt(value, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]" if low is not None and high is not None else fmt(value, digits)


def chosen_measure_name(report: dict) -> str:
    """The measure the memorization verdicts read (report.json ``memorization_measure``; pixel when none was chosen)."""
    return (report.get("memorization_measure") or {}).get("name", "pixel")


def shows_fid(report: dict) -> bool:
    """Whether any row has an FID (none below its stated n: `quality/fid_min_n`)."""
    return any(r.get("fid_novel") is not None for r in report["rows"]) or report["reference"].get("fid") is not None


def main_table(report: dict) -> str:
    """One line per main token cell: fitted, where the samples came from, memorization on every measure (the verdicts'
    marked) with its 95 % interval, likelihoods, KID with its interval (FID where measured), seconds."""
    chosen, fid = chosen_measure_name(report), shows_fid(report)
    measures = [f"{text}{' (verdicts)' if name == chosen else ''} [95 %]" for name, text in MEASURE_COLUMNS.items()]
    columns = ["model", "γ", "fitted", "samples from", *measures, "latent copy", "NN-PSNR median (dB)", "train nll", "val nll"]
    columns += ["KID novel [95 %] (n)", *(["FID novel"] if fid else []), "s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in report["rows"]:
        rates = r.get("measures") or {"pixel": {"rate": r["mem_psnr25"], "low": r["mem_psnr25_low"], "high": r["mem_psnr25_high"]}}
        cells = [str(r["model"]), str(r["gamma"]), "yes" if r["fitted"] else "NOT FITTED", r["samples_from"]]
        cells += [
            interval(rate.get("rate"), rate.get("low"), rate.get("high")) for rate in (rates.get(name) or {} for name in MEASURE_COLUMNS)
        ]
        cells += [fmt(r["latent_copy"], 3), fmt(r["nn_psnr_median"], 1), fmt(r["train_nll_bits"], 3), fmt(r["nll_bits"], 3)]
        cells.append(f"{interval(r['kid_novel'], r.get('kid_novel_low'), r.get('kid_novel_high'), 4)} ({int(r['novel_scored'] or 0)})")
        cells += [fmt(r["fid_novel"], 1)] if fid else []
        cells.append(f"{r['seconds'] or 0:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def measure_line(report: dict) -> str:
    """Which measure the memorization verdicts read, and why (its floor–ceiling gap against the others')."""
    choice = report.get("memorization_measure")
    if not choice:
        return "The memorization verdicts read the pixel measure: no measure has both a floor and a ceiling.\n"
    gaps = ", ".join(f"{name} {fmt(gap, 3)}" for name, gap in choice["gaps"].items())
    return (
        f"The memorization verdicts read the **{choice['name']}** measure ({choice['text']}): its floor–ceiling gap "
        f"{fmt(choice['gap'], 3)} is the widest on this data (gaps: {gaps}).\n"
    )


def references_table(report: dict) -> str:
    """Every measure's floor and ceiling with their 95 % intervals, and the reference KID (with its interval) and FID."""
    ref, fid = report["reference"], shows_fid(report)
    lines = ["| measure | floor (held-out reconstructions) [95 %] | ceiling (train reconstructions) [95 %] | gap |", "|---|---|---|---|"]
    for name, block in (report.get("memorization_references") or {}).items():
        lines.append(
            f"| {MEASURE_COLUMNS.get(name, name)} | {interval(block['floor'], block['floor_low'], block['floor_high'])} | "
            f"{interval(block['ceiling'], block['ceiling_low'], block['ceiling_high'])} | {fmt(block['gap'], 3)} |"
        )
    kid = interval(ref["kid"], ref.get("kid_low"), ref.get("kid_high"), 4)
    reference = f"Reference (the autoencoder's reconstructions of other held-out images, scored like the samples): KID {kid}"
    reference += f", FID {fmt(ref['fid'], 1)}" if fid else " (FID not printed: fewer images than its stated minimum n)"
    return "\n".join(lines) + "\n\n" + reference + ".\n"


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


def meps_table(report: dict) -> str:
    """One line per autoencoder on the frontier: setting, PSNR, log10 overlap (and, per BL-AE point, the VAE curve at its PSNR)."""
    frontier = report.get("meps_frontier") or []
    matched = {id(g.point): g for g in gaps(frontier)}
    lines = [
        "| model | setting | cell | val PSNR (dB) | OVL | BC (upper bound) | outside bounds | VAE curve at this PSNR "
        "| below the VAE curve | MSE bound | measured MSE |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in frontier:
        gap = matched.get(id(r))
        if r["model"] == "VAE" or gap is None:
            curve = "" if r["model"] == "VAE" else "–"
        else:
            curve = "outside the VAE's PSNR range" if gap.matched is None else log10_text(gap.matched.log10_ovl)
        below = "" if gap is None else decades(gap.decades_below)
        bound = log10_text(r["log10_lower_bound_mse"], 2) if r["log10_lower_bound_mse"] is not None else fmt(r["lower_bound_mse"], 4)
        lines.append(
            f"| {r['model']}{' (main)' if r['main'] else ''} | {setting(r)} | {r['cell']} | {fmt(r['psnr'], 2)} | "
            f"{log10_text(r['log10_ovl'])} | {log10_text(r['log10_bc'])} | {fmt(r['outside_bounds'], 3)} | {curve} | {below} | "
            f"{bound} | {fmt(r['measured_mse'], 4)} |"
        )
    return "\n".join(lines)


def beta_text(beta) -> str:
    """``0.3`` (a VAE's β as the sweep names it); "its config's" without one."""
    return "its config's" if beta is None else f"{beta:g}"


def meps_section(report: dict) -> str:
    """The MEPS section: the frontier table and plot, the overlap against training step, which estimator gave each overlap."""
    ovl = report["ovl"]
    matched = (
        f"The VAE nearest the main BL-AE in PSNR: β = {beta_text(ovl['vae_matched_beta'])} ({fmt(ovl['vae_psnr'], 1)} dB), "
        f"OVL {log10_text(ovl['vae_log10_mean'])}; the main BL-AE: OVL {log10_text(ovl['blae_log10_mean'])}; the VAE curve "
        f"at the BL-AE's PSNR: {log10_text(ovl['vae_log10_at_blae_psnr'])}."
    )
    text = (
        "## MEPS: log10 overlap of the latent laws against reconstruction quality\n\n"
        "Mean pairwise overlap (OVL) of the latent laws, printed as 10^(its log10), computed in the log domain (a "
        "log-mean-exp over pairs: a raw overlap underflows to 0). One curve for the VAE over β, one for the BL-AE over its "
        "training noise; the verdicts compare them at "
        f"matched PSNR (the VAE curve interpolated linearly in PSNR, never extrapolated). Estimators: {ovl['estimators']}.\n\n"
        + meps_table(report)
        + f"\n\n{matched}\n\n![MEPS frontier](frontier_meps.png)\n\n"
    )
    if report.get("ovl_vs_step"):
        text += (
            f"Log10 overlap against training step of the main BL-AE and the VAE nearest the ELBO (β = 1, else the β "
            f"nearest 1), cells {', '.join(report['ovl_vs_step'])}: deterministic mappings should drive it down as training "
            "goes on.\n\n![overlap vs step](ovl_vs_step.png)\n\n"
        )
    return text


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


def membership_section(report: dict) -> str:
    """Membership inference per γ (report/membership.py): the table with its intervals and the AUC-vs-γ plot."""
    plot = "\n\n![membership inference vs gamma](membership_vs_gamma.png)" if report.get("membership") else ""
    return (
        "## Membership inference per γ\n\nEach γ-ARVM's exact per-image log-likelihood as a membership score: training "
        "images (members) against held-out images (non-members).\n\n" + membership_table(report) + plot + "\n\n"
    )


def fid_min_n(report: dict) -> str:
    """The n below which FID is not printed (`quality/fid_min_n`), as text."""
    n = report["reference"].get("fid_min_n")
    return "its stated minimum of" if n is None else f"{n:.0f}"


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
        "the first n) against held-out images, with the shipped Inception; KID with its bootstrap 95 % interval, FID only "
        f"where at least {fid_min_n(report)} images were scored (below that its bias dominates).\n\n"
        + measure_line(report)
        + "\n"
        + main_table(report)
        + "\n"
        + references_table(report)
        + "\n![memorization vs gamma](memorization_vs_gamma.png)\n\n"
        "## Generation–memorization frontier\n\nOne point per γ: memorization against the KID of the novel samples (γ with "
        f"at least {FRONTIER_MIN_NOVEL} novel samples: a memorizer leaves too few to score), on the measure the verdicts "
        "read, with the KID's 95 % interval; the dashed line is the autoencoder's reconstructions of other held-out "
        "images, the best a sampler decoding through it can score.\n\n"
        "![frontier](frontier.png)\n\n"
        + spread_table(report)
        + membership_section(report)
        + meps_section(report)
        + excess_table(report)
        + phase_table(report)
        + probes_markdown(report)
        + "## Verdicts\n\nEach computed from the numbers above by the rule stated with it.\n\n"
        + "\n".join(verdict_line(v) for v in report["verdicts"] if v["claim"] not in CHECKS)
        + "\n\n"
        + consistency_section(report)
    )

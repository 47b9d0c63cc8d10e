"""MEPS on the log scale: the frontier of log10 latent overlap against reconstruction PSNR, and the MEPS verdicts read from it.

The BL-AE's laws are mutually exclusive only in comparison: a VAE trained with a small KL weight reconstructs
well *and* overlaps little, so a fixed threshold or a fixed β cannot single the BL-AE out. The frontier puts
every autoencoder of the sweep on one plane — one curve for the VAE over its β, one for the BL-AE over its
training noise — and the verdicts compare them at matched reconstruction quality: the VAE's log10 overlap
interpolated (linearly in PSNR, between the two VAE points that bracket it, never extrapolated) at each BL-AE
point's PSNR.

Every overlap is a log10 figure (the cells' ``ovl/log10_mean``, a log-mean-exp of the pairwise log overlaps):
a raw overlap underflows to 0 long before the laws stop overlapping, so the raw ``ovl/mean`` is kept in
report.json for reference only and never read by a verdict. The functions here are pure: of the cells'
results (the rows) or of report.json (the verdicts), so tests feed them curves built to disagree.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import NamedTuple

from report.cells import cells_of, metric, role
from report.formatting import decades, fmt, log10_text
from report.verdict_record import verdict

MATCH_MARGIN_DECADES = 1.0  # the BL-AE must lie at least this far below the VAE curve at its PSNR
EXCLUSIVE_LOG10_AT_MOST = -3.0  # the main BL-AE's log10 overlap: "mutually exclusive" (the old 1e-3 rule, on log10)
OUTSIDE_BOUNDS_AT_MOST = 0.05  # share of pairs whose overlap estimate may fall outside the Bhattacharyya bracket
LOW_ESS_SHARE_AT_MOST = 0.05  # share of pairs whose importance weights may have an effective sample size below 10
BLAE_KINDS = ("autoencoder", "autoencoder_noise")
MAIN_BLAE = "blae"
SERIES_KEY = "ovl/log10_mean"

ESTIMATORS = (
    "BL-AE: closed form, the exact log overlap of two noised ±1 codes, from log_ndtr (log-erfc) for Gaussian noise, "
    "the exact log for bounded noise (exactly 0 only where the supports are disjoint), averaged over pairs as a "
    "log-mean-exp; VAE: importance sampling from the normalised geometric mean √(pq)/BC of the two posteriors "
    "(weights bounded by 1, in the log domain), each estimate checked against its Bhattacharyya bracket "
    "(`outside bounds`: the share of pairs whose estimate falls outside it; `BC`: the bracket's upper end)"
)
"""Which estimator produced each overlap (one line of report.md; docs/metrics.md validates both)."""


def frontier_row(name: str, record: dict, model: str) -> dict:
    """One autoencoder cell on the frontier: its setting (β or training noise), val PSNR, log10 overlap, the bound."""
    cell_role = role(record)
    beta = cell_role.get("beta") if cell_role.get("beta") is not None else metric(record, "vae/beta")
    noise = metric(record, "blae/noise_rate")
    return {
        "model": model,
        "beta": beta if model == "VAE" else None,
        "noise": (noise if noise is not None else cell_role.get("noise")) if model == "BL-AE" else None,
        "psnr": metric(record, "val/psnr"),
        "log10_ovl": metric(record, "ovl/log10_mean"),
        "log10_bc": metric(record, "ovl/log10_bc_mean") if model == "VAE" else None,
        "outside_bounds": metric(record, "ovl/outside_bounds"),
        "low_ess_share": metric(record, "ovl/low_ess_share") if model == "VAE" else None,
        "ovl_mean": metric(record, "ovl/mean"),  # the raw mean, kept for reference: it underflows, no verdict reads it
        "log10_lower_bound_mse": metric(record, "ovl/log10_lower_bound_mse"),
        "lower_bound_mse": metric(record, "ovl/lower_bound_mse"),
        "measured_mse": metric(record, "ovl/measured_mse"),
        "main": name == MAIN_BLAE,
        "cell": name,
    }


def frontier_rows(results: dict) -> list[dict]:
    """report.json's ``meps_frontier``: the VAE cells by increasing β, then the BL-AE cells by increasing training noise."""
    vaes = [frontier_row(name, record, "VAE") for name, record in cells_of(results, "vae")]
    blaes = [frontier_row(name, record, "BL-AE") for kind in BLAE_KINDS for name, record in cells_of(results, kind)]
    return sorted(vaes, key=lambda r: (r["beta"] is None, r["beta"] or 0.0)) + sorted(
        blaes, key=lambda r: (r["noise"] is None, r["noise"] or 0.0, not r["main"])
    )


def label(row: dict) -> str:
    """``VAE β = 0.1``, ``BL-AE noise 0.3``, ``BL-AE`` (the main cell): who a consistency check is about."""
    if row["model"] == "VAE":
        return f"VAE β = {row['beta']:g}" if row["beta"] is not None else "VAE"
    if row["main"]:
        return "BL-AE"
    return f"BL-AE noise {row['noise']:g}" if row["noise"] is not None else f"BL-AE ({row['cell']})"


def setting(row: dict) -> str:
    """``β = 0.1`` or ``noise 0.5``: the point's place on its curve."""
    value = row["beta"] if row["model"] == "VAE" else row["noise"]
    return f"{'β =' if row['model'] == 'VAE' else 'noise'} {value:g}" if value is not None else "its config's setting"


def vae_curve(frontier: list[dict]) -> list[dict]:
    """The VAE points with a PSNR and a finite log10 overlap, by increasing PSNR (the curve interpolated in PSNR)."""
    points = [r for r in frontier if r["model"] == "VAE" and r["psnr"] is not None and r["log10_ovl"] is not None]
    return sorted((r for r in points if math.isfinite(r["log10_ovl"])), key=lambda r: r["psnr"])


def blae_points(frontier: list[dict]) -> list[dict]:
    """The BL-AE points with a PSNR and a log10 overlap (-inf allowed: bounded noise with disjoint supports)."""
    return [r for r in frontier if r["model"] == "BL-AE" and r["psnr"] is not None and r["log10_ovl"] is not None]


def main_blae(frontier: list[dict]) -> dict | None:
    """The sweep's main BL-AE (cell "blae"), the one the token models read; else the first BL-AE point."""
    rows = [r for r in frontier if r["model"] == "BL-AE"]
    return next((r for r in rows if r["main"]), rows[0] if rows else None)


class Matched(NamedTuple):
    """The VAE curve's log10 overlap at a PSNR, and the two VAE points (by PSNR) it was interpolated between."""

    log10_ovl: float
    below: dict
    above: dict


def interpolate(curve: list[dict], psnr: float) -> Matched | None:
    """The VAE's log10 overlap at ``psnr``, linear in PSNR between the two nearest VAE points that bracket it;
    None outside the curve's PSNR range (no extrapolation)."""
    if not curve or not curve[0]["psnr"] <= psnr <= curve[-1]["psnr"]:
        return None
    if len(curve) == 1:
        return Matched(curve[0]["log10_ovl"], curve[0], curve[0])
    for below, above in pairwise(curve):
        if below["psnr"] <= psnr <= above["psnr"]:
            span = above["psnr"] - below["psnr"]
            t = 0.5 if span == 0 else (psnr - below["psnr"]) / span
            return Matched(below["log10_ovl"] + t * (above["log10_ovl"] - below["log10_ovl"]), below, above)
    return None  # unreachable: the range check above guarantees a bracketing pair


def psnr_range_text(curve: list[dict]) -> str:
    """``[22.0, 32.6] dB`` (the VAE's PSNR range), or why there is none."""
    return f"[{curve[0]['psnr']:.1f}, {curve[-1]['psnr']:.1f}] dB" if curve else "no VAE point with a PSNR and a log10 overlap"


class Gap(NamedTuple):
    """A BL-AE point against the VAE curve: the curve at its PSNR (None: outside the VAE's PSNR range) and how many
    decades the BL-AE lies below it (negative: above)."""

    point: dict
    matched: Matched | None
    decades_below: float | None


def gaps(frontier: list[dict]) -> list[Gap]:
    """Every BL-AE point's distance from the VAE curve at matched PSNR."""
    curve = vae_curve(frontier)
    found = []
    for point in blae_points(frontier):
        matched = interpolate(curve, point["psnr"])
        below = None if matched is None else (math.inf if point["log10_ovl"] == -math.inf else matched.log10_ovl - point["log10_ovl"])
        found.append(Gap(point, matched, below))
    return found


def gap_text(gap: Gap, curve: list[dict]) -> str:
    """``noise 0.5 (main): 29.3 dB, 10^-14.5 vs the VAE curve 10^-3.2 (between β = 0.1 and β = 1) → 11.3 decades below``."""
    point = gap.point
    head = f"{setting(point)}{' (main)' if point['main'] else ''}: {point['psnr']:.1f} dB, {log10_text(point['log10_ovl'])}"
    if gap.matched is None:
        return f"{head}, outside the VAE's PSNR range {psnr_range_text(curve)}: not measured"
    between = (
        setting(gap.matched.below)
        if gap.matched.below is gap.matched.above
        else f"between {setting(gap.matched.below)} and {setting(gap.matched.above)}"
    )
    return f"{head} vs the VAE curve {log10_text(gap.matched.log10_ovl)} ({between}) → {decades(gap.decades_below)} below"


def contrast_verdict(report: dict) -> dict:
    """MEPS contrast at matched reconstruction quality: the main BL-AE lies at least MATCH_MARGIN_DECADES below the VAE curve."""
    claim = "MEPS: at matched PSNR the BL-AE's latent laws overlap less than the VAE's posteriors"
    rule = (
        f"the main BL-AE's log10 overlap lies ≥ {MATCH_MARGIN_DECADES:g} decade(s) below the VAE curve's at the BL-AE's "
        "PSNR (the VAE's log10 overlap interpolated linearly in PSNR between its two nearest β; never extrapolated)"
    )
    frontier = report.get("meps_frontier") or []
    curve, main = vae_curve(frontier), main_blae(frontier)
    if main is None or main["psnr"] is None or main["log10_ovl"] is None:
        return verdict(claim, rule, "the main BL-AE's PSNR or log10 overlap not measured", "not measured")
    gap = next(g for g in gaps(frontier) if g.point is main)
    if gap.decades_below is None:
        return verdict(claim, rule, gap_text(gap, curve), "not measured")
    outcome = "agrees" if gap.decades_below >= MATCH_MARGIN_DECADES else "disagrees"
    return verdict(claim, rule, gap_text(gap, curve), outcome)


def exclusivity_verdict(report: dict) -> dict:
    """MEPS exclusivity: every BL-AE point lies below the VAE curve by the margin, and the main BL-AE's overlap is tiny."""
    claim = "MEPS: the BL-AE's latent laws are mutually exclusive"
    rule = (
        f"every BL-AE point (each training noise) inside the VAE's PSNR range lies ≥ {MATCH_MARGIN_DECADES:g} decade(s) "
        f"below the VAE curve at its PSNR, and the main BL-AE's log10 overlap ≤ {EXCLUSIVE_LOG10_AT_MOST:g}"
    )
    frontier = report.get("meps_frontier") or []
    curve, main, found = vae_curve(frontier), main_blae(frontier), gaps(frontier)
    if main is None or main["log10_ovl"] is None:
        return verdict(claim, rule, "the main BL-AE's log10 overlap not measured", "not measured")
    evidence = "; ".join(gap_text(g, curve) for g in found)
    distances = [g.decades_below for g in found if g.decades_below is not None]
    if not distances:
        return verdict(claim, rule, evidence or "no BL-AE point with a PSNR", "not measured")
    below = all(distance >= MATCH_MARGIN_DECADES for distance in distances)
    tiny = main["log10_ovl"] <= EXCLUSIVE_LOG10_AT_MOST
    if not tiny:
        evidence += f"; the main BL-AE's {log10_text(main['log10_ovl'])} is above 10^{EXCLUSIVE_LOG10_AT_MOST:g}"
    return verdict(claim, rule, evidence, "agrees" if below and tiny else "disagrees")


def conflict_verdict(report: dict) -> dict:
    """MEPS: over the VAE's β, the log10 overlap rises and the PSNR falls (reconstruction and KL conflict)."""
    claim = "MEPS: reconstruction and KL conflict in the VAE"
    rule = (
        "as β grows, the log10 overlap does not fall and the PSNR does not rise, and the log10 overlap at the largest β "
        "exceeds the smallest β's"
    )
    rows = [
        r
        for r in report.get("meps_frontier") or []
        if r["model"] == "VAE" and r["beta"] is not None and r["log10_ovl"] is not None and r["psnr"] is not None
    ]
    rows = sorted(rows, key=lambda r: r["beta"])
    if len(rows) < 2:
        return verdict(claim, rule, f"{len(rows)} β value(s) measured (the sweep's --vae_betas)", "not measured")
    overlaps, psnrs = [r["log10_ovl"] for r in rows], [r["psnr"] for r in rows]
    monotone = all(b >= a for a, b in pairwise(overlaps)) and all(b <= a for a, b in pairwise(psnrs))
    evidence = ", ".join(f"β = {r['beta']:g}: {log10_text(r['log10_ovl'])}, PSNR {r['psnr']:.1f} dB" for r in rows)
    return verdict(claim, rule, evidence, "agrees" if monotone and overlaps[-1] > overlaps[0] else "disagrees")


BOUND_CLAIM = "Consistency: the overlap-implied MSE bound ≤ the measured MSE"
BRACKET_CLAIM = "Consistency: the VAE's overlap estimates lie inside their Bhattacharyya bracket"
CONSISTENCY = "consistent", "inconsistent"
"""A consistency check's outcomes: it checks the measurement against a theorem, it is not a claim of the paper."""


def bound_check(row: dict) -> dict:
    """The bound the overlap implies (Fano-type, a theorem) must lie at or below the MSE measured under the same noise:
    a bound above it means the overlap or the MSE is mismeasured. Compared on log10 where the cell logged it."""
    rule = "the overlap-implied lower bound on MSE ≤ the MSE measured under the same latent noise (a check of the measurement, not a claim)"
    bound_log10, bound, measured = row["log10_lower_bound_mse"], row["lower_bound_mse"], row["measured_mse"]
    if bound_log10 is None and bound is not None and bound > 0:
        bound_log10 = math.log10(bound)
    if measured is None or (bound_log10 is None and bound is None):
        return verdict(BOUND_CLAIM, rule, "not measured", "not measured", label(row))
    if bound_log10 is None:  # a bound of exactly 0 (no log10 logged) holds under any MSE
        holds, bound_text = measured >= 0, fmt(bound, 4)
    else:
        holds = bound_log10 == -math.inf or (measured > 0 and bound_log10 <= math.log10(measured))  # a zero bound holds under any MSE
        bound_text = log10_text(bound_log10, 2)
    evidence = f"bound {bound_text} vs measured {fmt(measured, 4)}"
    return verdict(BOUND_CLAIM, rule, evidence, CONSISTENCY[0] if holds else CONSISTENCY[1], label(row))


def bracket_check(row: dict) -> dict:
    """The VAE's importance-sampling estimates checked against the Bhattacharyya bounds of each pair and by
    the effective sample size of their weights. The bracket's upper end (BC) holds by construction (every
    weight is <= 1 and Z_t* <= BC), so what can fail is the lower end and the ESS: an estimate resting on
    one or two draws can read decades low while staying inside a bracket |log BC| wide."""
    rule = (
        f"share of pairs whose overlap estimate falls below the Bhattacharyya lower bound (the upper end, BC, holds by "
        f"construction: weights ≤ 1) ≤ {OUTSIDE_BOUNDS_AT_MOST:g}, and share of pairs whose importance weights have an "
        f"effective sample size below 10 ≤ {LOW_ESS_SHARE_AT_MOST:g}"
    )
    share, low_ess = row["outside_bounds"], row.get("low_ess_share")
    if share is None:
        return verdict(BRACKET_CLAIM, rule, "not measured", "not measured", label(row))
    ess_text = "ESS not logged" if low_ess is None else f"ESS < 10 on {low_ess:.3f}"
    evidence = f"outside bounds {share:.3f}, {ess_text}; overlap {log10_text(row['log10_ovl'])}, BC {log10_text(row['log10_bc'])}"
    holds = share <= OUTSIDE_BOUNDS_AT_MOST and (low_ess is None or low_ess <= LOW_ESS_SHARE_AT_MOST)
    return verdict(BRACKET_CLAIM, rule, evidence, CONSISTENCY[0] if holds else CONSISTENCY[1], label(row))


def consistency_checks(report: dict) -> list[dict]:
    """The bound check for every autoencoder on the frontier, the bracket check for every VAE."""
    frontier = report.get("meps_frontier") or []
    return [bound_check(r) for r in frontier] + [bracket_check(r) for r in frontier if r["model"] == "VAE"]


def meps_verdicts(report: dict) -> list[dict]:
    """The three MEPS claims (contrast, exclusivity, conflict), then the consistency checks."""
    return [contrast_verdict(report), exclusivity_verdict(report), conflict_verdict(report), *consistency_checks(report)]


def nearest_vae(frontier: list[dict], psnr: float | None) -> dict | None:
    """The VAE point nearest in PSNR to ``psnr`` (the one report.json's ``ovl.vae_log10_mean`` names); the first VAE without one."""
    vaes = [r for r in frontier if r["model"] == "VAE"]
    scored = [r for r in vaes if r["psnr"] is not None and r["log10_ovl"] is not None]
    if psnr is None or not scored:
        return vaes[0] if vaes else None
    return min(scored, key=lambda r: abs(r["psnr"] - psnr))


def ovl_block(frontier: list[dict]) -> dict:
    """report.json's ``ovl``: the main BL-AE's and the PSNR-matched VAE's log10 overlaps (the raw means kept for reference)."""
    blae = main_blae(frontier) or {}
    vae = nearest_vae(frontier, blae.get("psnr")) or {}
    gap = next((g for g in gaps(frontier) if g.point is blae), None) if blae else None
    return {
        "blae_log10_mean": blae.get("log10_ovl"),
        "vae_log10_mean": vae.get("log10_ovl"),
        "vae_matched_beta": vae.get("beta"),
        "vae_matched_how": "the VAE point nearest in PSNR to the main BL-AE",
        "vae_psnr": vae.get("psnr"),
        "vae_log10_bc_mean": vae.get("log10_bc"),
        "vae_outside_bounds": vae.get("outside_bounds"),
        "vae_low_ess_share": vae.get("low_ess_share"),
        "vae_log10_at_blae_psnr": gap.matched.log10_ovl if gap is not None and gap.matched is not None else None,
        "blae_decades_below_vae": gap.decades_below if gap is not None else None,
        "blae_mean": blae.get("ovl_mean"),
        "vae_mean": vae.get("ovl_mean"),
        "blae_log10_lower_bound_mse": blae.get("log10_lower_bound_mse"),
        "blae_lower_bound_mse": blae.get("lower_bound_mse"),
        "blae_measured_mse": blae.get("measured_mse"),
        "vae_log10_lower_bound_mse": vae.get("log10_lower_bound_mse"),
        "vae_lower_bound_mse": vae.get("lower_bound_mse"),
        "vae_measured_mse": vae.get("measured_mse"),
        "estimators": ESTIMATORS,
    }


def elbo_vae(frontier: list[dict]) -> dict | None:
    """The VAE closest to the ELBO: β = 1, else the β nearest to 1 (on the log scale), else the first VAE."""
    vaes = [r for r in frontier if r["model"] == "VAE"]
    weighted = [r for r in vaes if r["beta"] is not None and r["beta"] > 0]
    if not weighted:
        return vaes[0] if vaes else None
    return min(weighted, key=lambda r: abs(math.log(r["beta"])))


def step_series(record: dict | None) -> list[list]:
    """``[[step, log10 overlap], ...]`` of a cell's results.json ``series`` (NaN points dropped), by step."""
    points = ((record or {}).get("series") or {}).get(SERIES_KEY) or []
    return sorted([[int(step), float(value)] for step, value in points if value is not None and not math.isnan(value)])


def ovl_vs_step(results: dict, frontier: list[dict]) -> dict:
    """report.json's ``ovl_vs_step``: {cell: [[step, log10 overlap], ...]} of the main BL-AE and the ELBO VAE (cells
    that logged a series)."""
    cells = [r["cell"] for r in (main_blae(frontier), elbo_vae(frontier)) if r is not None]
    return {cell: series for cell in cells if (series := step_series(results.get(cell)))}

"""The verdicts: one per claim (and per model the claim is about), each a rule, the numbers it read, an outcome.

Every verdict is computed from the report's own numbers by the rule printed next to it. A claim that the
numbers do not support reads "disagrees"; a claim about a cell whose training loss had not plateaued reads
"not fitted"; one whose figures are missing reads "not measured". `verdicts(report)` is a pure function of
report.json, so it can be fed reports that agree and reports that disagree (tests/report/test_verdicts.py).
"""

from __future__ import annotations

from itertools import pairwise

from report.cells import TOKEN_MODELS
from report.formatting import fmt

# the rules' thresholds (printed with every verdict)
GENERATES_AT_MOST = 0.05  # memorization at γ = 1: "generates"
MEMORIZER_SHARE = 0.9  # global context: at least this share of the ceiling is "a pure memorizer"
BLAE_OVERLAP_AT_MOST = 1e-3  # mutually exclusive latent laws
VAE_OVERLAP_FACTOR = 10.0  # the VAE's overlap against the BL-AE's
FRONTIER_MIN_NOVEL = 10  # KID of fewer novel samples is too noisy to draw on the frontier (it stays in the table)


def verdict(claim: str, rule: str, evidence: str, outcome: str, model: str | None = None) -> dict:
    """One verdict as report.json holds it (``model``: who the claim is about, None for a claim about the autoencoders)."""
    return {"claim": claim, "model": model, "rule": rule, "evidence": evidence, "outcome": outcome}


def model_rows(report: dict, model: str) -> list[dict]:
    """The model's main rows that have a memorization figure, in the sweep's γ order."""
    return [r for r in report["rows"] if r["model"] == model and r["mem_psnr25"] is not None]


def unfitted(rows: list[dict]) -> list[dict]:
    """The rows whose model had not fitted its training set."""
    return [r for r in rows if not r["fitted"]]


def not_fitted_evidence(rows: list[dict]) -> str:
    """Why each row is not fitted, with its training nll (the evidence of a "not fitted" verdict)."""
    return "; ".join(f"γ = {r['gamma']}: {r['fit_note']}, train nll {fmt(r['train_nll_bits'], 3)} bits/token" for r in rows)


def rate_text(row: dict) -> str:
    """``γ = 2: 0.400 [0.335, 0.469]``: a row's memorization with its 95 % interval."""
    return f"γ = {row['gamma']}: {row['mem_psnr25']:.3f} [{row['mem_psnr25_low']:.3f}, {row['mem_psnr25_high']:.3f}]"


def generation_verdict(report: dict, model: str) -> dict:
    """Small γ generates: memorization at γ = 1 at most GENERATES_AT_MOST."""
    claim, rule = "Small γ generates", f"mem_psnr25 at γ = 1 ≤ {GENERATES_AT_MOST}"
    row = next((r for r in model_rows(report, model) if r["gamma"] == 1), None)
    if row is None:
        return verdict(claim, rule, "γ = 1 not measured", "not measured", model)
    if not row["fitted"]:
        return verdict(claim, rule, not_fitted_evidence([row]), "not fitted", model)
    outcome = "agrees" if row["mem_psnr25"] <= GENERATES_AT_MOST else "disagrees"
    return verdict(claim, rule, rate_text(row), outcome, model)


def trend_verdict(report: dict, model: str) -> dict:
    """Memorization rises with γ: no significant drop between two γ, and a significant rise from the smallest γ to the largest."""
    claim = "Memorization rises with γ"
    rule = (
        "no γ's rate lies below a smaller γ's beyond their 95 % Wilson intervals (the intervals are disjoint), "
        "and the largest γ lies above the smallest beyond them"
    )
    rows = model_rows(report, model)
    if len(rows) < 2:
        return verdict(claim, rule, f"{len(rows)} γ value(s) measured", "not measured", model)
    if unfitted(rows):
        return verdict(claim, rule, not_fitted_evidence(unfitted(rows)), "not fitted", model)
    drops = [(a["gamma"], b["gamma"]) for i, a in enumerate(rows) for b in rows[i + 1 :] if b["mem_psnr25_high"] < a["mem_psnr25_low"]]
    rises = rows[-1]["mem_psnr25_low"] > rows[0]["mem_psnr25_high"]
    evidence = ", ".join(rate_text(r) for r in rows)
    if drops:
        evidence += "; falls significantly between γ = " + ", ".join(f"{a} → {b}" for a, b in drops)
    elif not rises:
        evidence += "; the largest γ is not significantly above the smallest"
    return verdict(claim, rule, evidence, "agrees" if rises and not drops else "disagrees", model)


def memorizer_verdict(report: dict, model: str) -> dict:
    """Global context is a pure memorizer: at least MEMORIZER_SHARE of the ceiling at global γ."""
    claim, rule = "Global context is a pure memorizer", f"mem_psnr25 at global γ ≥ {MEMORIZER_SHARE} × the ceiling"
    row = next((r for r in model_rows(report, model) if r["gamma"] == "global"), None)
    ceiling = report["ceiling"].get("mem_psnr25")
    if row is None or not ceiling:
        return verdict(claim, rule, "global γ or the ceiling not measured", "not measured", model)
    if not row["fitted"]:
        return verdict(claim, rule, not_fitted_evidence([row]), "not fitted", model)
    share = row["mem_psnr25"] / ceiling
    evidence = (
        f"{rate_text(row)}, {share:.0%} of the ceiling {ceiling:.3f} (BL-AE reconstructions of the training "
        f"images); exact latent copies {fmt(row['latent_copy'], 3)}"
    )
    return verdict(claim, rule, evidence, "agrees" if share >= MEMORIZER_SHARE else "disagrees", model)


def exclusivity_verdict(report: dict) -> dict:
    """MEPS: the BL-AE's latent laws barely overlap (at most BLAE_OVERLAP_AT_MOST)."""
    claim = "MEPS: the BL-AE's latent laws are mutually exclusive"
    rule = f"mean pairwise overlap of the law the BL-AE trains with (tanh latent + its noise) ≤ {BLAE_OVERLAP_AT_MOST:g}"
    value = report["ovl"]["blae_mean"]
    if value is None:
        return verdict(claim, rule, "BL-AE overlap not measured", "not measured")
    return verdict(claim, rule, f"BL-AE ovl/mean {fmt(value, 3)}", "agrees" if value <= BLAE_OVERLAP_AT_MOST else "disagrees")


def contrast_verdict(report: dict) -> dict:
    """MEPS: the headline VAE's posteriors overlap at least VAE_OVERLAP_FACTOR times the BL-AE's laws."""
    ovl = report["ovl"]
    beta = "β = 1" if ovl.get("vae_beta") == 1 else f"β = {ovl['vae_beta']}" if ovl.get("vae_beta") is not None else "its config's β"
    claim = "MEPS: the VAE's posteriors overlap, the BL-AE's laws do not"
    rule = f"VAE ({beta}) ovl/mean ≥ {VAE_OVERLAP_FACTOR:g} × the BL-AE's (and > 0)"
    blae, vae = ovl["blae_mean"], ovl["vae_mean"]
    if blae is None or vae is None:
        return verdict(claim, rule, "an overlap was not measured", "not measured")
    agrees = vae > 0 and vae >= VAE_OVERLAP_FACTOR * blae
    evidence = f"VAE {fmt(vae, 3)} at PSNR {fmt(ovl.get('vae_psnr'), 1)} dB vs BL-AE {fmt(blae, 3)}"
    return verdict(claim, rule, evidence, "agrees" if agrees else "disagrees")


def conflict_verdict(report: dict) -> dict:
    """MEPS: over the VAEs' β, the overlap rises and the PSNR falls (reconstruction and KL conflict)."""
    claim = "MEPS: reconstruction and KL conflict in the VAE"
    rule = "as β grows, the overlap does not fall and the PSNR does not rise, and the overlap at the largest β exceeds the smallest β's"
    rows = [r for r in report.get("vae_betas", []) if r["beta"] is not None and r["ovl_mean"] is not None and r["psnr"] is not None]
    if len(rows) < 2:
        evidence = f"{len(rows)} β value(s) measured (the sweep's --vae_betas, e.g. [0.1, 1, 5])"
        return verdict(claim, rule, evidence, "not measured")
    overlaps, psnrs = [r["ovl_mean"] for r in rows], [r["psnr"] for r in rows]
    monotone = all(b >= a for a, b in pairwise(overlaps)) and all(b <= a for a, b in pairwise(psnrs))
    evidence = ", ".join(f"β = {r['beta']:g}: overlap {fmt(r['ovl_mean'], 3)}, PSNR {r['psnr']:.1f} dB" for r in rows)
    return verdict(claim, rule, evidence, "agrees" if monotone and overlaps[-1] > overlaps[0] else "disagrees")


def bound_verdicts(report: dict) -> list[dict]:
    """MEPS: for the BL-AE and every VAE, the overlap-implied MSE bound lies at or below the measured MSE."""
    claim, rule = (
        "MEPS: overlap bounds the reconstruction error",
        "the overlap-implied lower bound on MSE ≤ the MSE measured under the same latent noise",
    )
    laws = [("BL-AE", report["ovl"]["blae_lower_bound_mse"], report["ovl"]["blae_measured_mse"])]
    laws += [(f"VAE β = {fmt(r['beta'])}", r["lower_bound_mse"], r["measured_mse"]) for r in report.get("vae_betas", [])]
    lines = []
    for name, bound, measured in laws:
        if bound is None or measured is None:
            lines.append(verdict(claim, rule, f"{name}: not measured", "not measured", name))
            continue
        slack = f" (measured / bound = {measured / bound:.3g})" if bound > 0 else ""
        lines.append(
            verdict(
                claim,
                rule,
                f"{name}: bound {fmt(bound, 4)} vs measured {fmt(measured, 4)}{slack}",
                "agrees" if bound <= measured else "disagrees",
                name,
            )
        )
    return lines


def local_dependence_verdict(report: dict) -> dict:
    """LDH: the training tokens' MI excess over the null is positive at d = 1 and falls below it at the largest d."""
    claim = "LDH: dependence between latent tokens is local"
    rule = (
        "MI in excess of a permutation null (same two positions, different images) is significantly positive at d = 1 "
        "(95 % interval above 0) and the excess at the largest distance lies below it (its upper end < d = 1's lower end)"
    )
    curve = report.get("mi_excess", {}).get("data") or []
    if len(curve) < 2 or any(p["low"] is None or p["high"] is None for p in curve):
        return verdict(claim, rule, "MI excess over the permutation null not measured", "not measured")
    first, last = curve[0], curve[-1]
    evidence = ", ".join(f"d = {p['d']}: {p['excess']:.3f} [{p['low']:.3f}, {p['high']:.3f}]" for p in curve) + " bits"
    return verdict(claim, rule, evidence, "agrees" if first["low"] > 0 and last["high"] < first["low"] else "disagrees")


def verdicts(report: dict) -> list[dict]:
    """Every verdict of the report: the autoencoders' claims, then each token model's three claims."""
    lines = [
        exclusivity_verdict(report),
        contrast_verdict(report),
        conflict_verdict(report),
        *bound_verdicts(report),
        local_dependence_verdict(report),
    ]
    for model in TOKEN_MODELS:
        lines += [generation_verdict(report, model), trend_verdict(report, model), memorizer_verdict(report, model)]
    return lines

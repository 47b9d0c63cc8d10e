"""The sweep's report: report.json, report.md (tables, plots, one verdict per claim) and a W&B summary run.

Every verdict is computed from the report's own numbers by the rule printed next to it, for each
model that the claim is about. A claim that the numbers do not support reads "disagrees"; a claim
about a cell whose training loss had not plateaued reads "not fitted"; one whose figures are
missing reads "not measured". `verdicts(report)` is a pure function of report.json, so it can be
fed reports that agree and reports that disagree (tests/sweep/test_reporting.py).
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from networks.gamma_mask import gamma_name  # noqa: E402
from report_charts import native_charts  # noqa: E402
from reporting_probes import PROBE_PLOTS, probe_sections, probe_tables, probes_markdown, write_probe_plots  # noqa: E402

MODELS = ("kernel", "neural")
RATE_KEYS = {"mem_psnr25": "mem/psnr25_rate", "mem_ratio13": "mem/ratio13_rate", "nn_psnr_median": "mem/nn_psnr_median"}
DEFAULT_NUM_SAMPLES = 200
Z95 = 1.959964  # two-sided 95 % normal quantile

# the rules' thresholds (printed with every verdict)
GENERATES_AT_MOST = 0.05  # memorization at γ = 1: "generates"
MEMORIZER_SHARE = 0.9  # global context: at least this share of the ceiling is "a pure memorizer"
BLAE_OVERLAP_AT_MOST = 1e-3  # mutually exclusive latent laws
VAE_OVERLAP_FACTOR = 10.0  # the VAE's overlap against the BL-AE's
FRONTIER_MIN_NOVEL = 10  # KID of fewer novel samples is too noisy to draw on the frontier (it stays in the table)


# ------------------------------------------------------------------------------------------------
# numbers


def metric(record: dict | None, key: str) -> float | None:
    value = (record or {}).get("metrics", {}).get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def wilson_interval(rate: float, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a rate measured on n samples (good at rates near 0 and 1)."""
    centre = (rate + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(rate * (1 - rate) / n + Z95**2 / (4 * n**2)) / (1 + Z95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def role(record: dict) -> dict:
    return record.get("role") or {}


def cells_of(results: dict, kind: str) -> list[tuple[str, dict]]:
    return [(name, record) for name, record in results.items() if role(record).get("kind") == kind]


def fit_status(record: dict, model: str) -> tuple[bool, str]:
    """(fitted, why): the kernel model has nothing to train; a neural cell must have plateaued."""
    if model == "kernel":
        return True, "nothing to train (the estimator is its training set)"
    plateaued = metric(record, "fit/plateaued")
    if plateaued is None:
        return False, "no stopping rule recorded a plateau of the training loss"
    if plateaued < 1:
        return False, f"the budget ended at step {record.get('global_step')} before the training loss plateaued"
    return True, f"training loss plateaued at step {record.get('global_step')}"


def samples_from(record: dict, model: str) -> tuple[bool, str]:
    """(final, text): were the samples drawn from the model at the end of its fit?"""
    if model == "kernel":
        return True, "the estimator (no training)"
    step, final = metric(record, "mem/step"), record.get("global_step")
    if step is None:
        return False, "not measured"
    if final is not None and int(step) == int(final):
        return True, f"final model (step {int(step)})"
    return False, f"step {int(step)}, not the final model (step {final})"


def token_row(record: dict, model: str, gamma) -> dict:
    rate, n = metric(record, "mem/psnr25_rate"), int(metric(record, "mem/num_samples") or DEFAULT_NUM_SAMPLES)
    low, high = wilson_interval(rate, n) if rate is not None else (None, None)
    fitted, fit_note = fit_status(record, model)
    final, source = samples_from(record, model)
    return {
        "model": model,
        "gamma": gamma,
        **{name: metric(record, key) for name, key in RATE_KEYS.items()},
        "mem_psnr25_low": low, "mem_psnr25_high": high, "num_samples": n,
        "latent_copy": metric(record, "mem/latent_copy_rate"),
        "latent_near_copy": metric(record, "mem/latent_near_copy_rate"),
        "train_nll_bits": metric(record, "train/nll_bits"),
        "nll_bits": metric(record, "val/nll_bits"),
        "kid_novel": metric(record, "quality/kid_novel"),
        "fid_novel": metric(record, "quality/fid_novel"),
        "novel_scored": metric(record, "quality/novel_scored"),
        "train_size": metric(record, "mem/train_size"),
        "fitted": fitted, "fit_note": fit_note, "samples_final": final, "samples_from": source,
        "steps": record.get("global_step"), "seed": role(record).get("seed"),
        "seconds": record.get("seconds"), "cpu_s": record.get("cpu_s"),
    }


def report_rows(results: dict, gammas: list) -> list[dict]:
    rows = []
    for gamma in gammas:
        for model in MODELS:
            record = results.get(f"{model}-gamma-{gamma_name(gamma)}")
            if record is not None:
                rows.append(token_row(record, model, gamma if gamma is not None else "global"))
    return rows


def reference_block(record: dict | None, prefix: str) -> dict:
    return {name: metric(record, key.replace("mem/", f"mem/{prefix}_")) for name, key in RATE_KEYS.items()}


def first_token_record(results: dict, key: str | None = None) -> dict | None:
    token_cells = [r for _, r in cells_of(results, "gamma")]
    return next((r for r in token_cells if key is None or metric(r, key) is not None), token_cells[0] if token_cells else None)


def autoencoder_block(record: dict | None) -> dict:
    return {"psnr": metric(record, "val/psnr"), "ovl_mean": metric(record, "ovl/mean"),
            "lower_bound_mse": metric(record, "ovl/lower_bound_mse"), "measured_mse": metric(record, "ovl/measured_mse")}


def vae_rows(results: dict) -> list[dict]:
    rows = [{"beta": role(record).get("beta"), "cell": name, **autoencoder_block(record)} for name, record in cells_of(results, "vae")]
    return sorted(rows, key=lambda r: (r["beta"] is None, r["beta"] or 0.0))


def headline_vae(vaes: list[dict]) -> dict | None:
    """The VAE of the MEPS contrast: β = 1 (the ELBO), else the config's own, else the first."""
    return next((v for v in vaes if v["beta"] == 1), next((v for v in vaes if v["beta"] is None), vaes[0] if vaes else None))


def excess_curve(record: dict | None, source: str) -> list[dict]:
    """MI excess over the permutation null with its 95 % interval, d = 1.. (bits); [] when not logged."""
    points = []
    for d in range(1, 17):
        excess = metric(record, f"ldh/{source}_token_mi_excess_d{d}")
        if excess is None:
            break
        points.append({"d": d, "excess": excess, "low": metric(record, f"ldh/{source}_token_mi_excess_lo_d{d}"),
                       "high": metric(record, f"ldh/{source}_token_mi_excess_hi_d{d}")})
    return points


def raw_mi_curve(record: dict | None, source: str) -> list[list]:
    points = []
    for d in range(1, 17):
        value = metric(record, f"ldh/{source}_token_mi_d{d}")
        if value is None:
            value = metric(record, f"ldh/{source}_bit_mi_d{d}")
        if value is None:
            break
        points.append([d, value])
    return points


def mi_block(results: dict, gammas: list) -> tuple[dict, dict]:
    curves, excess = {}, {}
    for gamma in gammas:
        for model in MODELS:
            record = results.get(f"{model}-gamma-{gamma_name(gamma)}")
            if record is not None:
                curves.setdefault("data", raw_mi_curve(record, "data"))
                curves[f"{model}-{gamma_name(gamma)}"] = raw_mi_curve(record, "samples")
                if not excess.get("data"):
                    excess["data"] = excess_curve(record, "data")
                excess[f"{model}-{gamma_name(gamma)}"] = excess_curve(record, "samples")
    if not excess.get("data"):  # the BL-AE stage measures the training latents too
        excess["data"] = excess_curve(results.get("blae"), "data")
    return curves, excess


def seed_spread(results: dict) -> list[dict]:
    """Per (model, γ) run at several seeds: the main cell and its spread cells."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for name, record in cells_of(results, "spread"):
        key = (role(record)["model"], role(record)["gamma"])
        groups.setdefault(key, [])
        groups[key].append(token_row(record, *key))
    spreads = []
    for (model, gamma), extra in groups.items():
        main = results.get(f"{model}-gamma-{gamma}")
        rows = ([token_row(main, model, gamma)] if main is not None else []) + extra
        rates = [r["mem_psnr25"] for r in rows if r["mem_psnr25"] is not None]
        mean = sum(rates) / len(rates) if rates else None
        low, high = wilson_interval(mean, rows[0]["num_samples"]) if mean is not None else (None, None)
        spreads.append({
            "model": model, "gamma": gamma, "seeds": [r["seed"] for r in rows],
            "mem_psnr25": [r["mem_psnr25"] for r in rows], "train_nll_bits": [r["train_nll_bits"] for r in rows],
            "fitted": [r["fitted"] for r in rows], "mean": mean,
            "range": max(rates) - min(rates) if rates else None,
            "sampling_interval_width": None if mean is None else high - low,
        })
    return spreads


def phase_rows(results: dict) -> list[dict]:
    rows = []
    for name, record in cells_of(results, "phase"):
        model, gamma = role(record)["model"], role(record)["gamma"]
        row = token_row(record, model, gamma if gamma == "global" else int(gamma))
        rows.append({key: row[key] for key in ("model", "gamma", "train_size", "mem_psnr25", "mem_psnr25_low", "mem_psnr25_high",
                                               "mem_ratio13", "latent_copy", "nn_psnr_median", "train_nll_bits", "nll_bits",
                                               "fitted", "num_samples")}
                    | {"floor_mem_psnr25": metric(record, "mem/floor_psnr25_rate"),
                       "ceiling_mem_psnr25": metric(record, "mem/ceiling_psnr25_rate"), "cell": role(record).get("same_as", name)})
    order = {g: i for i, g in enumerate(dict.fromkeys(r["gamma"] for r in rows))}
    return sorted(rows, key=lambda r: (r["model"], order[r["gamma"]], r["train_size"] or 0))


def build_report(results: dict, gammas: list, costs: dict | None = None) -> dict:
    first = first_token_record(results)
    quality = first_token_record(results, "quality/reference_kid")
    vaes = vae_rows(results)
    blae, vae = autoencoder_block(results.get("blae")), headline_vae(vaes) or {}
    curves, excess = mi_block(results, gammas)
    costs = dict(costs or {})
    costs["cells_cpu_s"] = sum(r.get("cpu_s") or 0 for n, r in results.items() if not role(r).get("same_as"))
    report = {
        "rows": report_rows(results, gammas),
        "floor": reference_block(first, "floor"),
        "ceiling": reference_block(first, "ceiling"),
        "reference": {"kid": metric(quality, "quality/reference_kid"), "fid": metric(quality, "quality/reference_fid")},
        "blae": {"psnr": blae["psnr"], "bin_rate": metric(results.get("blae"), "val/bin_rate")},
        "ovl": {"blae_mean": blae["ovl_mean"], "vae_mean": vae.get("ovl_mean"), "vae_beta": vae.get("beta"),
                "blae_lower_bound_mse": blae["lower_bound_mse"], "blae_measured_mse": blae["measured_mse"],
                "vae_lower_bound_mse": vae.get("lower_bound_mse"), "vae_measured_mse": vae.get("measured_mse"),
                "vae_psnr": vae.get("psnr")},
        "vae_betas": vaes,
        "mi": curves,
        "mi_excess": excess,
        "seed_spread": seed_spread(results),
        "memorization_vs_train_size": phase_rows(results),
        **probe_sections(results),
        "wall_s": costs.get("wall_s"),
        "costs": costs,
    }
    report["verdicts"] = verdicts(report)
    return report


# ------------------------------------------------------------------------------------------------
# verdicts: a rule, the numbers, an outcome


def fmt(value, digits: int = 2) -> str:
    """Fixed point; tiny non-zero values (overlaps) in scientific notation so they do not read as 0."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.2e}" if value != 0 and abs(value) < 5 * 10 ** -(digits + 1) else f"{value:.{digits}f}"


def verdict(claim: str, rule: str, evidence: str, outcome: str, model: str | None = None) -> dict:
    return {"claim": claim, "model": model, "rule": rule, "evidence": evidence, "outcome": outcome}


def model_rows(report: dict, model: str) -> list[dict]:
    return [r for r in report["rows"] if r["model"] == model and r["mem_psnr25"] is not None]


def unfitted(rows: list[dict]) -> list[dict]:
    return [r for r in rows if not r["fitted"]]


def not_fitted_evidence(rows: list[dict]) -> str:
    return "; ".join(f"γ = {r['gamma']}: {r['fit_note']}, train nll {fmt(r['train_nll_bits'], 3)} bits/token" for r in rows)


def rate_text(row: dict) -> str:
    return f"γ = {row['gamma']}: {row['mem_psnr25']:.3f} [{row['mem_psnr25_low']:.3f}, {row['mem_psnr25_high']:.3f}]"


def generation_verdict(report: dict, model: str) -> dict:
    claim, rule = "Small γ generates", f"mem_psnr25 at γ = 1 ≤ {GENERATES_AT_MOST}"
    row = next((r for r in model_rows(report, model) if r["gamma"] == 1), None)
    if row is None:
        return verdict(claim, rule, "γ = 1 not measured", "not measured", model)
    if not row["fitted"]:
        return verdict(claim, rule, not_fitted_evidence([row]), "not fitted", model)
    outcome = "agrees" if row["mem_psnr25"] <= GENERATES_AT_MOST else "disagrees"
    return verdict(claim, rule, rate_text(row), outcome, model)


def trend_verdict(report: dict, model: str) -> dict:
    claim = "Memorization rises with γ"
    rule = ("no γ's rate lies below a smaller γ's beyond their 95 % Wilson intervals (the intervals are disjoint), "
            "and the largest γ lies above the smallest beyond them")
    rows = model_rows(report, model)
    if len(rows) < 2:
        return verdict(claim, rule, f"{len(rows)} γ value(s) measured", "not measured", model)
    if unfitted(rows):
        return verdict(claim, rule, not_fitted_evidence(unfitted(rows)), "not fitted", model)
    drops = [(a["gamma"], b["gamma"]) for i, a in enumerate(rows) for b in rows[i + 1:] if b["mem_psnr25_high"] < a["mem_psnr25_low"]]
    rises = rows[-1]["mem_psnr25_low"] > rows[0]["mem_psnr25_high"]
    evidence = ", ".join(rate_text(r) for r in rows)
    if drops:
        evidence += "; falls significantly between γ = " + ", ".join(f"{a} → {b}" for a, b in drops)
    elif not rises:
        evidence += "; the largest γ is not significantly above the smallest"
    return verdict(claim, rule, evidence, "agrees" if rises and not drops else "disagrees", model)


def memorizer_verdict(report: dict, model: str) -> dict:
    claim, rule = "Global context is a pure memorizer", f"mem_psnr25 at global γ ≥ {MEMORIZER_SHARE} × the ceiling"
    row = next((r for r in model_rows(report, model) if r["gamma"] == "global"), None)
    ceiling = report["ceiling"].get("mem_psnr25")
    if row is None or not ceiling:
        return verdict(claim, rule, "global γ or the ceiling not measured", "not measured", model)
    if not row["fitted"]:
        return verdict(claim, rule, not_fitted_evidence([row]), "not fitted", model)
    share = row["mem_psnr25"] / ceiling
    evidence = (f"{rate_text(row)}, {share:.0%} of the ceiling {ceiling:.3f} (BL-AE reconstructions of the training "
                f"images); exact latent copies {fmt(row['latent_copy'], 3)}")
    return verdict(claim, rule, evidence, "agrees" if share >= MEMORIZER_SHARE else "disagrees", model)


def exclusivity_verdict(report: dict) -> dict:
    claim = "MEPS: the BL-AE's latent laws are mutually exclusive"
    rule = f"mean pairwise overlap of the law the BL-AE trains with (tanh latent + its noise) ≤ {BLAE_OVERLAP_AT_MOST:g}"
    value = report["ovl"]["blae_mean"]
    if value is None:
        return verdict(claim, rule, "BL-AE overlap not measured", "not measured")
    return verdict(claim, rule, f"BL-AE ovl/mean {fmt(value, 3)}", "agrees" if value <= BLAE_OVERLAP_AT_MOST else "disagrees")


def contrast_verdict(report: dict) -> dict:
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
    claim = "MEPS: reconstruction and KL conflict in the VAE"
    rule = "as β grows, the overlap does not fall and the PSNR does not rise, and the overlap at the largest β exceeds the smallest β's"
    rows = [r for r in report.get("vae_betas", []) if r["beta"] is not None and r["ovl_mean"] is not None and r["psnr"] is not None]
    if len(rows) < 2:
        evidence = f"{len(rows)} β value(s) measured (the sweep's --vae_betas, e.g. [0.1, 1, 5])"
        return verdict(claim, rule, evidence, "not measured")
    overlaps, psnrs = [r["ovl_mean"] for r in rows], [r["psnr"] for r in rows]
    monotone = all(b >= a for a, b in zip(overlaps, overlaps[1:])) and all(b <= a for a, b in zip(psnrs, psnrs[1:]))
    evidence = ", ".join(f"β = {r['beta']:g}: overlap {fmt(r['ovl_mean'], 3)}, PSNR {r['psnr']:.1f} dB" for r in rows)
    return verdict(claim, rule, evidence, "agrees" if monotone and overlaps[-1] > overlaps[0] else "disagrees")


def bound_verdicts(report: dict) -> list[dict]:
    claim, rule = "MEPS: overlap bounds the reconstruction error", "the overlap-implied lower bound on MSE ≤ the MSE measured under the same latent noise"
    laws = [("BL-AE", report["ovl"]["blae_lower_bound_mse"], report["ovl"]["blae_measured_mse"])]
    laws += [(f"VAE β = {fmt(r['beta'])}", r["lower_bound_mse"], r["measured_mse"]) for r in report.get("vae_betas", [])]
    lines = []
    for name, bound, measured in laws:
        if bound is None or measured is None:
            lines.append(verdict(claim, rule, f"{name}: not measured", "not measured", name))
            continue
        slack = f" (measured / bound = {measured / bound:.3g})" if bound > 0 else ""
        lines.append(verdict(claim, rule, f"{name}: bound {fmt(bound, 4)} vs measured {fmt(measured, 4)}{slack}",
                             "agrees" if bound <= measured else "disagrees", name))
    return lines


def local_dependence_verdict(report: dict) -> dict:
    claim = "LDH: dependence between latent tokens is local"
    rule = ("MI in excess of a permutation null (same two positions, different images) is significantly positive at d = 1 "
            "(95 % interval above 0) and the excess at the largest distance lies below it (its upper end < d = 1's lower end)")
    curve = report.get("mi_excess", {}).get("data") or []
    if len(curve) < 2 or any(p["low"] is None or p["high"] is None for p in curve):
        return verdict(claim, rule, "MI excess over the permutation null not measured", "not measured")
    first, last = curve[0], curve[-1]
    evidence = ", ".join(f"d = {p['d']}: {p['excess']:.3f} [{p['low']:.3f}, {p['high']:.3f}]" for p in curve) + " bits"
    return verdict(claim, rule, evidence, "agrees" if first["low"] > 0 and last["high"] < first["low"] else "disagrees")


def verdicts(report: dict) -> list[dict]:
    lines = [exclusivity_verdict(report), contrast_verdict(report), conflict_verdict(report), *bound_verdicts(report),
             local_dependence_verdict(report)]
    for model in MODELS:
        lines += [generation_verdict(report, model), trend_verdict(report, model), memorizer_verdict(report, model)]
    return lines


# ------------------------------------------------------------------------------------------------
# report.md


def verdict_line(v: dict) -> str:
    who = f" ({v['model']})" if v["model"] else ""
    return f"- **{v['claim']}**{who} — rule: {v['rule']}. Numbers: {v['evidence']}. → **{v['outcome']}**"


def main_table(report: dict) -> str:
    header = ("| model | γ | fitted | samples from | mem_psnr25 [95 % CI] | latent copy | NN-PSNR median (dB) | train nll | val nll "
              "| KID novel (n) | FID novel | s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['model']} | {r['gamma']} | {'yes' if r['fitted'] else 'NOT FITTED'} | {r['samples_from']} | "
        f"{fmt(r['mem_psnr25'], 3)} [{fmt(r['mem_psnr25_low'], 3)}, {fmt(r['mem_psnr25_high'], 3)}] | {fmt(r['latent_copy'], 3)} | "
        f"{fmt(r['nn_psnr_median'], 1)} | {fmt(r['train_nll_bits'], 3)} | {fmt(r['nll_bits'], 3)} | "
        f"{fmt(r['kid_novel'], 4)} ({int(r['novel_scored'] or 0)}) | {fmt(r['fid_novel'], 1)} | {r['seconds'] or 0:.0f} |\n"
        for r in report["rows"]
    )
    return header + body


def references_table(report: dict) -> str:
    floor, ceiling, ref = report["floor"], report["ceiling"], report["reference"]
    return (
        "| reference | mem_psnr25 | mem_ratio13 | NN-PSNR median (dB) | KID | FID |\n|---|---|---|---|---|---|\n"
        f"| floor (held-out images vs train) | {fmt(floor['mem_psnr25'], 3)} | {fmt(floor['mem_ratio13'], 3)} | {fmt(floor['nn_psnr_median'], 1)} | | |\n"
        f"| ceiling (BL-AE reconstructions of train) | {fmt(ceiling['mem_psnr25'], 3)} | {fmt(ceiling['mem_ratio13'], 3)} | {fmt(ceiling['nn_psnr_median'], 1)} | | |\n"
        f"| BL-AE reconstructions of held-out vs held-out | | | | {fmt(ref['kid'], 4)} | {fmt(ref['fid'], 1)} |\n"
    )


def spread_table(report: dict) -> str:
    if not report["seed_spread"]:
        return ""
    lines = ["| model | γ | seeds | mem_psnr25 per seed | train nll per seed | range | 95 % sampling interval width |",
             "|---|---|---|---|---|---|---|"]
    for s in report["seed_spread"]:
        lines.append(f"| {s['model']} | {s['gamma']} | {', '.join('config' if x is None else str(x) for x in s['seeds'])} | "
                     f"{', '.join(fmt(x, 3) for x in s['mem_psnr25'])} | {', '.join(fmt(x, 3) for x in s['train_nll_bits'])} | "
                     f"{fmt(s['range'], 3)} | {fmt(s['sampling_interval_width'], 3)} |")
    return ("## Seed-to-seed spread\n\nThe same cell trained from other seeds (same samples' seeds); the range is read against "
            "the width of the 95 % interval that sampling alone gives at that rate.\n\n" + "\n".join(lines) + "\n\n")


def vae_table(report: dict) -> str:
    rows = [("BL-AE", report["blae"]["psnr"], report["ovl"]["blae_mean"], report["ovl"]["blae_lower_bound_mse"], report["ovl"]["blae_measured_mse"])]
    rows += [(f"VAE β = {fmt(r['beta'])}" if r["beta"] is not None else "VAE", r["psnr"], r["ovl_mean"], r["lower_bound_mse"], r["measured_mse"])
             for r in report["vae_betas"]]
    lines = ["| model | val PSNR (dB) | ovl/mean | MSE lower bound | measured MSE |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {fmt(psnr, 2)} | {fmt(ovl, 3)} | {fmt(bound, 4)} | {fmt(mse, 4)} |" for name, psnr, ovl, bound, mse in rows]
    return "## MEPS: overlap of the latent laws\n\n" + "\n".join(lines) + "\n\n"


def phase_table(report: dict) -> str:
    rows = report["memorization_vs_train_size"]
    if not rows:
        return ""
    sizes = sorted({r["train_size"] for r in rows if r["train_size"] is not None})
    lines = ["| model | γ | " + " | ".join(f"N = {int(n)}" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for model in dict.fromkeys(r["model"] for r in rows):
        for gamma in dict.fromkeys(r["gamma"] for r in rows if r["model"] == model):
            cells = {r["train_size"]: r for r in rows if r["model"] == model and r["gamma"] == gamma}
            values = [f"{fmt(cells[n]['mem_psnr25'], 3)}{'' if cells[n]['fitted'] else ' (not fitted)'}" if n in cells else "–" for n in sizes]
            lines.append(f"| {model} | {gamma} | " + " | ".join(values) + " |")
    floors = {r["train_size"]: r["floor_mem_psnr25"] for r in rows}
    lines.append("| floor (held-out) | | " + " | ".join(fmt(floors.get(n), 3) for n in sizes) + " |")
    return ("## Phase diagram: memorization over γ × training-set size\n\nmem_psnr25 of each (γ, N) cell: N training images, a "
            "seeded random subset (each smaller subset lies inside the larger ones).\n\n" + "\n".join(lines) + "\n\n![phase diagram](phase_diagram.png)\n\n")


def excess_table(report: dict) -> str:
    curve = report["mi_excess"].get("data") or []
    if not curve:
        return ""
    lines = ["| d | MI excess over the null, training tokens (bits) [95 %] |", "|---|---|"]
    lines += [f"| {p['d']} | {fmt(p['excess'], 3)} [{fmt(p['low'], 3)}, {fmt(p['high'], 3)}] |" for p in curve]
    return "## LDH: token dependence vs distance\n\n" + "\n".join(lines) + "\n\n"


def markdown(report: dict) -> str:
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
        + main_table(report) + "\n" + references_table(report)
        + "\n![memorization vs gamma](memorization_vs_gamma.png)\n\n"
        "## Generation–memorization frontier\n\nOne point per γ: memorization against the KID of the novel samples (γ with "
        f"at least {FRONTIER_MIN_NOVEL} novel samples: a memorizer leaves too few to score); the dashed line is the BL-AE's "
        "reconstructions of held-out images, the best any model scores through this decoder.\n\n"
        "![frontier](frontier.png)\n\n"
        + spread_table(report) + vae_table(report) + excess_table(report) + phase_table(report) + probes_markdown(report)
        + "## Verdicts\n\nEach computed from the numbers above by the rule stated with it.\n\n"
        + "\n".join(verdict_line(v) for v in report["verdicts"]) + "\n"
    )


# ------------------------------------------------------------------------------------------------
# plots


def plot_memorization(report: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, marker in zip(MODELS, "os"):
        rows = model_rows(report, model)
        if rows:
            labels = [str(r["gamma"]) for r in rows]
            rates = [r["mem_psnr25"] for r in rows]
            errors = [[max(0.0, r["mem_psnr25"] - r["mem_psnr25_low"]) for r in rows],
                      [max(0.0, r["mem_psnr25_high"] - r["mem_psnr25"]) for r in rows]]
            ax.errorbar(labels, rates, yerr=errors, marker=marker, capsize=3, label=f"{model} γ-ARVM")
    floor, ceiling = report["floor"]["mem_psnr25"], report["ceiling"]["mem_psnr25"]
    if floor is not None:
        ax.axhspan(0, max(floor, 0.005), color="grey", alpha=0.3, label=f"floor (held-out) {floor:.2f}")
    if ceiling is not None:
        ax.axhline(ceiling, color="black", linestyle="--", linewidth=1, label=f"ceiling (copying) {ceiling:.2f}")
    ax.set(xlabel="γ (observation radius)", ylabel="fraction of samples with NN-PSNR ≥ 25 dB", ylim=(-0.02, 1.05),
           title="Memorization vs γ (95 % Wilson intervals)")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_frontier(report: dict, path: Path) -> None:
    """Memorization against the KID of the novel samples, one point per γ with enough novel samples."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, marker in zip(MODELS, "os"):
        rows = [r for r in model_rows(report, model) if r["kid_novel"] is not None and (r["novel_scored"] or 0) >= FRONTIER_MIN_NOVEL]
        if rows:
            ax.plot([r["mem_psnr25"] for r in rows], [r["kid_novel"] for r in rows], marker=marker, label=f"{model} γ-ARVM")
            for r in rows:
                ax.annotate(f"γ={r['gamma']} (n={int(r['novel_scored'])})", (r["mem_psnr25"], r["kid_novel"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    if report["reference"]["kid"] is not None:
        ax.axhline(report["reference"]["kid"], color="black", linestyle="--", linewidth=1, label="BL-AE reconstructions (reference)")
    ax.set(xlabel="memorization (mem_psnr25)", ylabel="KID of the novel samples vs held-out", xlim=(-0.02, 1.02))
    ax.set_title(f"Generation–memorization frontier (γ with ≥ {FRONTIER_MIN_NOVEL} novel samples)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_phase_diagram(report: dict, path: Path) -> None:
    rows = report["memorization_vs_train_size"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(4.5 * max(1, len(models)), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
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
        ax.set(xticks=range(len(sizes)), xticklabels=sizes, yticks=range(len(gammas)), yticklabels=gammas,
               xlabel="training images N", ylabel="γ", title=f"{model}: mem_psnr25")
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def copy_sample_grids(out_dir: Path, results: dict) -> None:
    for name in results:
        grids = sorted((out_dir / "cells" / name / "images").glob("samples_*.png"))
        if grids:
            shutil.copyfile(grids[-1], out_dir / f"samples_{name}.png")


PLOTS = {"memorization_vs_gamma.png": plot_memorization, "frontier.png": plot_frontier, "phase_diagram.png": plot_phase_diagram}


def write_report(out_dir: Path, results: dict, gammas: list, costs: dict | None = None) -> Path:
    report = build_report(results, gammas, costs)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    for name, draw in PLOTS.items():
        if name != "phase_diagram.png" or report["memorization_vs_train_size"]:
            draw(report, out_dir / name)
    write_probe_plots(report, out_dir)
    copy_sample_grids(out_dir, results)
    path = out_dir / "report.md"
    path.write_text(markdown(report))
    return path


def log_summary_run(out_dir: Path, group: str) -> Path:
    """One more W&B run in the sweep's group holding the report: tables, plots, report.md/json as files."""
    import wandb

    report = json.loads((out_dir / "report.json").read_text())
    run = wandb.init(project="meps-ldh", group=group, name="summary", job_type="report",
                     settings=wandb.Settings(silent=True),  # the sweep prints where the run is
                     dir=str(out_dir / "runs"), config={"gammas": list(dict.fromkeys(str(r["gamma"]) for r in report["rows"]))})
    columns = ["model", "gamma", "fitted", "mem_psnr25", "mem_psnr25_low", "mem_psnr25_high", "mem_ratio13", "latent_copy",
               "nn_psnr_median", "train_nll_bits", "nll_bits", "kid_novel", "fid_novel", "novel_scored"]
    media = {"report/table": table(wandb, columns, report["rows"])}
    if report["memorization_vs_train_size"]:
        media["report/memorization_vs_train_size"] = table(
            wandb, ["model", "gamma", "train_size", "mem_psnr25", "mem_ratio13", "latent_copy", "fitted"], report["memorization_vs_train_size"])
    media.update(probe_tables(wandb, report))
    plots = [name for name in [*PLOTS, *PROBE_PLOTS] if (out_dir / name).is_file()]
    media.update({f"report/{Path(name).stem}": wandb.Image(str(out_dir / name)) for name in plots})
    media.update(native_charts(wandb, report, FRONTIER_MIN_NOVEL))
    run.log(media)
    run.summary.update({
        "report/wall_s": report["wall_s"], "report/cells_cpu_s": report["costs"].get("cells_cpu_s"),
        "report/ovl_blae_mean": report["ovl"]["blae_mean"], "report/ovl_vae_mean": report["ovl"]["vae_mean"],
        "report/blae_psnr": report["blae"]["psnr"], "report/reference_kid": report["reference"]["kid"],
        "report/reference_fid": report["reference"]["fid"],
        **{f"report/floor_{k}": v for k, v in report["floor"].items()},
        **{f"report/ceiling_{k}": v for k, v in report["ceiling"].items()},
        **{f"report/verdict/{v['claim']}{' (' + v['model'] + ')' if v['model'] else ''}": v["outcome"] for v in report["verdicts"]},
    })
    for name in ("report.md", "report.json", *plots):  # copied into the run (a file outside it is symlinked, with a warning)
        shutil.copyfile(out_dir / name, Path(run.dir) / name)
        run.save(str(Path(run.dir) / name), base_path=run.dir, policy="now")
    folder = Path(run.dir).parent
    run.finish()
    return folder


def table(wandb, columns: list[str], rows: list[dict]):
    return wandb.Table(columns=columns, data=[[str(row[c]) if c == "gamma" else row[c] for c in columns] for row in rows])

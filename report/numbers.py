"""report.json's content, built from the cells' results: `build_report`.

Beside the token models' rows (report/token_rows.py): the floor and ceiling of memorization, the
reference KID/FID, the BL-AE and the VAEs (one per β) with their latent overlaps, the token MI curves
and their excess over a permutation null, the probes' sections (report/probes.py), the costs, and the
verdicts read from all of it (report/verdicts.py).
"""

from __future__ import annotations

from networks.gamma_mask import gamma_name
from report.cells import TOKEN_MODELS, cells_of, metric, role, token_cell_name
from report.probes import probe_sections
from report.token_rows import RATE_KEYS, phase_rows, report_rows, seed_spread
from report.verdicts import verdicts


def reference_block(record: dict | None, prefix: str) -> dict:
    """The memorization rates of a reference (``floor``: held-out images, ``ceiling``: reconstructions of train)."""
    return {name: metric(record, key.replace("mem/", f"mem/{prefix}_")) for name, key in RATE_KEYS.items()}


def first_token_record(results: dict, key: str | None = None) -> dict | None:
    """The first main token cell that logged ``key`` (without a key: the first one); if none did, the first main token cell."""
    token_cells = [r for _, r in cells_of(results, "gamma")]
    return next((r for r in token_cells if key is None or metric(r, key) is not None), token_cells[0] if token_cells else None)


def autoencoder_block(record: dict | None) -> dict:
    """An autoencoder's val PSNR and latent overlap, with the MSE bound the overlap implies and the MSE measured."""
    return {
        "psnr": metric(record, "val/psnr"),
        "ovl_mean": metric(record, "ovl/mean"),
        "lower_bound_mse": metric(record, "ovl/lower_bound_mse"),
        "measured_mse": metric(record, "ovl/measured_mse"),
    }


def vae_rows(results: dict) -> list[dict]:
    """One row per VAE cell, by increasing β (a VAE at its config's β, None, last)."""
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
        points.append(
            {
                "d": d,
                "excess": excess,
                "low": metric(record, f"ldh/{source}_token_mi_excess_lo_d{d}"),
                "high": metric(record, f"ldh/{source}_token_mi_excess_hi_d{d}"),
            }
        )
    return points


def raw_mi_curve(record: dict | None, source: str) -> list[list]:
    """``[d, MI]`` for d = 1.. (bits; the token MI, else the bit MI); [] when not logged."""
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
    """(raw MI curves, MI excess curves): the training tokens' ("data") and each main cell's samples' (``model-γ``)."""
    curves: dict[str, list] = {}
    excess: dict[str, list] = {}
    for gamma in gammas:
        for model in TOKEN_MODELS:
            record = results.get(token_cell_name(model, gamma))
            if record is not None:
                curves.setdefault("data", raw_mi_curve(record, "data"))
                curves[f"{model}-{gamma_name(gamma)}"] = raw_mi_curve(record, "samples")
                if not excess.get("data"):
                    excess["data"] = excess_curve(record, "data")
                excess[f"{model}-{gamma_name(gamma)}"] = excess_curve(record, "samples")
    if not excess.get("data"):  # the BL-AE stage measures the training latents too
        excess["data"] = excess_curve(results.get("blae"), "data")
    return curves, excess


def build_report(results: dict, gammas: list, costs: dict | None = None) -> dict:
    """report.json's content: a pure function of the cells' results, the sweep's γ values and its costs."""
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
        "ovl": {
            "blae_mean": blae["ovl_mean"],
            "vae_mean": vae.get("ovl_mean"),
            "vae_beta": vae.get("beta"),
            "blae_lower_bound_mse": blae["lower_bound_mse"],
            "blae_measured_mse": blae["measured_mse"],
            "vae_lower_bound_mse": vae.get("lower_bound_mse"),
            "vae_measured_mse": vae.get("measured_mse"),
            "vae_psnr": vae.get("psnr"),
        },
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

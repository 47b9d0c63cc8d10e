"""Synthetic sweep results for the report's tests: token cells at given memorization rates, the BL-AE at several training
noise levels, VAEs at several β whose PSNR range spans the BL-AE's, log10 overlaps and their training-step series."""

GAMMAS = [1, 2, 4, None]
LABELS = ["1", "2", "4", "global"]


def token_record(model, gamma, rate, plateaued=1.0, step=1000, mem_step=None, kid=0.05, extra=None, kind="gamma", **role):
    metrics = {
        "mem/psnr25_rate": rate,
        "mem/ratio13_rate": rate,
        "mem/nn_psnr_median": 15 + 15 * rate,
        "mem/latent_copy_rate": rate * 0.9,
        "mem/num_samples": 200.0,
        "mem/train_size": 100.0,
        "mem/floor_psnr25_rate": 0.0,
        "mem/floor_ratio13_rate": 0.0,
        "mem/floor_nn_psnr_median": 14.0,
        "mem/ceiling_psnr25_rate": 1.0,
        "mem/ceiling_ratio13_rate": 1.0,
        "mem/ceiling_nn_psnr_median": 31.0,
        "mem/floor_n": 100.0,
        "mem/ceiling_n": 100.0,
        "quality/reference_kid": 0.01,
        "quality/reference_fid": 20.0,
        "mem/step": float(step if mem_step is None else mem_step),
        "train/nll_bits": 4.0 * (1 - rate) + 0.1,
        "val/nll_bits": 5.0,
    }
    metrics |= {
        "mem/decoded_psnr25_rate": rate,
        "mem/floor_decoded_psnr25_rate": 0.0,
        "mem/ceiling_decoded_psnr25_rate": 1.0,
        "mem/latent_near_copy_rate": rate,
        "mem/floor_latent_copy_rate": 0.0,
        "mem/ceiling_latent_copy_rate": 1.0,
        "mem/floor_latent_near_copy_rate": 0.0,
        "mem/ceiling_latent_near_copy_rate": 1.0,
        "quality/reference_kid_low": 0.005,
        "quality/reference_kid_high": 0.015,
        "mia/auc": 0.5 + 0.5 * rate,
        "mia/auc_low": 0.45 + 0.5 * rate,
        "mia/auc_high": min(1.0, 0.55 + 0.5 * rate),
        "mia/tpr_at_1pct_fpr": 0.01 + 0.9 * rate,
        "mia/members": 100.0,
        "mia/nonmembers": 100.0,
    }
    if kid is not None:
        metrics |= {
            "quality/kid_novel": kid,
            "quality/kid_novel_low": kid - 0.01,
            "quality/kid_novel_high": kid + 0.01,
            "quality/fid_novel": 60.0,
            "quality/fid_min_n": 30.0,
            "quality/novel_scored": 40.0,
        }
    if model == "neural" and plateaued is not None:
        metrics["fit/plateaued"] = plateaued
    metrics |= extra or {}
    return {
        "metrics": metrics,
        "global_step": step if model == "neural" else 0,
        "role": {"stage": model, "kind": kind, "model": model, "gamma": gamma, **role},
        "seconds": 10.0,
        "cpu_s": 9.0,
    }


def excess_metrics(values, half_width=0.01):
    metrics = {}
    for d, value in enumerate(values, start=1):
        metrics |= {
            f"ldh/data_token_mi_excess_d{d}": value,
            f"ldh/data_token_mi_excess_lo_d{d}": value - half_width,
            f"ldh/data_token_mi_excess_hi_d{d}": value + half_width,
        }
    return metrics


BLAES = [(0.5, -14.5, 29.0), (0.3, -30.0, 31.0), (0.8, -6.0, 26.0)]
"""(training noise, log10 overlap, val PSNR): the main BL-AE first, then its extra noise cells."""
VAES = [(0.1, -2.5, 32.6), (0.3, -1.8, 28.0), (1.0, -1.3, 24.0), (5.0, -0.3, 14.0)]
"""(β, log10 overlap, val PSNR): the VAE curve, whose PSNR range [14, 32.6] dB spans every BL-AE point."""


def overlap_metrics(log10_ovl, psnr, log10_bound=None, measured_mse=0.004):
    """An autoencoder's overlap figures: log10 overlap, the raw mean (underflowing as it does), the MSE bound and the MSE."""
    raw = 10.0**log10_ovl if log10_ovl > -300 else 0.0
    bound = log10_ovl - 2.0 if log10_bound is None else log10_bound
    return {
        "val/psnr": psnr,
        "ovl/log10_mean": log10_ovl,
        "ovl/mean": raw,
        "ovl/log10_lower_bound_mse": bound,
        "ovl/lower_bound_mse": 10.0**bound,
        "ovl/measured_mse": measured_mse,
    }


def blae_record(noise, log10_ovl, psnr, main=True, extra=None):
    metrics = {**overlap_metrics(log10_ovl, psnr), "blae/noise_rate": noise, "blae/noise_std": noise, **(extra or {})}
    cell_role = {"stage": "blae", "kind": "autoencoder"} if main else {"stage": "blae", "kind": "autoencoder_noise", "noise": noise}
    return {"metrics": metrics, "role": cell_role}


def vae_record(beta, log10_ovl, psnr, outside_bounds=0.0, low_ess_share=0.0):
    metrics = {
        **overlap_metrics(log10_ovl, psnr, measured_mse=0.04),
        "ovl/log10_bc_mean": log10_ovl + 0.3,
        "ovl/log10_bc_lower_mean": log10_ovl - 0.6,
        "ovl/outside_bounds": outside_bounds,
        "ovl/low_ess_share": low_ess_share,
        "vae/beta": beta,
        "vae/likelihood_sigma": 0.1,
    }
    return {"metrics": metrics, "role": {"stage": "vae", "kind": "vae", "beta": beta}}


def series(final, steps=(100, 200, 300)):
    """A log10 overlap falling to ``final`` over training (results.json's top-level "series")."""
    return {"ovl/log10_mean": [[step, final * (i + 1) / len(steps)] for i, step in enumerate(steps)]}


def agreeing_results(**overrides) -> dict:
    """A sweep whose numbers support every claim: both models rise from 0 to the ceiling, MEPS holds (every BL-AE point
    lies decades below the VAE curve at its PSNR, the VAE's overlap rises and its PSNR falls with β)."""
    rates = overrides.pop("rates", {"kernel": [0.0, 0.6, 0.99, 1.0], "neural": [0.0, 0.4, 0.97, 0.98]})
    excess = excess_metrics(overrides.pop("excess", [0.3, 0.1, 0.02, 0.0]))
    results = {}
    for i, (noise, log10_ovl, psnr) in enumerate(overrides.pop("blaes", BLAES)):
        name = "blae" if i == 0 else f"blae-noise-{noise:g}"
        results[name] = blae_record(noise, log10_ovl, psnr, main=i == 0, extra={"val/bin_rate": 0.92, **excess} if i == 0 else None)
    results["blae"]["series"] = series(results["blae"]["metrics"]["ovl/log10_mean"])
    for beta, log10_ovl, psnr in overrides.pop("vaes", VAES):
        results[f"vae-beta-{beta:g}"] = vae_record(beta, log10_ovl, psnr)
        results[f"vae-beta-{beta:g}"]["series"] = series(log10_ovl)
    for model in ("kernel", "neural"):
        for label, rate in zip(LABELS, rates[model], strict=True):
            results[f"{model}-gamma-{label}"] = token_record(model, label, rate)
    results.update(overrides.pop("extra_results", {}))
    assert not overrides, overrides
    return results

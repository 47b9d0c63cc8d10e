"""Synthetic sweep results for the report's tests: token cells at given memorization rates, the BL-AE, VAEs at several β."""

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
        "quality/reference_kid": 0.01,
        "quality/reference_fid": 20.0,
        "mem/step": float(step if mem_step is None else mem_step),
        "train/nll_bits": 4.0 * (1 - rate) + 0.1,
        "val/nll_bits": 5.0,
    }
    if kid is not None:
        metrics |= {"quality/kid_novel": kid, "quality/fid_novel": 60.0, "quality/novel_scored": 40.0}
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


def agreeing_results(**overrides) -> dict:
    """A sweep whose numbers support every claim: both models rise from 0 to the ceiling, MEPS holds."""
    rates = overrides.pop("rates", {"kernel": [0.0, 0.6, 0.99, 1.0], "neural": [0.0, 0.4, 0.97, 0.98]})
    results = {
        "blae": {
            "metrics": {
                "val/psnr": 31.0,
                "val/bin_rate": 0.92,
                "ovl/mean": 1e-8,
                "ovl/lower_bound_mse": 1e-9,
                "ovl/measured_mse": 0.004,
                **excess_metrics(overrides.pop("excess", [0.3, 0.1, 0.02, 0.0])),
            },
            "role": {"stage": "blae", "kind": "autoencoder"},
        }
    }
    for beta, overlap, psnr in overrides.pop("vaes", [(0.1, 1e-6, 27.0), (1.0, 0.02, 22.0), (5.0, 0.2, 12.0)]):
        results[f"vae-beta-{beta:g}"] = {
            "metrics": {"val/psnr": psnr, "ovl/mean": overlap, "ovl/lower_bound_mse": overlap * 0.1, "ovl/measured_mse": 0.04},
            "role": {"stage": "vae", "kind": "vae", "beta": beta},
        }
    for model in ("kernel", "neural"):
        for label, rate in zip(LABELS, rates[model], strict=True):
            results[f"{model}-gamma-{label}"] = token_record(model, label, rate)
    results.update(overrides.pop("extra_results", {}))
    assert not overrides, overrides
    return results

"""report.json's rows of the token models' cells: one per (model, γ) main cell, the seed spread, the phase diagram.

Each row carries the cell's memorization rates, per measure (report/memorization_measures.py: "pixel",
"decoded", "latent") with a 95 % Wilson interval, its likelihoods, the KID/FID of its novel samples (KID
with its bootstrap interval), and whether the model had fitted and the samples came from the fitted model:
no verdict reads a row that is not (report/memorization_verdicts.py). Rows come in γ order (ints ascending,
global last) whatever the order the sweep was given its γ values in.
"""

from __future__ import annotations

from networks.gamma_mask import parse_gamma
from report.cells import TOKEN_MODELS, cells_of, metric, role, token_cell_name
from report.memorization_measures import MEASURES, measure_key, rate_interval, wilson_interval

RATE_KEYS = {"mem_psnr25": "mem/psnr25_rate", "mem_ratio13": "mem/ratio13_rate", "nn_psnr_median": "mem/nn_psnr_median"}
DEFAULT_NUM_SAMPLES = 200


def gamma_order(gamma) -> tuple[int, int]:
    """Sort key of a γ as rows, roles or the sweep write it (2, "2", None, "global"): ints ascending, global last."""
    value = parse_gamma(gamma) if isinstance(gamma, str) or gamma is None else gamma
    return (1, 0) if value is None else (0, value)


def model_order(model: str) -> int:
    """TOKEN_MODELS order (a model outside it after them)."""
    return TOKEN_MODELS.index(model) if model in TOKEN_MODELS else len(TOKEN_MODELS)


def measure_rates(record: dict, n: int) -> dict[str, dict]:
    """Per measure: its rate with a 95 % Wilson interval over the n samples (None where the cell did not log it)."""
    blocks = {}
    for measure in MEASURES:
        rate = metric(record, measure_key(measure))
        low, high = rate_interval(rate, n)
        blocks[measure] = {"rate": rate, "low": low, "high": high}
    return blocks


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
    """The row of one token-model cell (``gamma``: an int or "global", as report.json writes it)."""
    n = int(metric(record, "mem/num_samples") or DEFAULT_NUM_SAMPLES)
    measures = measure_rates(record, n)
    fitted, fit_note = fit_status(record, model)
    final, source = samples_from(record, model)
    return {
        "model": model,
        "gamma": gamma,
        **{name: metric(record, key) for name, key in RATE_KEYS.items()},
        "mem_psnr25_low": measures["pixel"]["low"],
        "mem_psnr25_high": measures["pixel"]["high"],
        "num_samples": n,
        "measures": measures,
        "mem_decoded_psnr25": measures["decoded"]["rate"],
        "latent_copy": metric(record, "mem/latent_copy_rate"),
        "latent_near_copy": measures["latent"]["rate"],
        "train_nll_bits": metric(record, "train/nll_bits"),
        "nll_bits": metric(record, "val/nll_bits"),
        "kid_novel": metric(record, "quality/kid_novel"),
        "kid_novel_low": metric(record, "quality/kid_novel_low"),
        "kid_novel_high": metric(record, "quality/kid_novel_high"),
        "fid_novel": metric(record, "quality/fid_novel"),
        "fid_min_n": metric(record, "quality/fid_min_n"),
        "novel_scored": metric(record, "quality/novel_scored"),
        "samples_drawn": metric(record, "quality/samples_drawn"),
        "train_size": metric(record, "mem/train_size"),
        "fitted": fitted,
        "fit_note": fit_note,
        "samples_final": final,
        "samples_from": source,
        "steps": record.get("global_step"),
        "seed": role(record).get("seed"),
        "seconds": record.get("seconds"),
        "cpu_s": record.get("cpu_s"),
    }


def report_rows(results: dict, gammas: list) -> list[dict]:
    """The main cells' rows, γ by γ in γ order (ints ascending, None = global last, whatever the order of
    ``gammas``; each γ once), the models in TOKEN_MODELS order."""
    rows = []
    for gamma in sorted(dict.fromkeys(gammas), key=gamma_order):
        for model in TOKEN_MODELS:
            record = results.get(token_cell_name(model, gamma))
            if record is not None:
                rows.append(token_row(record, model, gamma if gamma is not None else "global"))
    return rows


def seed_spread(results: dict) -> list[dict]:
    """Per (model, γ) run at several seeds: the main cell and its spread cells, in γ order (global last), models in TOKEN_MODELS order."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for _, record in cells_of(results, "spread"):
        key = (role(record)["model"], role(record)["gamma"])
        groups.setdefault(key, [])
        groups[key].append(token_row(record, *key))
    spreads = []
    for (model, gamma), extra in sorted(groups.items(), key=lambda item: (gamma_order(item[0][1]), model_order(item[0][0]))):
        main = results.get(token_cell_name(model, parse_gamma(gamma)))  # the role's γ is its name: "2", "global"
        rows = ([token_row(main, model, gamma)] if main is not None else []) + extra
        rates = [r["mem_psnr25"] for r in rows if r["mem_psnr25"] is not None]
        mean = sum(rates) / len(rates) if rates else None
        width = None
        if mean is not None:
            low, high = wilson_interval(mean, rows[0]["num_samples"])
            width = high - low
        spreads.append(
            {
                "model": model,
                "gamma": gamma,
                "seeds": [r["seed"] for r in rows],
                "mem_psnr25": [r["mem_psnr25"] for r in rows],
                "train_nll_bits": [r["train_nll_bits"] for r in rows],
                "fitted": [r["fitted"] for r in rows],
                "mean": mean,
                "range": max(rates) - min(rates) if rates else None,
                "sampling_interval_width": width,
            }
        )
    return spreads


def phase_rows(results: dict) -> list[dict]:
    """The phase diagram's rows: one per (model, γ, training-set size) cell, with that size's floors and ceilings.

    Sorted by model (TOKEN_MODELS order), γ (ints ascending, global last), training-set size.
    """
    rows = []
    for name, record in cells_of(results, "phase"):
        model, gamma = role(record)["model"], role(record)["gamma"]
        row = token_row(record, model, gamma if gamma == "global" else int(gamma))
        rows.append(
            {
                key: row[key]
                for key in (
                    "model",
                    "gamma",
                    "train_size",
                    "mem_psnr25",
                    "mem_psnr25_low",
                    "mem_psnr25_high",
                    "mem_ratio13",
                    "latent_copy",
                    "nn_psnr_median",
                    "train_nll_bits",
                    "nll_bits",
                    "fitted",
                    "num_samples",
                    "measures",
                )
            }
            | {
                "floor_mem_psnr25": metric(record, "mem/floor_psnr25_rate"),
                "ceiling_mem_psnr25": metric(record, "mem/ceiling_psnr25_rate"),
                "floors": {measure: metric(record, measure_key(measure, "floor")) for measure in MEASURES},
                "ceilings": {measure: metric(record, measure_key(measure, "ceiling")) for measure in MEASURES},
                "cell": role(record).get("same_as", name),
            }
        )
    return sorted(rows, key=lambda r: (model_order(r["model"]), gamma_order(r["gamma"]), r["train_size"] or 0))

"""The token cells' rows: the Wilson interval of a rate, where the samples came from."""

import pytest

from report.numbers import build_report
from report.token_rows import phase_rows, report_rows, seed_spread, wilson_interval
from tests.report.sweep_results import GAMMAS, agreeing_results, token_record


def test_wilson_interval_brackets_the_rate_and_stays_in_unit_range():
    low, high = wilson_interval(0.0, 200)
    assert low == 0.0 and 0.01 < high < 0.03
    low, high = wilson_interval(0.5, 200)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * (0.25 / 200) ** 0.5, rel=0.05)
    assert wilson_interval(1.0, 200)[1] == pytest.approx(1.0) and wilson_interval(1.0, 200)[0] > 0.98


def test_samples_not_drawn_from_the_final_model_are_named():
    results = agreeing_results()
    results["neural-gamma-4"] = token_record("neural", "4", 0.97, step=1000, mem_step=500)
    row = next(r for r in build_report(results, GAMMAS)["rows"] if r["model"] == "neural" and r["gamma"] == 4)
    assert not row["samples_final"] and "not the final model" in row["samples_from"]


def minimal_record(model, gamma, kind="gamma", metrics=None, **role):
    return {
        "metrics": {"mem/psnr25_rate": 0.1, "mem/num_samples": 50.0, **(metrics or {})},
        "role": {"model": model, "gamma": gamma, "kind": kind, **role},
    }


def test_rows_carry_every_measure_with_its_wilson_interval_and_the_kid_interval():
    metrics = {
        "mem/decoded_psnr25_rate": 0.6,
        "mem/latent_near_copy_rate": 0.9,
        "quality/kid_novel": 0.02,
        "quality/kid_novel_low": 0.01,
        "quality/kid_novel_high": 0.03,
        "quality/fid_min_n": 500.0,
        "quality/samples_drawn": 800.0,
    }
    row = report_rows({"kernel-gamma-1": minimal_record("kernel", "1", metrics=metrics)}, [1])[0]
    assert row["num_samples"] == 50
    for measure, rate in (("pixel", 0.1), ("decoded", 0.6), ("latent", 0.9)):
        assert row["measures"][measure] == {"rate": rate, "low": wilson_interval(rate, 50)[0], "high": wilson_interval(rate, 50)[1]}
    assert (row["mem_psnr25"], row["mem_psnr25_low"], row["mem_psnr25_high"]) == (0.1, *wilson_interval(0.1, 50))  # the flat fields stay
    assert row["mem_decoded_psnr25"] == 0.6 and row["latent_near_copy"] == 0.9
    assert (row["kid_novel_low"], row["kid_novel_high"], row["fid_min_n"], row["samples_drawn"]) == (0.01, 0.03, 500.0, 800.0)
    bare = report_rows({"kernel-gamma-1": minimal_record("kernel", "1")}, [1])[0]
    assert bare["measures"]["latent"] == {"rate": None, "low": None, "high": None}
    assert bare["kid_novel_low"] is None and bare["fid_min_n"] is None and bare["samples_drawn"] is None


def test_rows_come_in_gamma_order_global_last_whatever_the_order_given():
    results = {
        f"{model}-gamma-{label}": minimal_record(model, label) for label in ("global", "8", "1", "2") for model in ("neural", "kernel")
    }
    expected = [(model, gamma) for gamma in (1, 2, 8, "global") for model in ("kernel", "neural")]
    for gammas in ([1, 2, 8, None], [None, 8, 2, 1], [2, None, 1, 8, 2]):
        assert [(r["model"], r["gamma"]) for r in report_rows(results, gammas)] == expected, gammas


def test_phase_rows_and_seed_spread_come_in_gamma_order_whatever_the_results_order():
    cells = {
        **{
            f"kernel-gamma-{g}-n{n}": minimal_record("kernel", g, kind="phase", metrics={"mem/train_size": float(n)})
            for g in ("global", "4", "1")
            for n in (300, 100)
        },
        **{f"{m}-gamma-{g}-seed1": minimal_record(m, g, kind="spread", seed=1) for g in ("global", "2") for m in ("neural", "kernel")},
    }
    for results in (cells, dict(reversed(cells.items()))):
        phase = [(r["gamma"], r["train_size"]) for r in phase_rows(results)]
        assert phase == [(g, n) for g in (1, 4, "global") for n in (100.0, 300.0)]
        assert [(s["gamma"], s["model"]) for s in seed_spread(results)] == [(g, m) for g in ("2", "global") for m in ("kernel", "neural")]
    assert set(phase_rows(cells)[0]["floors"]) == {"pixel", "decoded", "latent"}


def cifar10_neural_record(plateaued: float | None, step: int) -> dict:
    """A neural cell of configs/arvm/cifar10.yaml as its results.json holds it: TrainToPlateau's fit/ figures (fit/plateaued
    only where the rule logged it), the final model's measurements at the last step, role γ = 5."""
    metrics = {"mem/psnr25_rate": 0.1, "mem/num_samples": 1000.0, "mem/step": float(step), "train/nll_bits": 2.0, "fit/window_loss": 1.4}
    metrics |= {"fit/lr": 5e-4, "fit/lr_decays": 2.0} | ({} if plateaued is None else {"fit/plateaued": plateaued})
    return {"metrics": metrics, "global_step": step, "role": {"stage": "neural", "kind": "gamma", "model": "neural", "gamma": "5"}}


def test_a_cifar10_neural_cell_reads_its_fit_from_the_plateau_rule_it_logged():
    rows = {
        label: report_rows({"neural-gamma-5": cifar10_neural_record(plateaued, step)}, [5])[0]
        for label, plateaued, step in (("plateaued", 1.0, 3100), ("capped", 0.0, 6400), ("no rule", None, 6400))
    }
    assert rows["plateaued"]["fitted"] and rows["plateaued"]["fit_note"] == "training loss plateaued at step 3100"
    assert rows["plateaued"]["samples_final"] and rows["plateaued"]["num_samples"] == 1000
    assert not rows["capped"]["fitted"] and "budget ended at step 6400" in rows["capped"]["fit_note"]
    assert not rows["no rule"]["fitted"] and rows["no rule"]["fit_note"].startswith("no stopping rule recorded")

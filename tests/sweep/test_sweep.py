"""The main job: its plan of cells, and a reduced sweep end to end whose numbers must mean something."""

import json

import pytest
import yaml

from sweep import DataOverrides, Stage, Sweep, TrainerOverrides, sweep_from_args
from tests.helpers import REPO_ROOT, run_script

QUICK = ["-c", "configs/presets/debug.yaml"]
ROW_KEYS = {
    "model",
    "gamma",
    "mem_psnr25",
    "mem_ratio13",
    "latent_copy",
    "nn_psnr_median",
    "nll_bits",
    "train_nll_bits",
    "kid_novel",
    "fid_novel",
    "fitted",
    "samples_from",
}


def sweep_from_config(tmp_path, **overrides) -> Sweep:
    return sweep_from_args(
        [
            "-c",
            str(REPO_ROOT / "configs" / "sweeps" / "digits.yaml"),
            "--out_dir",
            str(tmp_path / "s"),
            *[a for k, v in overrides.items() for a in (f"--{k}", json.dumps(v))],
        ]
    )


def test_the_demo_plan_names_every_cell_and_reuses_a_phase_size_the_main_cells_have(tmp_path):
    sweep = sweep_from_config(tmp_path, gammas=[1, 2, 4, "global"], vae_betas=[0.1, 1.0, 5.0])
    plan = {p.name: p for p in sweep.plan()}
    assert {
        "blae",
        "vae-beta-0.1",
        "vae-beta-1",
        "vae-beta-5",
        "kernel-gamma-1",
        "neural-gamma-global",
        "neural-gamma-global-seed2",
        "kernel-gamma-4-n300",
        "kernel-gamma-global-nall",
    } <= plan.keys()
    assert not any(name.startswith("neural") and "-n" in name for name in plan)  # the phase diagram is the kernel's
    blae = {"best_checkpoint": "/ckpt/blae.ckpt", "last_checkpoint": ""}
    results = {"blae": blae, "kernel-gamma-4": {"metrics": {"mem/train_size": 100.0}}}
    assert plan["kernel-gamma-4-n100"].build(results) == "kernel-gamma-4"  # the main cell learned from 100 images
    phase = plan["kernel-gamma-4-n300"].build(results)
    assert phase.subcommand == "validate" and phase.role == {
        "stage": "kernel",
        "model": "kernel",
        "gamma": "4",
        "kind": "phase",
        "train_size": 300,
    }
    args = " ".join(phase.args)
    assert "--data.init_args.max_train_samples 300" in args and "memorization_only.yaml" in args
    assert "--data.init_args.autoencoder /ckpt/blae.ckpt" in args and "--model.init_args.gamma 4" in args
    assert "--data.init_args.max_train_samples null" in " ".join(plan["kernel-gamma-4-nall"].build(results).args)
    results["neural-gamma-global"] = {"metrics": {"fit/plateaued": 1.0}}
    seed = plan["neural-gamma-global-seed2"].build(results)
    assert "--seed_everything 2" in " ".join(seed.args) and seed.role["kind"] == "spread" and seed.subcommand == "fit"
    vae = plan["vae-beta-5"].build(results)
    assert "--model.init_args.kl_weight 5.0" in " ".join(vae.args) and vae.role["beta"] == 5.0
    assert seed.key != plan["neural-gamma-global"].build(results).key  # the seed is part of the cell's identity
    results["neural-gamma-global"] = {"metrics": {"fit/plateaued": 0.0}}  # not fitted: its spread would say nothing
    assert "did not plateau" in plan["neural-gamma-global-seed2"].build(results).reason


def test_cells_start_two_at_a_time_longest_chain_first_once_their_needs_are_met(tmp_path):
    sweep = sweep_from_config(tmp_path, vae_betas=[0.1, 1.0, 5.0], blae_noises=[])  # noise cells: test_autoencoder_levels.py
    pending = sweep.plan()
    blae, vae = sweep.next_ready(pending, {}), sweep.next_ready(pending[1:], {0: None})
    assert (blae.name, vae.name) == ("blae", "vae-beta-0.1")  # independent: side by side, the BL-AE's chain first
    assert sweep.next_ready(pending[2:], {0: None, 1: None}) is None  # both workers busy
    waiting = [p for p in pending if p.needs]  # every token cell needs the BL-AE
    assert sweep.next_ready(waiting, {0: None}) is None
    sweep.results["blae"] = {"best_checkpoint": "/ckpt/blae.ckpt", "last_checkpoint": ""}
    order = []
    while (ready := sweep.next_ready(waiting, {})) is not None:  # as if each cell finished at once
        waiting.remove(ready)
        order.append(ready.name)
        sweep.results[ready.name] = {"metrics": {"fit/plateaued": 1.0}}
    # the neural global cell first (its seed-spread cell waits on it), then the other neural cells (equals:
    # plan order), then the quick kernel cells, each before the phase-diagram cells that wait on it
    assert order[:4] == ["neural-gamma-global", "neural-gamma-1", "neural-gamma-2", "neural-gamma-global-seed2"]
    assert order[4:7] == ["kernel-gamma-1", "kernel-gamma-2", "kernel-gamma-global"]
    assert set(order[7:]) == {p.name for p in pending if p.needs and p.name.startswith("kernel") and "-n" in p.name}


def test_critical_paths_add_the_longest_chain_of_waiting_cells():
    from sweep import Planned, critical_paths

    cells = [
        Planned("a", (), None, 1.0),
        Planned("b", ("a",), None, 5.0),
        Planned("c", ("a",), None, 2.0),
        Planned("d", ("c",), None, 4.0),
        Planned("e", (), None, 3.0),
    ]
    assert critical_paths(cells) == {"a": 7.0, "b": 5.0, "c": 6.0, "d": 4.0, "e": 3.0}


def test_bad_sweep_options_are_named(tmp_path):
    with pytest.raises(ValueError, match="^--spread_cells vae-global: expected a list of main cells <model>-<γ>"):
        sweep_from_config(tmp_path, spread_cells=["vae-global"])
    stage = Stage("configs/arvm/digits.yaml")
    with pytest.raises(ValueError, match="--workers 2 runs cells side by side"):
        Sweep(str(tmp_path), [1], stage, stage, stage, stage, DataOverrides(), TrainerOverrides(devices=2), None, workers=2)


def measurements(tmp_path) -> list[dict]:
    """The demo's measurements, on fewer samples and Inception images (the real network, ~0.3 s per image)."""
    end_of_fit = {"num_samples": 100, "every_n_val_epochs": None}
    return [
        {"class_path": "callbacks.measurements.memorization.MemorizationCallback", "init_args": end_of_fit},
        {
            "class_path": "callbacks.measurements.sample_quality.NovelSampleQualityCallback",
            "init_args": {**end_of_fit, "reference_limit": 16, "max_novel": 8, "feature_cache_dir": str(tmp_path / "features")},
        },
        {"class_path": "callbacks.measurements.membership.MembershipCallback"},
    ]


def overlay(tmp_path, name: str, callbacks: list) -> list[str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return ["-c", str(path)]


def reduced_sweep(tmp_path) -> str:
    """The demo's sweep, small: a BL-AE trained briefly (its codes must already tell images apart), the
    kernel model at γ = 1 and global (the phenomenon itself), a neural model whose budget is far too
    short (it must be reported as not fitted), two VAEs, the BL-AE at one more noise rate, a phase-diagram
    size, a seed repeat."""
    config = yaml.safe_load((REPO_ROOT / "configs" / "sweeps" / "digits.yaml").read_text())
    config.update(
        out_dir=str(tmp_path / "sweep"),
        gammas=[1, "global"],
        vae_betas=[1.0, 8.0],
        blae_noises=[1.0],
        train_sizes=[100, 300],
        spread_cells=["kernel-global"],
        spread_seeds=[5],
    )
    config["blae"]["args"] = config["blae"]["args"] + ["--trainer.max_steps", "1200", "--trainer.val_check_interval", "600"]
    config["vae"]["args"] = QUICK + config["vae"]["args"]
    config["kernel"]["args"] = overlay(tmp_path, "kernel", measurements(tmp_path))
    plateau = {"class_path": "callbacks.run.train_to_plateau.TrainToPlateau", "init_args": {"window": 10}}
    config["neural"]["args"] = [
        *overlay(tmp_path, "neural", [plateau, *measurements(tmp_path)]),
        "--trainer.max_steps",
        "30",
        "--trainer.val_check_interval",
        "30",
    ]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.slow
def test_reduced_sweep_measures_the_phenomenon_reports_honestly_and_resumes(tmp_path):
    config = reduced_sweep(tmp_path)
    first = run_script("sweep.py", ["-c", config], tmp_path, timeout=3600)
    out = tmp_path / "sweep"
    report = json.loads((out / "report.json").read_text())
    rows = {(r["model"], r["gamma"]): r for r in report["rows"]}
    assert set(rows) == {("kernel", 1), ("neural", 1), ("kernel", "global"), ("neural", "global")}
    for row in rows.values():
        assert ROW_KEYS <= row.keys()
        assert row["train_nll_bits"] > 0 and row["nll_bits"] > 0

    # meaning: the kernel estimator generates at γ = 1 and copies at global context, through this decoder
    ceiling, floor = report["ceiling"]["mem_psnr25"], report["floor"]["mem_psnr25"]
    assert ceiling >= 0.9 and floor <= 0.05
    kernel_1, kernel_global = rows[("kernel", 1)], rows[("kernel", "global")]
    assert kernel_1["mem_psnr25"] <= 0.05 and kernel_global["mem_psnr25"] >= 0.9 * ceiling
    assert kernel_global["latent_copy"] > kernel_1["latent_copy"]
    assert kernel_global["train_nll_bits"] < kernel_1["train_nll_bits"]  # the global estimator has its training grids by heart
    outcome = {(v["claim"], v["model"]): v["outcome"] for v in report["verdicts"]}
    for claim in ("Small γ generates", "Memorization rises with γ", "Global context is a pure memorizer"):
        assert outcome[(claim, "kernel")] == "agrees", (claim, report["verdicts"])
        assert outcome[(claim, "neural")] == "not fitted"  # 30 steps: the budget ended before any plateau
    assert not rows[("neural", 1)]["fitted"] and rows[("neural", 1)]["samples_from"] == "final model (step 30)"

    # the frontier: the real Inception on novel samples (all of γ = 1's are novel) and on the reference, every KID with
    # its interval; no FID at this n (below quality/fid_min_n)
    assert kernel_1["novel_scored"] >= 5 and kernel_1["kid_novel_low"] <= kernel_1["kid_novel"] <= kernel_1["kid_novel_high"]
    assert kernel_1["fid_novel"] is None and kernel_1["fid_min_n"] > kernel_1["novel_scored"]
    assert all(r["kid_novel"] is None for r in rows.values() if (r["novel_scored"] or 0) < 5)
    reference = report["reference"]
    assert reference["kid_low"] <= reference["kid"] <= reference["kid_high"] and reference["fid"] is None
    # membership: a row per main cell, the global kernel estimator singles out its own training images
    membership = {(r["model"], r["gamma"]): r for r in report["membership"]}
    assert set(membership) == set(rows) and membership[("kernel", "global")]["auc_low"] > 0.9
    # MEPS: finite log10 overlaps for the BL-AE at two noise rates and both VAEs
    frontier = report["meps_frontier"]
    assert sorted(r["beta"] for r in frontier if r["model"] == "VAE") == [1.0, 8.0]
    assert sorted(r["noise"] for r in frontier if r["model"] == "BL-AE") == [pytest.approx(0.6), 1.0]
    assert all(r["log10_ovl"] is not None and -1e4 < r["log10_ovl"] <= 0 for r in frontier)

    # the phase diagram: the main cells give N = 100 (not run twice), the extra size its own cells
    phase = {(r["gamma"], r["train_size"]) for r in report["memorization_vs_train_size"]}
    assert phase == {(1, 100.0), (1, 300.0), ("global", 100.0), ("global", 300.0)}
    assert first.stdout.count("the same as kernel-gamma-") == 2
    # the seed spread of a training-free estimator with fixed sampling seeds is exactly zero
    spread = report["seed_spread"][0]
    assert (spread["model"], spread["gamma"], spread["seeds"]) == ("kernel", "global", [None, 5]) and spread["range"] == 0
    # each autoencoder record states its setting: the BL-AE its training noise, the VAE its β and σ
    record = {name: json.loads((out / "cells" / name / "results.json").read_text()) for name in ("blae", "blae-noise-1", "vae-beta-8")}
    assert record["blae"]["metrics"]["blae/noise_rate"] == pytest.approx(0.6)
    assert record["blae-noise-1"]["metrics"]["blae/noise_rate"] == 1.0 and record["blae-noise-1"]["role"]["noise"] == 1.0
    vae = record["vae-beta-8"]["metrics"]
    assert vae["vae/beta"] == 8.0 and vae["vae/likelihood_sigma"] == pytest.approx(0.1)
    for name in (
        "report.md",
        "memorization_vs_gamma.png",
        "frontier.png",
        "phase_diagram.png",
        "frontier_meps.png",
        "membership_vs_gamma.png",
    ):
        assert (out / name).stat().st_size > 0
    assert "NOT FITTED" in (out / "report.md").read_text()
    summary_runs = [p for p in (out / "runs" / "wandb").glob("offline-run-*") if (p / "files" / "report.md").is_file()]
    assert len(summary_runs) == 1 and (summary_runs[0] / "files" / "frontier.png").is_file()

    cells = first.stdout.count("done in")
    # the console: one line per cell and a few of the sweep's own; each cell's full output in its log
    console = first.stdout.splitlines()
    settled = len(list((out / "cells").iterdir()))
    assert len(console) <= settled + 2 * 6 + 8, first.stdout  # + the phase diagram's "same as" lines, the report lines
    assert "it/s" not in first.stdout and "\r" not in first.stdout and max(map(len, console)) < 400
    assert [w for w in ("litlogger", "anonymous", "git root", "Find logs at") if w in first.stdout + first.stderr] == []
    assert all((folder / "log.txt").stat().st_size > 0 for folder in (out / "cells").iterdir() if (folder / "results.json").is_file())
    assert "val/psnr" in next(line for line in console if "] blae: done in" in line)
    second = run_script("sweep.py", ["-c", config], tmp_path, timeout=300)
    assert second.stdout.count("reused (finished earlier)") == cells, second.stdout
    assert "done in" not in second.stdout and "started" not in second.stdout

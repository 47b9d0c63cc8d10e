"""The main job end to end on a reduced sweep: report schema, and a re-run reuses finished cells."""
import json

import pytest
import yaml

from tests.helpers import REPO_ROOT, run_script

QUICK = ["-c", "configs/presets/debug.yaml"]
ROW_KEYS = {"model", "gamma", "mem_psnr25", "mem_ratio13", "latent_copy", "nn_psnr_median", "nll_bits", "fid"}
REFERENCE_KEYS = {"mem_psnr25", "mem_ratio13", "nn_psnr_median"}


def reduced_sweep(tmp_path) -> str:
    config = yaml.safe_load((REPO_ROOT / "configs" / "sweeps" / "digits.yaml").read_text())
    config["out_dir"] = str(tmp_path / "sweep")
    config["gammas"] = [1, "global"]
    for stage in ("blae", "vae", "kernel", "neural"):
        config[stage]["args"] = QUICK + config[stage].get("args", [])
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.slow
def test_reduced_sweep_writes_the_report_and_resumes(tmp_path):
    config = reduced_sweep(tmp_path)
    first = run_script("sweep.py", ["-c", config], tmp_path, timeout=900)
    out = tmp_path / "sweep"
    report = json.loads((out / "report.json").read_text())

    assert {(r["model"], r["gamma"]) for r in report["rows"]} == {("kernel", 1), ("neural", 1), ("kernel", "global"), ("neural", "global")}
    for row in report["rows"]:
        assert ROW_KEYS <= row.keys()
        assert 0 <= row["mem_psnr25"] <= 1 and 0 <= row["latent_copy"] <= 1 and row["nll_bits"] > 0
    assert REFERENCE_KEYS <= report["floor"].keys() and REFERENCE_KEYS <= report["ceiling"].keys()
    assert report["blae"]["psnr"] > 0 and 0 <= report["blae"]["bin_rate"] <= 1
    assert report["ovl"]["blae_mean"] is not None and report["ovl"]["vae_mean"] is not None
    assert report["mi"]["data"] and all(len(point) == 2 for point in report["mi"]["data"])
    assert {"kernel-1", "neural-global"} <= report["mi"].keys()
    assert report["wall_s"] > 0
    assert (out / "report.md").read_text().startswith("# Memorization vs γ")
    assert (out / "memorization_vs_gamma.png").stat().st_size > 0
    summary_runs = [p for p in (out / "runs" / "wandb").glob("offline-run-*") if (p / "files" / "report.md").is_file()]
    assert len(summary_runs) == 1, "the report is attached to one W&B summary run in the sweep's group"

    second = run_script("sweep.py", ["-c", config], tmp_path, timeout=300)
    assert second.stdout.count("reused (finished earlier)") == 6, second.stdout
    assert "done in" not in second.stdout
    assert first.stdout.count("done in") == 6

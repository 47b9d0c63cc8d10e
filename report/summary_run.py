"""The sweep's W&B summary run: one more run in the sweep's group holding the report.

Its tables (the main rows, the MEPS frontier, the phase diagram's, the probes'), the plots as images, W&B's native charts
(report/charts.py), the headline figures and every verdict in its summary, and report.md/report.json
as files. Read from the report.json that `write_report` wrote, never from the cells.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from report.charts import finite, meps_table, native_charts
from report.membership import membership_chart
from report.plots import PLOTS, PROBE_PLOTS
from report.verdicts import FRONTIER_MIN_NOVEL
from runtime.wandb_run import PROJECT


def log_summary_run(out_dir: Path, group: str) -> Path:
    """One more W&B run in the sweep's group holding the report: tables, plots, report.md/json as files."""
    import wandb

    report = json.loads((out_dir / "report.json").read_text())
    run = wandb.init(
        project=PROJECT,
        group=group,
        name="summary",
        job_type="report",
        settings=wandb.Settings(silent=True),  # the sweep prints where the run is
        dir=str(out_dir / "runs"),
        config={"gammas": list(dict.fromkeys(str(r["gamma"]) for r in report["rows"]))},
    )
    columns = [
        "model",
        "gamma",
        "fitted",
        "mem_psnr25",
        "mem_psnr25_low",
        "mem_psnr25_high",
        "mem_decoded_psnr25",
        "latent_near_copy",
        "mem_ratio13",
        "latent_copy",
        "nn_psnr_median",
        "train_nll_bits",
        "nll_bits",
        "kid_novel",
        "kid_novel_low",
        "kid_novel_high",
        "fid_novel",
        "novel_scored",
    ]
    media = {"report/table": table(wandb, columns, report["rows"])}
    if report["memorization_vs_train_size"]:
        media["report/memorization_vs_train_size"] = table(
            wandb,
            ["model", "gamma", "train_size", "mem_psnr25", "mem_ratio13", "latent_copy", "fitted"],
            report["memorization_vs_train_size"],
        )
    media.update(probe_tables(wandb, report))
    if report.get("meps_frontier"):
        media["report/meps_frontier"] = meps_table(wandb, report)
    plots = [name for name in [*PLOTS, *PROBE_PLOTS] if (out_dir / name).is_file()]
    media.update({f"report/{Path(name).stem}": wandb.Image(str(out_dir / name)) for name in plots})
    media.update(native_charts(wandb, report, FRONTIER_MIN_NOVEL))
    media.update(membership_chart(wandb, report))
    run.log(media)
    run.summary.update(
        {
            "report/wall_s": report["wall_s"],
            "report/cells_cpu_s": report["costs"].get("cells_cpu_s"),
            "report/ovl_blae_log10_mean": finite(report["ovl"]["blae_log10_mean"]),
            "report/ovl_vae_log10_mean": finite(report["ovl"]["vae_log10_mean"]),
            "report/ovl_vae_matched_beta": report["ovl"]["vae_matched_beta"],
            "report/ovl_blae_decades_below_vae": finite(report["ovl"]["blae_decades_below_vae"]),
            "report/blae_psnr": report["blae"]["psnr"],
            "report/memorization_measure": (report.get("memorization_measure") or {}).get("name"),
            **dependence_radius_summary(report),
            "report/reference_kid": report["reference"]["kid"],
            "report/reference_fid": report["reference"]["fid"],
            **{f"report/floor_{k}": v for k, v in report["floor"].items()},
            **{f"report/ceiling_{k}": v for k, v in report["ceiling"].items()},
            **{f"report/verdict/{v['claim']}{' (' + v['model'] + ')' if v['model'] else ''}": v["outcome"] for v in report["verdicts"]},
        }
    )
    for name in ("report.md", "report.json", *plots):  # copied into the run (a file outside it is symlinked, with a warning)
        shutil.copyfile(out_dir / name, Path(run.dir) / name)
        run.save(str(Path(run.dir) / name), base_path=run.dir, policy="now")
    folder = Path(run.dir).parent
    run.finish()
    return folder


def table(wandb, columns: list[str], rows: list[dict]):
    """A ``wandb.Table`` of report.json rows, those columns (γ as text: ints and "global" share the column)."""
    return wandb.Table(columns=columns, data=[[str(row[c]) if c == "gamma" else row[c] for c in columns] for row in rows])


def probe_tables(wandb, report: dict) -> dict:
    """W&B tables of the two probe sections (those that have rows)."""
    media = {}
    if report.get("extraction"):
        columns = ["model", "gamma", "prefix_rows", "rate", "control_rate", "hamming_median", "control_hamming_median", "ceiling_rate"]
        media["report/extraction"] = table(wandb, columns, report["extraction"])
    if report.get("forward_backward"):
        columns = [
            "model",
            "gamma",
            "p",
            "changed_fraction",
            "corrupted_changed_fraction",
            "exact_rate",
            "correlation_length",
            "conditioning",
        ]
        media["report/forward_backward"] = table(wandb, columns, report["forward_backward"])
    return media


def dependence_radius_summary(report: dict) -> dict:
    """``report/dependence_radius/<source>`` (None: not measured or beyond the grid) and whether it lay beyond the grid."""
    summary = {}
    for source, radius in (report.get("dependence_radius") or {}).items():
        summary[f"report/dependence_radius/{source}"] = radius["radius"]
        summary[f"report/dependence_radius_beyond_grid/{source}"] = radius["beyond_grid"]
    return summary

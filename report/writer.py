"""Writing the report into the sweep's folder: report.json, the plots, the last sample grid of each cell, report.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from report.markdown import markdown
from report.numbers import build_report
from report.plots import write_plots


def copy_sample_grids(out_dir: Path, results: dict) -> None:
    """``samples_<cell>.png``: each cell's last sample grid (its images/samples_*.png by name), beside report.md."""
    for name in results:
        grids = sorted((out_dir / "cells" / name / "images").glob("samples_*.png"))
        if grids:
            shutil.copyfile(grids[-1], out_dir / f"samples_{name}.png")


def write_report(out_dir: Path, results: dict, gammas: list, costs: dict | None = None) -> Path:
    """The whole report of the cells' results into ``out_dir``; the path of report.md."""
    report = build_report(results, gammas, costs)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    write_plots(report, out_dir)
    copy_sample_grids(out_dir, results)
    path = out_dir / "report.md"
    path.write_text(markdown(report))
    return path

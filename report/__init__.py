"""The sweep's report: report.json, report.md (tables, plots, one verdict per claim) and a W&B summary run.

`write_report` (report/writer.py) builds report.json from the cells' results (report/numbers.py, with
one module per subject: report/token_rows.py and report/memorization_*.py for memorization, report/meps.py
for the MEPS frontier, report/ldh.py for token dependence, report/membership.py, report/probes.py), reads the
verdicts from it (report/verdicts.py, gathering each subject's), draws the plots (report/plots.py) and writes
report.md (report/markdown.py); `log_summary_run` (report/summary_run.py) puts it in W&B. The cells' names and
how a cell is read: report/cells.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from report.summary_run import log_summary_run
    from report.writer import write_report


def __getattr__(name: str):
    """``log_summary_run`` and ``write_report`` imported on first use: `report.cells` (the sweep's argument checks)
    comes without matplotlib, torch or W&B."""
    if name == "log_summary_run":
        from report.summary_run import log_summary_run

        return log_summary_run
    if name == "write_report":
        from report.writer import write_report

        return write_report
    raise AttributeError(f"module 'report' has no attribute {name!r}")


__all__ = ["log_summary_run", "write_report"]

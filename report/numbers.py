"""report.json's content, built from the cells' results: `build_report`.

Beside the token models' rows (report/token_rows.py): the floor and ceiling of memorization, the
reference KID/FID, the MEPS frontier (report/meps.py: every BL-AE and VAE cell's log10 latent overlap
against its PSNR, and the overlap against training step), the memorization measures' floors and ceilings
(report/memorization_references.py), membership inference per γ (report/membership.py), the token MI curves,
their excess over a permutation null and the dependence radius (report/ldh.py), the probes' sections (report/probes.py), the costs, and the
verdicts read from all of it (report/verdicts.py).
"""

from __future__ import annotations

from report.cells import cells_of, metric, role
from report.ldh import mi_sections
from report.membership import membership_rows
from report.memorization_references import memorization_sections
from report.meps import frontier_rows, ovl_block, ovl_vs_step
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


def build_report(results: dict, gammas: list, costs: dict | None = None) -> dict:
    """report.json's content: a pure function of the cells' results, the sweep's γ values and its costs."""
    first = first_token_record(results)
    quality = first_token_record(results, "quality/reference_kid")
    frontier = frontier_rows(results)
    costs = dict(costs or {})
    costs["cells_cpu_s"] = sum(r.get("cpu_s") or 0 for n, r in results.items() if not role(r).get("same_as"))
    report = {
        "rows": report_rows(results, gammas),
        "floor": reference_block(first, "floor"),
        "ceiling": reference_block(first, "ceiling"),
        **memorization_sections(results),
        "reference": {
            "kid": metric(quality, "quality/reference_kid"),
            "kid_low": metric(quality, "quality/reference_kid_low"),
            "kid_high": metric(quality, "quality/reference_kid_high"),
            "fid": metric(quality, "quality/reference_fid"),
            "fid_min_n": metric(quality, "quality/fid_min_n"),
        },
        "blae": {"psnr": metric(results.get("blae"), "val/psnr"), "bin_rate": metric(results.get("blae"), "val/bin_rate")},
        "ovl": ovl_block(frontier),
        "meps_frontier": frontier,
        "ovl_vs_step": ovl_vs_step(results, frontier),
        "membership": membership_rows(results, gammas),
        **mi_sections(results, gammas),
        "seed_spread": seed_spread(results),
        "memorization_vs_train_size": phase_rows(results),
        **probe_sections(results),
        "wall_s": costs.get("wall_s"),
        "costs": costs,
    }
    report["verdicts"] = verdicts(report)
    return report

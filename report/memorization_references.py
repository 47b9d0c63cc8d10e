"""The floor and ceiling of every memorization measure, and the measure the memorization verdicts read.

For each measure (report/memorization_measures.py) a block: its floor (held-out images' reconstructions: the
rate of a model that generates fresh images of the data's law) and its ceiling (training images'
reconstructions: the rate of a perfect copier), each with a 95 % Wilson interval over the images it was
measured on (`mem/floor_n`, `mem/ceiling_n`), and their gap (ceiling − floor): how far apart the measure
puts a generator and a copier on the data at hand. The verdicts read the measure whose gap is widest (ties
go to the earlier measure: pixel, decoded, latent), as a measure whose floor sits near its ceiling cannot
tell copying from the data's own redundancy.

`memorization_sections(results)` gives report.json's ``memorization_references`` (the blocks) and
``memorization_measure`` (the chosen one, with every measure's gap), both pure functions of the cells' results.
"""

from __future__ import annotations

from report.cells import cells_of, metric, role
from report.memorization_measures import MEASURE_TEXT, MEASURES, measure_key, rate_interval
from report.token_rows import gamma_order, model_order


def main_token_cells(results: dict) -> list[tuple[str, dict]]:
    """The main token cells in γ order (global last), models in TOKEN_MODELS order: the same whatever the results' order."""
    cells = cells_of(results, "gamma")
    return sorted(cells, key=lambda cell: (gamma_order(role(cell[1]).get("gamma")), model_order(role(cell[1]).get("model", ""))))


def reference_block(results: dict, measure: str) -> dict:
    """One measure's floor and ceiling with their intervals and gap, from the first main token cell that logged its floor."""
    logged = [(name, r) for name, r in main_token_cells(results) if metric(r, measure_key(measure, "floor")) is not None]
    cell, record = logged[0] if logged else (None, None)
    floor, ceiling = metric(record, measure_key(measure, "floor")), metric(record, measure_key(measure, "ceiling"))
    floor_n, ceiling_n = metric(record, "mem/floor_n"), metric(record, "mem/ceiling_n")
    floor_low, floor_high = rate_interval(floor, floor_n)
    ceiling_low, ceiling_high = rate_interval(ceiling, ceiling_n)
    return {
        "measure": measure,
        "key": measure_key(measure),
        "text": MEASURE_TEXT[measure],
        "floor": floor,
        "floor_low": floor_low,
        "floor_high": floor_high,
        "floor_n": floor_n,
        "ceiling": ceiling,
        "ceiling_low": ceiling_low,
        "ceiling_high": ceiling_high,
        "ceiling_n": ceiling_n,
        "gap": ceiling - floor if floor is not None and ceiling is not None else None,
        "cell": cell,
    }


def reference_blocks(results: dict) -> dict[str, dict]:
    """Every measure's block (report.json ``memorization_references``), in MEASURES order."""
    return {measure: reference_block(results, measure) for measure in MEASURES}


def chosen_measure(blocks: dict[str, dict]) -> dict | None:
    """The measure with the widest floor–ceiling gap (report.json ``memorization_measure``); None if no measure has both."""
    measured = [block for block in blocks.values() if block["gap"] is not None]
    if not measured:
        return None
    best = max(measured, key=lambda block: block["gap"])  # the first of equal gaps: MEASURES order
    fields = ("key", "text", "floor", "floor_low", "floor_high", "floor_n", "ceiling", "ceiling_low", "ceiling_high", "ceiling_n", "gap")
    return {"name": best["measure"], **{field: best[field] for field in fields}, "gaps": {m: b["gap"] for m, b in blocks.items()}}


def memorization_sections(results: dict) -> dict:
    """report.json's ``memorization_references`` and ``memorization_measure``."""
    blocks = reference_blocks(results)
    return {"memorization_references": blocks, "memorization_measure": chosen_measure(blocks)}

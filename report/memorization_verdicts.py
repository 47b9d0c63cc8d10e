"""The memorization verdicts of one token model: small γ generates, memorization rises with γ, global context memorizes.

All three read one measure, report.json's ``memorization_measure`` (report/memorization_references.py: the
measure whose floor–ceiling gap is widest on the data at hand), and say which and why in their evidence.
Rates carry 95 % Wilson intervals over the samples, the floor and ceiling over the images they were measured
on. Rules (their thresholds are printed with every verdict):
- "Small γ generates": γ = 1 is not above the floor, i.e. its lower bound ≤ the floor's upper bound +
  GENERATES_MARGIN (a γ = 1 model whose rate is significantly above what fresh images of the data's law
  score, by more than the margin, copies);
- "Memorization rises with γ": in γ order (ints ascending, global last, whatever order the sweep ran them
  in), no γ lies below a smaller γ beyond their intervals (disjoint), and the last (global, else the largest
  γ) lies above the smallest beyond them;
- "Global context is a pure memorizer": the global rate ≥ MEMORIZER_SHARE × the ceiling.
"Small γ generates" and "pure memorizer" read "not measured" when the chosen measure's floor and ceiling
are not at least MIN_RESOLVED_GAP apart beyond their intervals (then no rate on it can tell a copier from
a generator); any claim reads "not fitted" when a row it reads had not fitted its training set.
"""

from __future__ import annotations

from report.formatting import fmt
from report.token_rows import gamma_order
from report.verdict_record import verdict

GENERATES_MARGIN = 0.05  # γ = 1 may exceed the floor's upper bound by this much (its lower bound) and still "generate"
MEMORIZER_SHARE = 0.9  # global context: at least this share of the ceiling is "a pure memorizer"
MIN_RESOLVED_GAP = 0.1  # the chosen measure's ceiling lower bound − floor upper bound, below which it cannot judge

CLAIMS = ("Small γ generates", "Memorization rises with γ", "Global context is a pure memorizer")


def chosen(report: dict) -> tuple[str, dict | None]:
    """(measure name, its floor/ceiling block): report.json's chosen measure; the pixel measure without a block if none."""
    choice = report.get("memorization_measure")
    return (choice["name"], choice) if choice else ("pixel", None)


def measure_rows(report: dict, model: str, measure: str) -> list[dict]:
    """The model's main rows with a rate on the measure, in γ order (global last) whatever the rows' order."""
    rows = [r for r in report["rows"] if r["model"] == model and (r.get("measures") or {}).get(measure, {}).get("rate") is not None]
    return sorted(rows, key=lambda r: gamma_order(r["gamma"]))


def rate_of(row: dict, measure: str) -> dict:
    """``{"rate", "low", "high"}`` of a row on a measure."""
    return row["measures"][measure]


def interval_text(value, low, high) -> str:
    """``0.400 [0.335, 0.469]`` (no brackets where the interval's n was not recorded)."""
    return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else " (n not recorded: no interval)")


def rate_text(row: dict, measure: str) -> str:
    """``γ = 2: 0.400 [0.335, 0.469]``: a row's rate on the measure with its 95 % interval."""
    rate = rate_of(row, measure)
    return f"γ = {row['gamma']}: {interval_text(rate['rate'], rate['low'], rate['high'])}"


def measure_note(measure: str, block: dict | None) -> str:
    """Which measure the verdict reads and why (its gap against the others')."""
    if block is None:
        return f"{measure} measure (no floor and ceiling recorded for any measure)"
    gaps = ", ".join(f"{m} {fmt(g, 3)}" for m, g in block["gaps"].items())
    return f"{measure} measure ({block['text']}): the widest floor–ceiling gap, {block['gap']:.3f} (gaps: {gaps})"


def count_text(n) -> str:
    return "–" if n is None else str(int(n))


def floor_text(block: dict) -> str:
    """``floor 0.005 [0.002, 0.016] over 500 held-out images``."""
    value = interval_text(block["floor"], block["floor_low"], block["floor_high"])
    return f"floor {value} over {count_text(block['floor_n'])} held-out images"


def ceiling_text(block: dict) -> str:
    """``ceiling 1.000 [0.963, 1.000] over 100 training images``."""
    value = interval_text(block["ceiling"], block["ceiling_low"], block["ceiling_high"])
    return f"ceiling {value} over {count_text(block['ceiling_n'])} training images"


def upper(value, high):
    """An upper bound: the interval's where recorded, else the value."""
    return value if high is None else high


def lower(value, low):
    """A lower bound: the interval's where recorded, else the value."""
    return value if low is None else low


def rate_bounds(row: dict, measure: str) -> tuple[float, float]:
    """(lower, upper) bound of a row's rate on the measure."""
    rate = rate_of(row, measure)
    return lower(rate["rate"], rate["low"]), upper(rate["rate"], rate["high"])


def resolved_gap(block: dict) -> float:
    """The ceiling's lower bound minus the floor's upper bound: the range the measure resolves beyond its references' noise."""
    return lower(block["ceiling"], block["ceiling_low"]) - upper(block["floor"], block["floor_high"])


def unresolved(block: dict | None) -> str | None:
    """Why the measure cannot judge copying (None when it can)."""
    if block is None:
        return "no floor and ceiling measured"
    if resolved_gap(block) < MIN_RESOLVED_GAP:
        return (
            f"{floor_text(block)} and {ceiling_text(block)} are less than {MIN_RESOLVED_GAP} apart beyond their intervals: "
            "this measure cannot tell copying from the data's own redundancy"
        )
    return None


def not_fitted_evidence(rows: list[dict]) -> str:
    """Why each row is not fitted, with its training nll (the evidence of a "not fitted" verdict)."""
    return "; ".join(f"γ = {r['gamma']}: {r['fit_note']}, train nll {fmt(r['train_nll_bits'], 3)} bits/token" for r in rows)


def generation_verdict(report: dict, model: str) -> dict:
    """Small γ generates: γ = 1's lower bound at most the floor's upper bound + GENERATES_MARGIN."""
    measure, block = chosen(report)
    claim = CLAIMS[0]
    rule = f"γ = 1's rate ({measure} measure): its 95 % lower bound ≤ the floor's 95 % upper bound + {GENERATES_MARGIN}"
    row = next((r for r in measure_rows(report, model, measure) if r["gamma"] == 1), None)
    if row is None:
        return verdict(claim, rule, f"γ = 1 not measured on the {measure} measure", "not measured", model)
    if not row["fitted"]:
        return verdict(claim, rule, not_fitted_evidence([row]), "not fitted", model)
    why_not = unresolved(block)
    if block is None or why_not is not None:
        return verdict(claim, rule, f"{measure_note(measure, block)}; {why_not}", "not measured", model)
    limit = upper(block["floor"], block["floor_high"]) + GENERATES_MARGIN
    low = rate_bounds(row, measure)[0]
    evidence = f"{measure_note(measure, block)}; {rate_text(row, measure)} vs {floor_text(block)}: lower bound {low:.3f}"
    evidence += f" {'≤' if low <= limit else '>'} {limit:.3f}"
    return verdict(claim, rule, evidence, "agrees" if low <= limit else "disagrees", model)


def trend_verdict(report: dict, model: str) -> dict:
    """Memorization rises with γ: no significant drop between two γ, a significant rise from the smallest γ to the last."""
    measure, block = chosen(report)
    claim = CLAIMS[1]
    rule = (
        f"on the {measure} measure, in γ order (global last): no γ's rate lies below a smaller γ's beyond their 95 % Wilson "
        "intervals (the intervals are disjoint), and the last γ lies above the smallest beyond them"
    )
    rows = measure_rows(report, model, measure)
    if len(rows) < 2:
        return verdict(claim, rule, f"{len(rows)} γ value(s) measured on the {measure} measure", "not measured", model)
    if [r for r in rows if not r["fitted"]]:
        return verdict(claim, rule, not_fitted_evidence([r for r in rows if not r["fitted"]]), "not fitted", model)
    bounds = [rate_bounds(r, measure) for r in rows]  # (low, high) per row, γ order
    drops = [(rows[i]["gamma"], rows[j]["gamma"]) for i in range(len(rows)) for j in range(i + 1, len(rows)) if bounds[j][1] < bounds[i][0]]
    rises = bounds[-1][0] > bounds[0][1]
    evidence = f"{measure_note(measure, block)}; " + ", ".join(rate_text(r, measure) for r in rows)
    if drops:
        evidence += "; falls significantly between γ = " + ", ".join(f"{a} → {b}" for a, b in drops)
    elif not rises:
        evidence += f"; γ = {rows[-1]['gamma']} is not significantly above γ = {rows[0]['gamma']}"
    return verdict(claim, rule, evidence, "agrees" if rises and not drops else "disagrees", model)


def memorizer_verdict(report: dict, model: str) -> dict:
    """Global context is a pure memorizer: at least MEMORIZER_SHARE of the chosen measure's ceiling at global γ."""
    measure, block = chosen(report)
    claim = CLAIMS[2]
    rule = f"the rate at global γ ({measure} measure) ≥ {MEMORIZER_SHARE} × its ceiling"
    row = next((r for r in measure_rows(report, model, measure) if r["gamma"] == "global"), None)
    if row is None:
        return verdict(claim, rule, f"global γ not measured on the {measure} measure", "not measured", model)
    if not row["fitted"]:
        return verdict(claim, rule, not_fitted_evidence([row]), "not fitted", model)
    why_not = unresolved(block)
    if block is None or why_not is not None or not block["ceiling"]:
        return verdict(claim, rule, f"{measure_note(measure, block)}; {why_not or 'a ceiling of 0'}", "not measured", model)
    share = rate_of(row, measure)["rate"] / block["ceiling"]
    evidence = (
        f"{measure_note(measure, block)}; {rate_text(row, measure)}, {share:.0%} of the {ceiling_text(block)} "
        f"(their reconstructions: a perfect copier); exact latent copies {fmt(row.get('latent_copy'), 3)}"
    )
    return verdict(claim, rule, evidence, "agrees" if share >= MEMORIZER_SHARE else "disagrees", model)


def memorization_verdicts(report: dict, model: str) -> list[dict]:
    """The model's three memorization verdicts (report.json needs ``rows`` and ``memorization_measure``)."""
    return [generation_verdict(report, model), trend_verdict(report, model), memorizer_verdict(report, model)]

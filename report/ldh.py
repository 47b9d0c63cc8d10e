"""The LDH section of the report: MI curves, the MI excess with its interval, the dependence radius, the verdict and its table.

Pure functions of the cells' results (``mi_sections``) or of report.json (``local_dependence_verdict``,
``excess_table``). The figures come from the MI callback (callbacks/measurements/mutual_information.py):
``ldh/{source}_token_mi_excess_d{d}`` with its 95 % interval ``..._excess_lo_d{d}`` / ``..._excess_hi_d{d}``
(bootstrap over images, null-matched) and ``ldh/{source}_dependence_radius`` (the first d whose
interval is not above 0; max_distance + 1 when every measured d is significant, i.e. beyond the grid).
"""

from __future__ import annotations

from typing import NamedTuple

from networks.gamma_mask import gamma_name
from report.cells import TOKEN_MODELS, metric, token_cell_name
from report.formatting import fmt
from report.verdict_record import verdict

MAX_LOGGED_DISTANCE = 16  # the curves are read for d = 1.. until the first missing figure
CLAIM = "LDH: dependence between latent tokens is local"
RULE = (
    "the training tokens' MI in excess of a permutation null (same two positions, different images) is significant at d = 1 "
    "(its 95 % bootstrap-over-images interval lies above 0) and the dependence radius (the first d whose interval is not "
    "above 0) lies inside the measured grid"
)


class MIBlock(NamedTuple):
    """The LDH figures of a sweep, keyed "data" (training tokens) and ``model-γ`` (each main cell's samples)."""

    mi: dict[str, list]  # raw plug-in MI: [[d, bits], ...]
    mi_excess: dict[str, list]  # [{"d", "excess", "low", "high", "significant"}, ...]
    dependence_radius: dict[str, dict]  # {"radius": d or None, "beyond_grid": bool, "max_distance": D}


def excess_curve(record: dict | None, source: str) -> list[dict]:
    """MI excess over the permutation null with its 95 % interval, d = 1.. (bits); [] when not logged.

    ``significant``: the interval lies above 0 (None when the interval was not logged)."""
    points = []
    for d in range(1, MAX_LOGGED_DISTANCE + 1):
        excess = metric(record, f"ldh/{source}_token_mi_excess_d{d}")
        if excess is None:
            break
        low, high = metric(record, f"ldh/{source}_token_mi_excess_lo_d{d}"), metric(record, f"ldh/{source}_token_mi_excess_hi_d{d}")
        points.append({"d": d, "excess": excess, "low": low, "high": high, "significant": None if low is None else low > 0})
    return points


def raw_mi_curve(record: dict | None, source: str) -> list[list]:
    """``[d, MI]`` for d = 1.. (bits; the token MI, else the bit MI); [] when not logged."""
    points = []
    for d in range(1, MAX_LOGGED_DISTANCE + 1):
        value = metric(record, f"ldh/{source}_token_mi_d{d}")
        if value is None:
            value = metric(record, f"ldh/{source}_bit_mi_d{d}")
        if value is None:
            break
        points.append([d, value])
    return points


def dependence_radius(record: dict | None, source: str, curve: list[dict]) -> dict:
    """The dependence radius of one source: ``{"radius": d | None, "beyond_grid": bool, "max_distance": D}``.

    The logged ``ldh/{source}_dependence_radius`` when present, else the first d of ``curve`` whose
    interval is not above 0. A radius past the last measured d (logged as max_distance + 1) reads
    radius None, beyond_grid True: every measured distance was significant. Not measured: radius
    None, beyond_grid False, max_distance None."""
    max_distance = len(curve) or None
    radius = metric(record, f"ldh/{source}_dependence_radius")
    if radius is None and curve and all(p["low"] is not None for p in curve):
        radius = next((float(p["d"]) for p in curve if not p["low"] > 0), float(len(curve) + 1))
    if radius is None or max_distance is None:
        return {"radius": None, "beyond_grid": False, "max_distance": max_distance}
    beyond = radius > max_distance
    return {"radius": None if beyond else int(radius), "beyond_grid": beyond, "max_distance": max_distance}


def mi_block(results: dict, gammas: list) -> MIBlock:
    """The training tokens' ("data") and each main token cell's samples' (``model-γ``) curves and radii."""
    curves: dict[str, list] = {}
    excess: dict[str, list] = {}
    radius: dict[str, dict] = {}
    data_record = None
    for gamma in gammas:
        for model in TOKEN_MODELS:
            record = results.get(token_cell_name(model, gamma))
            if record is None:
                continue
            curves.setdefault("data", raw_mi_curve(record, "data"))
            if data_record is None and excess_curve(record, "data"):
                data_record = record
            key = f"{model}-{gamma_name(gamma)}"
            curves[key], excess[key] = raw_mi_curve(record, "samples"), excess_curve(record, "samples")
            radius[key] = dependence_radius(record, "samples", excess[key])
    if data_record is None:  # the BL-AE stage measures the training latents too
        data_record = results.get("blae")
    excess = {"data": excess_curve(data_record, "data"), **excess}
    radius = {"data": dependence_radius(data_record, "data", excess["data"]), **radius}
    return MIBlock(curves, excess, radius)


def mi_sections(results: dict, gammas: list) -> dict:
    """report.json's LDH sections: ``{"mi": ..., "mi_excess": ..., "dependence_radius": ...}`` (see MIBlock)."""
    return mi_block(results, gammas)._asdict()


def radius_text(radius: dict) -> str:
    """``radius 3 (grid d ≤ 4)``, ``radius beyond the grid (every d ≤ 4 significant)``, ``radius not measured``."""
    if radius["beyond_grid"]:
        return f"radius beyond the grid (every d ≤ {radius['max_distance']} significant)"
    if radius["radius"] is None:
        return "radius not measured"
    return f"radius {radius['radius']} (grid d ≤ {radius['max_distance']})"


def curve_text(curve: list[dict]) -> str:
    """``d = 1: 0.300 [0.290, 0.310], d = 2: …`` (bits)."""
    return ", ".join(f"d = {p['d']}: {fmt(p['excess'], 3)} [{fmt(p['low'], 3)}, {fmt(p['high'], 3)}]" for p in curve) + " bits"


def local_dependence_verdict(report: dict) -> dict:
    """LDH: the training tokens' excess is significant at d = 1 and their dependence radius lies inside the grid."""
    curve = report.get("mi_excess", {}).get("data") or []
    radius = report.get("dependence_radius", {}).get("data") or dependence_radius(None, "data", curve)
    if not curve or curve[0]["low"] is None or (radius["radius"] is None and not radius["beyond_grid"]):
        return verdict(CLAIM, RULE, "MI excess over the permutation null, or its interval, not measured", "not measured")
    agrees = curve[0]["low"] > 0 and not radius["beyond_grid"]
    return verdict(CLAIM, RULE, f"{curve_text(curve)}; {radius_text(radius)}", "agrees" if agrees else "disagrees")


def excess_table(report: dict) -> str:
    """The LDH section of report.md: one row per source (training tokens, each cell's samples), the
    excess [95 % interval] at every d and the dependence radius ("" when nothing was measured)."""
    excess, radii = report.get("mi_excess") or {}, report.get("dependence_radius") or {}
    sources = [name for name, curve in excess.items() if curve]
    if not sources:
        return ""
    distances = max(len(excess[name]) for name in sources)
    lines = [
        "| source | " + " | ".join(f"d = {d}" for d in range(1, distances + 1)) + " | dependence radius |",
        "|---|" + "---|" * (distances + 1),
    ]
    for name in sources:
        cells = [f"{fmt(p['excess'], 3)} [{fmt(p['low'], 3)}, {fmt(p['high'], 3)}]" for p in excess[name]]
        cells += ["–"] * (distances - len(cells))
        radius = radii.get(name) or dependence_radius(None, name, excess[name])
        shown = f"> {radius['max_distance']} (beyond the grid)" if radius["beyond_grid"] else fmt(radius["radius"])
        label = "training tokens" if name == "data" else f"samples {name}"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {shown} |")
    return (
        "## LDH: token dependence vs distance\n\nMI between tokens d cells apart in excess of a permutation null (bits) with "
        "its 95 % interval (bootstrap over images, its spread corrected by that of a permuted pairing); "
        "the dependence radius is the first d whose interval is not above 0.\n\n" + "\n".join(lines) + "\n\n"
    )

"""The LDH section of the report: MI curves, the MI excess with its interval, the dependence radius, the verdict and its table.

Pure functions of the cells' results (``mi_sections``) or of report.json (``local_dependence_verdict``,
``excess_table``). The figures come from the MI callback (callbacks/measurements/mutual_information.py):
``ldh/{source}_token_mi_excess_d{d}`` with its 95 % interval ``..._excess_lo_d{d}`` / ``..._excess_hi_d{d}``
(bootstrap over images, null-matched) and ``ldh/{source}_dependence_radius`` (the first d whose
interval is not above 0; max_distance + 1 when every measured d is significant, i.e. beyond the grid).
With more than 256 token values (2^C > MAX_TOKEN_VALUES) the metric keeps only the bit-level curves
(``..._bit_mi_excess_*``, ``..._bit_dependence_radius``), and those are read instead ("level": "bit").

The radius is the FIRST d that is not significant; a significant d beyond it ("returns_at") means
the dependence comes back at longer range, so the verdict disagrees.
"""

from __future__ import annotations

from typing import NamedTuple

from networks.gamma_mask import gamma_name
from report.cells import TOKEN_MODELS, metric, token_cell_name
from report.formatting import fmt
from report.verdict_record import verdict

MAX_LOGGED_DISTANCE = 16  # the curves are read for d = 1.. until the first missing figure
LEVELS = ("token", "bit")  # which curves are read: the token MI, else (V > 256: tokens not measured) the bit MI
CLAIM = "LDH: dependence between latent tokens is local"
RULE = (
    "the training tokens' MI in excess of a permutation null (same two positions, different images) is significant at d = 1 "
    "(its 95 % bootstrap-over-images interval lies above 0), the dependence radius (the first d whose interval is not "
    "above 0) lies inside the measured grid, and no d beyond the radius is significant again; token-level curves, "
    "bit-level ones when the token curves were not logged (more than 256 token values)"
)


class MIBlock(NamedTuple):
    """The LDH figures of a sweep, keyed "data" (training tokens) and ``model-γ`` (each main cell's samples)."""

    mi: dict[str, list]  # raw plug-in MI: [[d, bits], ...]
    mi_excess: dict[str, list]  # [{"d", "excess", "low", "high", "significant"}, ...]
    dependence_radius: dict[str, dict]  # {"radius", "beyond_grid", "max_distance", "returns_at", "level"}


def excess_level(record: dict | None, source: str) -> str | None:
    """Which excess curve of `source` was logged: "token", else "bit" (no token curves when 2^C > 256), else None."""
    return next((level for level in LEVELS if metric(record, f"ldh/{source}_{level}_mi_excess_d1") is not None), None)


def excess_curve(record: dict | None, source: str) -> list[dict]:
    """MI excess over the permutation null with its 95 % interval, d = 1.. (bits; the token curve, else
    the bit curve: see excess_level); [] when not logged.

    ``significant``: the interval lies above 0 (None when the interval was not logged)."""
    level = excess_level(record, source)
    points: list[dict] = []
    if level is None:
        return points
    prefix = f"ldh/{source}_{level}_mi_excess"
    for d in range(1, MAX_LOGGED_DISTANCE + 1):
        excess = metric(record, f"{prefix}_d{d}")
        if excess is None:
            break
        low, high = metric(record, f"{prefix}_lo_d{d}"), metric(record, f"{prefix}_hi_d{d}")
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


def returns_at(curve: list[dict], radius: int | None) -> list[int]:
    """The d at or beyond the radius whose interval lies above 0 again (dependence that returns at longer range)."""
    if radius is None:
        return []
    return [p["d"] for p in curve if p["d"] >= radius and p["low"] is not None and p["low"] > 0]


def dependence_radius(record: dict | None, source: str, curve: list[dict]) -> dict:
    """The dependence radius of one source:
    ``{"radius": d | None, "beyond_grid": bool, "max_distance": D, "returns_at": [d, ...], "level": "token" | "bit" | None}``.

    The logged radius of the level `curve` was read at (``ldh/{source}_dependence_radius`` for tokens,
    ``ldh/{source}_bit_dependence_radius`` for bits) when present, else the first d of ``curve`` whose
    interval is not above 0. A radius past the last measured d (logged as max_distance + 1) reads
    radius None, beyond_grid True: every measured distance was significant. ``returns_at``: the d at or
    beyond the radius that are significant again. Not measured: radius None, beyond_grid False,
    max_distance None."""
    level = excess_level(record, source)
    max_distance = len(curve) or None
    radius = None
    if level == "bit":
        radius = metric(record, f"ldh/{source}_bit_dependence_radius")
    if radius is None:
        radius = metric(record, f"ldh/{source}_dependence_radius")
    if radius is None and curve and all(p["low"] is not None for p in curve):
        radius = next((float(p["d"]) for p in curve if not p["low"] > 0), float(len(curve) + 1))
    if radius is None or max_distance is None:
        return {"radius": None, "beyond_grid": False, "max_distance": max_distance, "returns_at": [], "level": level}
    beyond = radius > max_distance
    inside = None if beyond else int(radius)
    return {"radius": inside, "beyond_grid": beyond, "max_distance": max_distance, "returns_at": returns_at(curve, inside), "level": level}


def mi_block(results: dict, gammas: list) -> MIBlock:
    """The training tokens' and each main token cell's samples' (``model-γ``) curves and radii.

    "data" (what the LDH verdict reads) is the measurement on the most training images: the BL-AE cell measures
    the latents of its whole training split, the token cells those of their (often smaller) training subset,
    which is kept beside it as "data_subset" when the two differ. A significance-based radius grows with the
    number of images, so the verdict reads the most precise curve, never the least."""
    curves: dict[str, list] = {}
    excess: dict[str, list] = {}
    radius: dict[str, dict] = {}
    subset_record = None
    for gamma in gammas:
        for model in TOKEN_MODELS:
            record = results.get(token_cell_name(model, gamma))
            if record is None:
                continue
            curves.setdefault("data", raw_mi_curve(record, "data"))
            if subset_record is None and excess_curve(record, "data"):
                subset_record = record
            key = f"{model}-{gamma_name(gamma)}"
            curves[key], excess[key] = raw_mi_curve(record, "samples"), excess_curve(record, "samples")
            radius[key] = dependence_radius(record, "samples", excess[key])
    candidates = [r for r in (results.get("blae"), subset_record) if r is not None and excess_curve(r, "data")]
    data_record = max(candidates, key=training_images, default=None)  # the first (the BL-AE) on a tie
    data = {"data": excess_curve(data_record, "data")}
    data_radius = {"data": dependence_radius(data_record, "data", data["data"])}
    if subset_record is not None and data_record is not subset_record and training_images(subset_record) < training_images(data_record):
        data["data_subset"] = excess_curve(subset_record, "data")
        data_radius["data_subset"] = dependence_radius(subset_record, "data", data["data_subset"])
    for name, record in (("data", data_record), ("data_subset", subset_record)):
        if name in data_radius and training_images(record):
            data_radius[name]["images"] = training_images(record)
    return MIBlock(curves, {**data, **excess}, {**data_radius, **radius})


def training_images(record: dict | None) -> float:
    """How many training images a cell measured its training latents on (`mem/train_size`; 0 when not logged)."""
    return metric(record, "mem/train_size") or 0.0


def mi_sections(results: dict, gammas: list) -> dict:
    """report.json's LDH sections: ``{"mi": ..., "mi_excess": ..., "dependence_radius": ...}`` (see MIBlock)."""
    return mi_block(results, gammas)._asdict()


def distances_text(distances: list[int]) -> str:
    """``d = 3`` or ``d = 3, 4``."""
    return "d = " + ", ".join(str(d) for d in distances)


def radius_text(radius: dict) -> str:
    """``radius 3 (grid d ≤ 4)``, ``radius 2 (grid d ≤ 4), dependence returns at d = 3``,
    ``radius beyond the grid (every d ≤ 4 significant)``, ``radius not measured``."""
    if radius["beyond_grid"]:
        return f"radius beyond the grid (every d ≤ {radius['max_distance']} significant)"
    if radius["radius"] is None:
        return "radius not measured"
    text = f"radius {radius['radius']} (grid d ≤ {radius['max_distance']})"
    returning = radius.get("returns_at") or []
    return text + (f", dependence returns at {distances_text(returning)}" if returning else "")


def curve_text(curve: list[dict]) -> str:
    """``d = 1: 0.300 [0.290, 0.310], d = 2: …`` (bits)."""
    return ", ".join(f"d = {p['d']}: {fmt(p['excess'], 3)} [{fmt(p['low'], 3)}, {fmt(p['high'], 3)}]" for p in curve) + " bits"


def level_text(level: str | None) -> str:
    """Which curves the verdict read."""
    if level == "bit":
        return "bit-level MI excess (token curves not logged: more than 256 token values)"
    return "token-level MI excess"


def local_dependence_verdict(report: dict) -> dict:
    """LDH: the training tokens' excess is significant at d = 1, their dependence radius lies inside the
    grid, and no d at or beyond the radius is significant again (a return of the dependence at longer range
    disagrees). Reads the token-level curves, else the bit-level ones (the radius entry's "level")."""
    curve = report.get("mi_excess", {}).get("data") or []
    radius = dict(report.get("dependence_radius", {}).get("data") or dependence_radius(None, "data", curve))
    if not curve or curve[0]["low"] is None or (radius["radius"] is None and not radius["beyond_grid"]):
        return verdict(CLAIM, RULE, "MI excess over the permutation null, or its interval, not measured", "not measured")
    radius["returns_at"] = returns_at(curve, radius["radius"])  # from the curve itself (a report.json may predate the key)
    agrees = curve[0]["low"] > 0 and not radius["beyond_grid"] and not radius["returns_at"]
    images = radius.get("images")
    evidence = f"{level_text(radius.get('level'))}{f' over {images:.0f} training images' if images else ''}: {curve_text(curve)}; "
    evidence += radius_text(radius)
    subset = report.get("dependence_radius", {}).get("data_subset")
    if subset and subset.get("images"):  # the smaller sample, for reference: a significance radius grows with n
        evidence += f" (on the token models' {subset['images']:.0f}-image training subset: {radius_text(subset)})"
    return verdict(CLAIM, RULE, evidence, "agrees" if agrees else "disagrees")


def radius_cell(radius: dict) -> str:
    """The table's dependence-radius cell: ``2``, ``2 (returns at d = 3)``, ``> 4 (beyond the grid)``, ``–``."""
    if radius["beyond_grid"]:
        return f"> {radius['max_distance']} (beyond the grid)"
    returning = radius.get("returns_at") or []
    return fmt(radius["radius"]) + (f" (returns at {distances_text(returning)})" if returning else "")


def excess_table(report: dict) -> str:
    """The LDH section of report.md: one row per source (training tokens, each cell's samples), the
    excess [95 % interval] at every d and the dependence radius, with the d where the dependence
    returns beyond it ("" when nothing was measured). Rows read at bit level say so."""
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
        radius = dict(radii.get(name) or dependence_radius(None, name, excess[name]))
        radius["returns_at"] = returns_at(excess[name], radius["radius"])
        images = radius.get("images")
        on = f" ({images:.0f} images)" if images else ""
        label = {"data": f"training tokens{on}", "data_subset": f"training tokens, token models' subset{on}"}.get(name, f"samples {name}")
        label += " (bit MI)" if radius.get("level") == "bit" else ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {radius_cell(radius)} |")
    return (
        "## LDH: token dependence vs distance\n\nMI between tokens d cells apart in excess of a permutation null (bits) with "
        "its 95 % interval (bootstrap over images, its spread corrected by that of a permuted pairing); "
        'the dependence radius is the first d whose interval is not above 0, and "returns at" names the d beyond it '
        'whose interval lies above 0 again (non-local dependence: the verdict disagrees). Rows marked "bit MI" read the '
        "bit-level curves (no token curves above 256 token values).\n\n" + "\n".join(lines) + "\n\n"
    )

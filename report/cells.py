"""The names of a sweep's cells, as the sweep writes them and the report reads them, and how the report reads a cell.

A cell's record (the sweep's results, one per cell name) holds ``metrics`` (the run's logged figures,
NaN where a figure could not be computed) and ``role`` (what the cell is: ``kind``, ``model``, ``gamma``, ...).
"""

from __future__ import annotations

import math

from networks.gamma_mask import gamma_name

TOKEN_MODELS = ("kernel", "neural")
"""The two γ-ARVMs every sweep runs: the authors' non-parametric kernel estimator and the neural model."""


def token_cell_name(model: str, gamma: int | None) -> str:
    """``neural-gamma-2``, ``kernel-gamma-global``: the main cell of a token model at one γ (None: global)."""
    return f"{model}-gamma-{gamma_name(gamma)}"


def measured(value):
    """A logged figure as the report reads it: NaN (not computable) reads as None, like a figure never logged."""
    return None if isinstance(value, float) and math.isnan(value) else value


def metric(record: dict | None, key: str) -> float | None:
    """One figure of a cell (None: the cell is absent, never logged it, or logged NaN)."""
    return measured((record or {}).get("metrics", {}).get(key))


def metrics_of(record: dict) -> dict:
    """Every figure of a cell, NaN read as None (``key in`` still tells a logged figure from a missing one)."""
    return {key: measured(value) for key, value in (record.get("metrics") or {}).items()}


def role(record: dict) -> dict:
    """What the cell is (``{}`` for a record without a role)."""
    return record.get("role") or {}


def cells_of(results: dict, kind: str) -> list[tuple[str, dict]]:
    """``(name, record)`` of every cell whose role is of this kind ("gamma", "vae", "spread", "phase", "probe"), in results order."""
    return [(name, record) for name, record in results.items() if role(record).get("kind") == kind]

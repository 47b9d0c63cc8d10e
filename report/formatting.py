"""How a number reads in report.md and in a verdict's evidence ("–" where it was not measured)."""

from __future__ import annotations


def fmt(value, digits: int = 2) -> str:
    """Fixed point; tiny non-zero values (overlaps) in scientific notation so they do not read as 0."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.2e}" if value != 0 and abs(value) < 5 * 10 ** -(digits + 1) else f"{value:.{digits}f}"


def fixed(value, digits: int = 3) -> str:
    """Fixed point only (the probes' rates and lengths, never tiny): floats to ``digits`` places, the rest as str."""
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

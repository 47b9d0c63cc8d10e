"""How a number reads in report.md and in a verdict's evidence ("–" where it was not measured)."""

from __future__ import annotations

import math


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


def log10_text(value, digits: int = 1) -> str:
    """A log10 figure (an overlap, a bound that may underflow as a raw float) as ``10^-14.5``; exactly 0 (log10 = -inf)
    reads "0 (disjoint supports)"; "–" where it was not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == -math.inf:
        return "0 (disjoint supports)"
    return f"10^{value:.{digits}f}"


def decades(value, digits: int = 1) -> str:
    """A difference of log10 figures: ``2.3 decades``; "∞" where one side is exactly 0."""
    if value is None:
        return "–"
    return "∞ decades" if math.isinf(value) else f"{value:.{digits}f} decades"

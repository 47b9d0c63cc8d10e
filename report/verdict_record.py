"""One verdict as report.json holds it: the claim, who it is about, the rule, the numbers it read, the outcome.

Its own module so that every module that judges a claim (report/verdicts.py, report/memorization_verdicts.py)
builds the same record without importing the others.
"""

from __future__ import annotations


def verdict(claim: str, rule: str, evidence: str, outcome: str, model: str | None = None) -> dict:
    """One verdict as report.json holds it (``model``: who the claim is about, None for a claim about the autoencoders)."""
    return {"claim": claim, "model": model, "rule": rule, "evidence": evidence, "outcome": outcome}

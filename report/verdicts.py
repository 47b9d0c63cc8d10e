"""The verdicts: one per claim (and per model the claim is about), each a rule, the numbers it read, an outcome.

Every verdict is computed from the report's own numbers by the rule printed next to it. A claim that the
numbers do not support reads "disagrees"; a claim about a cell whose training loss had not plateaued reads
"not fitted"; one whose figures are missing reads "not measured". `verdicts(report)` is a pure function of
report.json, so it can be fed reports that agree and reports that disagree (tests/report/test_verdicts.py).
The rules live beside the numbers they read: the MEPS claims and consistency checks in report/meps.py, the
memorization claims in report/memorization_verdicts.py, LDH in report/ldh.py.
"""

from __future__ import annotations

from report.cells import TOKEN_MODELS
from report.ldh import local_dependence_verdict
from report.memorization_verdicts import memorization_verdicts
from report.meps import meps_verdicts

FRONTIER_MIN_NOVEL = 10  # KID of fewer novel samples is too noisy to draw on the frontier (it stays in the table)


def verdicts(report: dict) -> list[dict]:
    """Every verdict of the report: the MEPS claims and consistency checks (report/meps.py), LDH, then each token model's claims."""
    lines = [*meps_verdicts(report), local_dependence_verdict(report)]
    for model in TOKEN_MODELS:
        lines += memorization_verdicts(report, model)
    return lines

"""pytest plugin of the fault-injection suite: every fault a test tried, whether the run survived it and
what data was lost, printed as a table at the end of the pytest output (``make test`` shows it).

A test takes the ``fault`` fixture and calls ``fault.tried(name)`` before injecting, then
``fault.survived(data_lost="none", outcome=...)`` once its checks passed; a fault whose test failed
before that is reported as NOT survived.

Any test file adds rows the same way: ``pytest_plugins = ["tests.fault_report"]`` at its top (loading
it from several files is fine, the table is one), then the ``fault`` fixture as above. A row of a
resume states where the resumed run ended against the uninterrupted run: ``tests/final_state.py``
(``of_job(folder).same_as(of_job(reference))`` asserts the final global step, epoch and val/ metrics
and returns the outcome text, e.g. "final step 12 = 12, epoch 3 = 3, val/ metrics identical").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

RECORDS: list[FaultRecord] = []


@dataclass
class FaultRecord:
    name: str
    test: str
    survived: bool = False
    outcome: str = "test failed before the fault was handled"
    data_lost: str = "?"
    seconds: float = 0.0


@dataclass
class FaultLog:
    test: str
    records: list[FaultRecord] = field(default_factory=list)

    def tried(self, name: str) -> FaultRecord:
        record = FaultRecord(name, self.test)
        self.records.append(record)
        RECORDS.append(record)
        return record

    def survived(self, outcome: str, data_lost: str = "none", record: FaultRecord | None = None) -> None:
        record = record or self.records[-1]
        record.survived, record.outcome, record.data_lost = True, outcome, data_lost


@pytest.fixture
def fault(request) -> FaultLog:
    return FaultLog(request.node.name)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not RECORDS:
        return
    tr = terminalreporter
    tr.section("fault injection summary")
    width = max(len(r.name) for r in RECORDS)
    tr.write_line(f"{'fault':<{width}}  {'survived':<8}  {'data lost':<10}  outcome")
    for r in RECORDS:
        tr.write_line(f"{r.name:<{width}}  {'yes' if r.survived else 'NO':<8}  {r.data_lost:<10}  {r.outcome}")
    survived = [r for r in RECORDS if r.survived]
    lost = sum(r.data_lost != "none" for r in survived)
    tr.write_line(
        f"faults tried: {len(RECORDS)}, survived: {len(survived)}, not survived: {len(RECORDS) - len(survived)},"
        f" survived with data lost: {lost}"
    )

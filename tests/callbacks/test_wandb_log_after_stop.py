"""``callbacks.run.preemption._LogAfterStop``: a W&B log call that fails because SLURM's SIGTERM ended W&B's service
process is skipped; any other failure is not.

SLURM signals every process of the job step, this one and W&B's service among them, one after the other: the
SIGTERM can land during a ``run.log`` call, or just after the service's lost connection made it fail."""

from __future__ import annotations

import signal
import threading

import pytest

from callbacks.run import preemption
from callbacks.run.preemption import _LogAfterStop
from runtime.signals import StopRequests


@pytest.fixture
def let_go(monkeypatch) -> list[str]:
    """The calls to ``_let_wandb_go`` (W&B's teardown), recorded instead of made."""
    calls: list[str] = []
    monkeypatch.setattr(preemption, "_let_wandb_go", lambda: calls.append("teardown"))
    return calls


def test_a_sigterm_during_the_call_skips_the_lost_connection(let_go, capsys):
    requests = StopRequests()
    tried: list[dict] = []

    def log(data: dict) -> None:
        tried.append(data)
        requests.received = signal.SIGTERM  # the handler ran while the call waited on the dying service
        raise ConnectionResetError(104, "Connection reset by peer")

    logged = _LogAfterStop(log, requests)
    assert logged({"loss": 1.0}) is None
    assert logged({"loss": 0.5}) is None  # not tried again: the service is gone
    assert tried == [{"loss": 1.0}] and logged.failed and let_go == ["teardown"]
    assert "W&B could not log after the stop request" in capsys.readouterr().err


def test_a_sigterm_just_after_the_failure_is_waited_for(let_go):
    requests = StopRequests()
    threading.Timer(0.2, lambda: setattr(requests, "received", signal.SIGTERM)).start()

    def log(data: dict) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    assert _LogAfterStop(log, requests)({"loss": 1.0}) is None and let_go == ["teardown"]


def test_a_lost_connection_without_a_stop_request_is_raised(let_go, monkeypatch):
    monkeypatch.setattr(preemption, "LOST_SERVICE_WAIT_S", 0.1)

    def log(data: dict) -> None:
        raise ConnectionResetError(104, "Connection reset by peer")

    with pytest.raises(ConnectionResetError):
        _LogAfterStop(log, StopRequests())({"loss": 1.0})
    assert let_go == []


def test_another_failure_after_a_stop_request_is_raised_and_w_and_b_kept(let_go):
    """After SIGUSR1 W&B's service is alive: a failure of another kind is a bug to see, and W&B must stay, so that
    the run is still marked as preempting and its summary written."""
    requests = StopRequests()
    requests.received = signal.SIGUSR1

    def log(data: dict) -> None:
        raise ValueError("a value W&B cannot log")

    logged = _LogAfterStop(log, requests)
    with pytest.raises(ValueError, match="cannot log"):
        logged({"loss": object()})
    assert not logged.failed and let_go == []

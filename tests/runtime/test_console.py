"""train.py as a command: one line per input error or fault, stop requests, the command that resumes."""

from __future__ import annotations

import errno
import os
import time

import pytest

import train
from runtime import errors
from runtime.console import resume_command


@pytest.mark.parametrize(
    "error, started, code",
    [
        (ValueError("gamma must be an int >= 1 or None (global), got 0"), False, 2),
        (FileNotFoundError("autoencoder checkpoint 'x.ckpt' does not exist"), False, 2),
        (OSError(errno.ENOSPC, "No space left on device"), True, 1),
        (errors.MepsFault("training loss is nan at global step 4"), True, 1),
        (RuntimeError("[gloo] Connection closed by peer [127.0.0.1]:1234"), True, 1),
        (ValueError("a bug deep in a metric"), True, None),  # after the loop started: the traceback stays
        (KeyError("bug"), False, None),
    ],
)
def test_console_main_turns_input_errors_and_faults_into_one_line(monkeypatch, capsys, error, started, code):
    def failing_main(argv):
        errors.mark_loop_started(started)
        raise error

    monkeypatch.setattr(train, "main", failing_main)
    monkeypatch.delenv("MEPS_DEBUG", raising=False)
    if code is None:
        with pytest.raises(type(error)):
            train.console_main([])
        return
    assert train.console_main([]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "MEPS_DEBUG=1" in err
    monkeypatch.setenv("MEPS_DEBUG", "1")
    with pytest.raises(type(error)):
        train.console_main([])


def test_a_stop_request_is_a_flag_and_a_second_ctrl_c_stops_at_once(capsys):
    import signal

    from runtime.signals import StopRequests

    requests = StopRequests().install()
    try:
        assert signal.getsignal(signal.SIGTERM) == requests.handle
        requests.handle(signal.SIGINT, None)
        assert requests.name == "SIGINT" and "Ctrl-C again to stop at once" in capsys.readouterr().out
        requests.handle(signal.SIGTERM, None)
        assert requests.name == "SIGINT"  # the first request is the one acted on
        with pytest.raises(KeyboardInterrupt):
            requests.handle(signal.SIGINT, None)
    finally:
        requests.restore()
    assert signal.getsignal(signal.SIGTERM) != requests.handle


def test_before_training_a_stop_request_ends_the_run_at_once():
    import signal

    from runtime.errors import Preempted
    from runtime.signals import stop_at_once

    with pytest.raises(Preempted, match="stopped by SIGTERM before training started") as excinfo, stop_at_once():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises first
    assert excinfo.value.exit_code == 75 and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_resume_command_is_the_same_command_with_ckpt_path_last():
    assert (
        resume_command(["fit", "-c", "a b.yaml", "--ckpt_path", "x.ckpt", "--trainer.max_steps=5"])
        == "python train.py fit -c 'a b.yaml' --trainer.max_steps=5 --ckpt_path last"
    )

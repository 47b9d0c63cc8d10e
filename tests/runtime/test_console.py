"""train.py as a command: one line per input error or fault, stop requests, the command that resumes."""

from __future__ import annotations

import errno
import os
import sys
import time

import pytest

import train
from runtime import errors
from runtime.console import resume_command
from runtime.errors import Preempted, StoppedAtOnce


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
    monkeypatch.setenv("MEPS_DEBUG", "1")  # the traceback as well, and the same exit code (2 stays 2)
    assert train.console_main([]) == code
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and f"{type(error).__name__}: " in err and err.splitlines()[-1].startswith("error: ")


def test_meps_debug_keeps_a_bug_a_traceback(monkeypatch):
    def failing_main(argv):
        raise KeyError("bug")

    monkeypatch.setattr(train, "main", failing_main)
    monkeypatch.setenv("MEPS_DEBUG", "1")
    with pytest.raises(KeyError):
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


# ------------------------------------------------------------------ what a stop says (issue 22: no wrong advice)

FIT = ["fit", "-c", "configs/blae/digits.yaml"]


def stopped(monkeypatch, capsys, stop: BaseException, argv: list[str] = FIT) -> tuple[int, str]:
    """Exit code and stderr of ``train.py`` when ``stop`` ends its ``main``."""

    def stopping_main(args):
        raise stop

    monkeypatch.setattr(train, "main", stopping_main)
    code = train.console_main(argv)
    return code, capsys.readouterr().err


def test_ctrl_c_during_start_up_is_one_line_that_says_nothing_was_saved(monkeypatch, capsys):
    errors.mark_loop_started(False)
    code, err = stopped(monkeypatch, capsys, KeyboardInterrupt())  # while configs are parsed, classes built, data read
    assert code == 130
    assert err == (
        "stopped by Ctrl-C before training started: nothing was saved; run the same command again:"
        " python train.py fit -c configs/blae/digits.yaml\n"
    )


def test_ctrl_c_caught_by_lightning_during_set_up_is_the_same_line(monkeypatch, capsys):
    """Inside ``trainer.fit`` Lightning turns a KeyboardInterrupt into ``sys.exit(1)`` (the interrupt is its context)."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)
    except SystemExit as lightning_exit:
        code, err = stopped(monkeypatch, capsys, lightning_exit)
    assert code == 130 and err.startswith("stopped by Ctrl-C before training started: nothing was saved")
    assert "second Ctrl-C" not in err and "--ckpt_path last" not in err


def test_a_stop_request_before_anything_was_saved_gives_no_resume_command(monkeypatch, capsys):
    code, err = stopped(monkeypatch, capsys, Preempted("stopped by SIGTERM before training started", "SIGTERM"))
    assert code == 75  # a scheduler's "retry": the same command starts the run again
    assert err == (
        "stopped by SIGTERM before training started: nothing was saved; run the same command again:"
        " python train.py fit -c configs/blae/digits.yaml\n"
    )
    stop = Preempted("interrupted by Ctrl-C at global step 0 (epoch 0, batch 0): no checkpoint (nothing trained yet)", "SIGINT", 0)
    code, err = stopped(monkeypatch, capsys, stop)
    assert code == 130 and "nothing was saved; run the same command again" in err and "--ckpt_path last" not in err


def test_a_stop_request_with_a_checkpoint_gives_the_resume_command(monkeypatch, capsys):
    stop = Preempted("preempted by SIGTERM at global step 6: checkpoint out/last.ckpt", "SIGTERM", 6, "out/last.ckpt")
    code, err = stopped(monkeypatch, capsys, stop)
    assert code == 75
    assert err.splitlines() == [
        "preempted by SIGTERM at global step 6: checkpoint out/last.ckpt (exit code 75: resumable)",
        "to resume: python train.py fit -c configs/blae/digits.yaml --ckpt_path last",
    ]


def test_a_second_ctrl_c_says_what_was_kept(monkeypatch, capsys):
    at_once = StoppedAtOnce()
    at_once.step, at_once.checkpoint = 7, "out/last.ckpt"
    code, err = stopped(monkeypatch, capsys, at_once)
    assert code == 130
    assert err.splitlines() == [
        "stopped at once by a second Ctrl-C at global step 7: out/last.ckpt holds the last step saved before it",
        "to resume: python train.py fit -c configs/blae/digits.yaml --ckpt_path last",
    ]
    nothing_yet = StoppedAtOnce()
    nothing_yet.step = 2
    code, err = stopped(monkeypatch, capsys, nothing_yet)
    assert code == 130 and "no checkpoint was saved yet; run the same command again" in err and "--ckpt_path" not in err


def test_a_second_ctrl_c_raises_stopped_at_once():
    import signal

    from runtime.signals import StopRequests

    requests = StopRequests()
    requests.handle(signal.SIGINT, None)
    with pytest.raises(StoppedAtOnce):
        requests.handle(signal.SIGINT, None)


def test_importing_the_console_does_not_import_lightning():
    """``train.py`` can only turn a Ctrl-C during its imports into one line if the console comes first and is light."""
    import subprocess

    code = "import sys, runtime.console; print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torch')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=errors.__file__.rsplit("/runtime/", 1)[0]
    )
    assert out.stdout.strip() == "[]"

"""LineProgress: plain lines for a log file, every N steps and after each validation."""

from types import SimpleNamespace

import pytest
import torch

from callbacks.run.line_progress import LineProgress, format_metrics


def test_format_metrics_keeps_scalars_only():
    assert (
        format_metrics({"train/loss": torch.tensor(0.012345), "v_num": "ab12", "n": 3, "grid": torch.zeros(2)}) == "train/loss=0.01235 n=3"
    )


def fake_trainer(step: int) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=step,
        max_steps=100,
        current_epoch=0,
        callback_metrics={"train/loss": torch.tensor(0.5)},
        progress_bar_metrics={},
        loggers=[],
        sanity_checking=False,
        state=SimpleNamespace(fn="fit"),
    )


def test_a_line_every_n_steps_and_none_in_between(capsys):
    progress = LineProgress(every_n_steps=10)
    for step in range(1, 31):
        progress.on_train_batch_end(fake_trainer(step), None, None, None, step)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("train/loss=0.5" in line for line in lines)
    assert [line.split("step ")[1].split("/")[0] for line in lines] == ["10", "20", "30"]
    progress.disable()
    progress.on_train_batch_end(fake_trainer(40), None, None, None, 40)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="every_n_steps"):
        LineProgress(every_n_steps=0)

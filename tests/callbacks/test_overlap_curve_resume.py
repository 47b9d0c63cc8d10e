"""The overlap training curve across a crash: resumed from a mid-epoch checkpoint, the run ends at the same step with
the same validation metrics and the same `ovl/log10_mean` series (results.json "series") as an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

import train
from tests import final_state
from tests.callbacks.test_resumable_run import TWO_EPOCHS, checkpoint_every_step
from tests.helpers import InjectedFault


def fit(args: list[str], folder) -> tuple[final_state.FinalState, list[list[float]]]:
    """(where it ended: final global step, epoch, val/ metrics; the overlap callback's curve) of one `train.py fit`."""
    cli = train.main([*args, "--trainer.default_root_dir", str(folder)])
    (overlap,) = [c for c in cli.trainer.callbacks if type(c).__name__ == "OverlapCallback"]
    return final_state.of_cli(cli), overlap.results_series()["ovl/log10_mean"]


def test_a_resumed_run_keeps_the_overlap_curve_of_an_uninterrupted_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def args(steps: str) -> list[str]:
        overlap = ["--trainer.callbacks+=callbacks.measurements.overlap.OverlapCallback", "--trainer.callbacks.init_args.num_images"]
        overlap += ["24", "--trainer.callbacks.init_args.every_n_train_steps", "2"]
        return [*TWO_EPOCHS, *overlap, *checkpoint_every_step(steps)]

    expected = fit(args("steps-a"), tmp_path / "uninterrupted")
    with pytest.raises(InjectedFault):
        crash = ["--trainer.callbacks+=tests.helpers.FaultInjector", "--trainer.callbacks.init_args.step", "6"]
        fit([*args("steps-b"), *crash], tmp_path / "b")
    assert torch.load(tmp_path / "steps-b" / "last.ckpt", weights_only=True)["global_step"] == 6  # mid-epoch
    ended, curve = fit([*args("steps-b"), "--ckpt_path", str(tmp_path / "steps-b" / "last.ckpt")], tmp_path / "b")
    assert expected[0].global_step == 8
    ended.same_as(expected[0])
    assert [s for s, _ in curve] == [s for s, _ in expected[1]] == [0, 1, 2, 4, 6, 8]  # the points before the crash kept
    assert [v for _, v in curve] == pytest.approx([v for _, v in expected[1]], abs=1e-9)

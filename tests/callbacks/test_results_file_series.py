"""ResultsFile writes a top-level "series" from every callback that exposes `results_series()`."""

import json
import math
from types import SimpleNamespace

import torch

from callbacks.measurements.overlap import OverlapCallback
from callbacks.run.results_file import ResultsFile


class CurveProvider:
    def results_series(self):
        return {"demo/curve": [[0, 1.5], [10, -math.inf]]}


def fake_trainer(callbacks):
    return SimpleNamespace(
        is_global_zero=True,
        global_step=16,
        callback_metrics={"ovl/log10_mean": torch.tensor(-7.5), "ovl/mean": torch.tensor(0.0)},
        checkpoint_callback=None,
        callbacks=callbacks,
    )


def test_series_of_every_provider_land_in_results_json(tmp_path):
    overlap = OverlapCallback(num_images=4)
    for step, value in [(2, -3.0), (0, -1.0), (1, -2.0), (2, -3.5)]:  # out of order, step 2 measured twice (a resume)
        overlap.record_curve_point(step, value)
    results = ResultsFile(str(tmp_path / "results.json"))
    results.write(fake_trainer([results, overlap, CurveProvider(), object()]), "fit")
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["series"] == {"ovl/log10_mean": [[0, -1.0], [1, -2.0], [2, -3.5]], "demo/curve": [[0, 1.5], [10, -math.inf]]}
    assert record["metrics"]["ovl/log10_mean"] == -7.5 and record["global_step"] == 16


def test_no_provider_gives_an_empty_series(tmp_path):
    results = ResultsFile(str(tmp_path / "results.json"))
    results.write(fake_trainer([results]), "validate")
    assert json.loads((tmp_path / "results.json").read_text())["series"] == {}

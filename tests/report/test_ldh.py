"""report/ldh.py: the LDH sections, verdict and table; the verdict disagrees on token grids built with
long-range dependence (mirror copies: every d significant, or a left-right mirror whose dependence
returns at d = 3 beyond a radius of 2) run through the real metric, and agrees on nearest-neighbour
grids; above 256 token values it reads the bit-level curves."""

import json

import pytest
import torch

from callbacks.measurements.mutual_information import ldh_scalars
from metrics.mutual_information import TokenMutualInformation
from report.ldh import dependence_radius, excess_curve, excess_table, local_dependence_verdict, mi_sections
from tests.report.sweep_results import GAMMAS, agreeing_results, excess_metrics

NUM_BITS = 4  # tokens 4 u_j + u_{j+1}, u in 0..3
HEIGHT, WIDTH, MAX_DISTANCE = 7, 8, 4


def nearest_neighbour_grids(num: int, seed: int) -> torch.Tensor:
    """(num, 7, 8) grids whose only dependence is between horizontal neighbours: token (i, j) =
    4 u_ij + u_i(j+1), u independent uniform in 0..3 (neighbours share one u: 2 bits at d = 1, exactly
    independent at d >= 2 and between rows)."""
    u = torch.randint(0, 4, (num, HEIGHT, WIDTH + 1), generator=torch.Generator().manual_seed(seed))
    return 4 * u[:, :, :-1] + u[:, :, 1:]


def mirrored(grids: torch.Tensor) -> torch.Tensor:
    """The right half mirrors the left (column j = column 7 - j) and the bottom rows mirror the top
    (row i = row 6 - i, row 3 in the middle). The MI at distance d counts pairs (p, p + d) along rows
    and columns: mirror partners along a row of even width are an odd distance apart (d = 1, 3, 5, 7),
    along a column of odd height an even distance apart (d = 2, 4, 6), so every d of the grid has
    pairs of equal tokens however far apart (over independent tokens a left-right mirror alone would
    leave every even d independent)."""
    out = grids.clone()
    out[:, :, WIDTH // 2 :] = out[:, :, : WIDTH // 2].flip(2)
    out[:, HEIGHT // 2 + 1 :, :] = out[:, : HEIGHT // 2, :].flip(1)
    return out


def left_right_mirrored(grids: torch.Tensor) -> torch.Tensor:
    """The right half mirrors the left (column j = column 7 - j), nothing else: over independent tokens
    mirror partners along a row are 1, 3, 5, 7 apart, so d = 1 and d = 3 carry dependence and d = 2, 4
    none (radius 2, dependence returning at d = 3)."""
    out = grids.clone()
    out[:, :, WIDTH // 2 :] = out[:, :, : WIDTH // 2].flip(2)
    return out


def report_of(tokens: torch.Tensor, num_bits: int = NUM_BITS) -> dict:
    """The report sections of a BL-AE stage whose training tokens are `tokens`, logged as the callback logs them."""
    metric = TokenMutualInformation(num_bits, max_distance=MAX_DISTANCE, num_permutations=20)
    metric.update(tokens, torch.arange(len(tokens)))
    metrics = {f"ldh/{key}": float(value) for key, value in ldh_scalars("data", metric.compute()).items()}
    results = {"blae": {"metrics": metrics, "role": {"stage": "blae", "kind": "autoencoder"}}}
    return json.loads(json.dumps(mi_sections(results, [])))  # report.json round trip


def test_mirror_grids_make_the_verdict_disagree_and_nearest_neighbour_grids_agree():
    local = report_of(nearest_neighbour_grids(300, seed=0))
    assert local["mi_excess"]["data"][0]["significant"] and not local["mi_excess"]["data"][1]["significant"]
    assert local["dependence_radius"]["data"] == {
        "radius": 2,
        "beyond_grid": False,
        "max_distance": MAX_DISTANCE,
        "returns_at": [],
        "level": "token",
    }
    assert local_dependence_verdict(local)["outcome"] == "agrees"

    far = report_of(mirrored(nearest_neighbour_grids(300, seed=0)))
    assert all(p["significant"] and p["low"] > 0.02 for p in far["mi_excess"]["data"])  # equal tokens at every d
    assert far["dependence_radius"]["data"] == {
        "radius": None,
        "beyond_grid": True,
        "max_distance": MAX_DISTANCE,
        "returns_at": [],
        "level": "token",
    }
    line = local_dependence_verdict(far)
    assert line["outcome"] == "disagrees" and "beyond the grid" in line["evidence"] and "d = 4:" in line["evidence"]
    assert "> 4 (beyond the grid)" in excess_table(far)


def test_a_left_right_mirror_whose_dependence_returns_beyond_the_radius_disagrees():
    u = torch.randint(0, 2**NUM_BITS, (300, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(1))
    report = report_of(left_right_mirrored(u))
    significant = [p["significant"] for p in report["mi_excess"]["data"]]
    assert significant == [True, False, True, False]  # mirror partners along a row are an odd distance apart
    radius = report["dependence_radius"]["data"]
    assert radius["radius"] == 2 and not radius["beyond_grid"] and radius["returns_at"] == [3]  # the radius stays the FIRST gap
    line = local_dependence_verdict(report)
    assert line["outcome"] == "disagrees" and "dependence returns at d = 3" in line["evidence"], line["evidence"]
    assert "| 2 (returns at d = 3) |" in excess_table(report)


def test_above_256_token_values_the_verdict_reads_the_bit_curves():
    """9-bit tokens (512 values): the metric logs only bit curves. Horizontal dominoes of independent
    tokens (columns 2k and 2k + 1 equal) are local (radius 2); their left-right mirror is not."""
    num_bits = 9
    u = torch.randint(0, 2**num_bits, (300, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(2))
    dominoes = u[:, :, ::2].repeat_interleave(2, dim=2)
    local = report_of(dominoes, num_bits)
    assert not TokenMutualInformation(num_bits).with_tokens  # no token curves logged: only bit_mi_* and bit_dependence_radius
    assert local["dependence_radius"]["data"]["level"] == "bit" and local["dependence_radius"]["data"]["radius"] == 2
    line = local_dependence_verdict(local)
    assert line["outcome"] == "agrees" and line["evidence"].startswith("bit-level MI excess"), line["evidence"]
    assert "| training tokens (bit MI) |" in excess_table(local)

    far = report_of(left_right_mirrored(u), num_bits)
    assert far["dependence_radius"]["data"]["returns_at"] == [3]
    line = local_dependence_verdict(far)
    assert line["outcome"] == "disagrees" and "bit-level" in line["evidence"] and "returns at d = 3" in line["evidence"]


def test_no_dependence_at_all_disagrees_at_d1():
    u = torch.randint(0, 2**NUM_BITS, (300, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(1))
    independent = report_of(u)
    assert independent["dependence_radius"]["data"]["radius"] == 1
    assert local_dependence_verdict(independent)["outcome"] == "disagrees"


def test_sections_of_a_sweep_key_the_data_and_each_cell():
    results = agreeing_results()  # the BL-AE logs the data curve: 0.3, 0.1, 0.02, 0.0 ± 0.01
    results["kernel-gamma-1"]["metrics"] |= {
        key.replace("data", "samples"): value for key, value in excess_metrics([0.3, 0.2, 0.1], half_width=0.01).items()
    }
    results["kernel-gamma-1"]["metrics"]["ldh/samples_dependence_radius"] = 4.0  # logged: max_distance + 1
    sections = mi_sections(results, GAMMAS)
    assert set(sections) == {"mi", "mi_excess", "dependence_radius"}
    assert sections["dependence_radius"]["data"] == {  # from the curve
        "radius": 4,
        "beyond_grid": False,
        "max_distance": 4,
        "returns_at": [],
        "level": "token",
    }
    assert sections["dependence_radius"]["kernel-1"] == {
        "radius": None,
        "beyond_grid": True,
        "max_distance": 3,
        "returns_at": [],
        "level": "token",
    }
    assert sections["mi_excess"]["neural-2"] == [] and sections["dependence_radius"]["neural-2"]["radius"] is None
    report = dict(sections)
    assert local_dependence_verdict(report)["outcome"] == "agrees"
    table = excess_table(report)
    assert "| training tokens | 0.300 [0.290, 0.310]" in table and "| samples kernel-1 |" in table and "samples neural-2" not in table


@pytest.mark.parametrize(
    ("curve", "outcome"),
    [
        ([0.3, 0.1, 0.02, 0.0], "agrees"),
        ([0.005, 0.004, 0.003], "disagrees"),  # d = 1 not significant
        ([0.3, 0.29, 0.3], "disagrees"),  # significant at every d: the radius is beyond the grid
        ([0.3, 0.0, 0.3], "disagrees"),  # radius 2 (the FIRST non-significant d), but the dependence returns at d = 3
        ([0.3, 0.0, 0.0, 0.3], "disagrees"),  # ... or at d = 4
        ([0.3, 0.1, 0.0, 0.005], "agrees"),  # an interval that includes 0 beyond the radius is not a return
    ],
)
def test_the_verdict_reads_d1_the_radius_and_any_return_beyond_it(curve, outcome):
    record = {"metrics": excess_metrics(curve)}
    report = {"mi_excess": {"data": excess_curve(record, "data")}}
    report["dependence_radius"] = {"data": dependence_radius(record, "data", report["mi_excess"]["data"])}
    assert local_dependence_verdict(report)["outcome"] == outcome


def test_a_report_without_returns_at_still_reads_the_return_from_the_curve():
    record = {"metrics": excess_metrics([0.3, 0.0, 0.3])}
    curve = excess_curve(record, "data")
    old = {"radius": 2, "beyond_grid": False, "max_distance": 3}  # a report.json written before "returns_at"
    line = local_dependence_verdict({"mi_excess": {"data": curve}, "dependence_radius": {"data": old}})
    assert line["outcome"] == "disagrees" and "dependence returns at d = 3" in line["evidence"]
    assert "| 2 (returns at d = 3) |" in excess_table({"mi_excess": {"data": curve}, "dependence_radius": {"data": old}})


def test_missing_figures_read_not_measured():
    assert local_dependence_verdict({})["outcome"] == "not measured"
    no_interval = {"mi_excess": {"data": [{"d": 1, "excess": 0.3, "low": None, "high": None, "significant": None}]}}
    assert local_dependence_verdict(no_interval)["outcome"] == "not measured"
    assert excess_table({"mi_excess": {"data": []}}) == ""


def test_the_verdict_reads_the_training_latents_measured_on_the_most_images():
    """A significance radius grows with the number of images: the BL-AE cell's curve over all 1617 training images
    (significant at every d: beyond the grid) is what the verdict reads, not the token cells' 100-image subset (radius
    3), which stays in the report beside it; with the subset alone the verdict reads the subset."""
    results = agreeing_results()
    results["blae"]["metrics"] |= excess_metrics([0.36, 0.038, 0.009, 0.007], half_width=0.002) | {"mem/train_size": 1617.0}
    for name, record in results.items():
        if name.startswith(("kernel-gamma", "neural-gamma")):
            record["metrics"] |= excess_metrics([0.31, 0.024, 0.004, 0.005], half_width=0.008)  # train_size 100
    sections = mi_sections(results, GAMMAS)
    assert sections["dependence_radius"]["data"]["beyond_grid"] and sections["dependence_radius"]["data"]["images"] == 1617
    assert sections["dependence_radius"]["data_subset"]["radius"] == 3 and sections["dependence_radius"]["data_subset"]["images"] == 100
    outcome = local_dependence_verdict(sections)
    assert outcome["outcome"] == "disagrees" and "1617 training images" in outcome["evidence"] and "100-image" in outcome["evidence"]
    assert "token models' subset (100 images)" in excess_table(sections)

    del results["blae"]["metrics"]["ldh/data_token_mi_excess_d1"]  # no BL-AE curve: the subset is all there is
    only_subset = mi_sections(results, GAMMAS)
    assert "data_subset" not in only_subset["dependence_radius"] and only_subset["dependence_radius"]["data"]["radius"] == 3
    assert local_dependence_verdict(only_subset)["outcome"] == "agrees"

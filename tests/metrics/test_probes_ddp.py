"""2-process gloo run: both probes, synced over uneven (and empty) rank shares, equal one process exactly.

Training sources 0..2 split 2 + 1, the single control grid 1 + 0 (rank 1 has no control share but
takes part in every collective). Per-sample seeds: the completions, hence the figures, must not
depend on the number of ranks.
"""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from callbacks.measurements.probes import ProbesCallback
from tests.callbacks.probe_toys import ToyData, iid_grids, kernel_model, toy_trainer
from tests.helpers import free_port

C, H, W = 3, 6, 6


def setting():
    train = iid_grids(6, H, W, C, 0)
    data = ToyData({"train": train, "val": iid_grids(4, H, W, C, 1)}, C)
    probes = ProbesCallback(num_sources=3, num_control=1, fb_sources=3, noise_levels=[0.0, 0.3, 1.0], batch_size=1)
    return data, kernel_model(train, C, 1, flip_prob=0.05), probes


def both_probes(rank: int, world_size: int) -> dict:
    data, model, probes = setting()
    trainer = toy_trainer(data, rank, world_size)
    return {"extraction": probes.extraction(trainer, model), "forward_backward": probes.forward_backward(trainer, model)}


def worker(rank, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        torch.save(both_probes(rank, 2), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_with_uneven_and_empty_shares_equal_one_process(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    single = both_probes(0, 1)
    assert single["extraction"]["count_rows3"] == 3 and single["extraction"]["control_count_rows3"] == 1
    assert single["forward_backward"]["changed_fraction_p1"] > 0  # something to compare
    for rank in (0, 1):
        synced = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(synced, single, rtol=0, atol=0, equal_nan=True)

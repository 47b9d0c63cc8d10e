"""More than one machine: `train.py fit` as 2 "nodes" x 1 process through torchrun on this machine.

Two torchrun agents, node ranks 0 and 1, static rendezvous on 127.0.0.1, gloo on CPU; Lightning's
own torchrun integration (TorchElasticEnvironment) does the rest. This is the command the
README's multi-node section states, with 127.0.0.1 for the master node's address.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import DEBUG_PRESET, DIGITS_CONFIG, REPO_ROOT, run_train, subprocess_env, wandb_runs, wandb_summary

TORCHRUN = Path(sys.executable).with_name("torchrun")
VAL_KEYS = ("val/psnr", "val/psnr_soft", "val/bin_rate", "val/bit_entropy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_node(node_rank: int, port: int, args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    command = [
        str(TORCHRUN),
        "--nnodes",
        "2",
        "--node-rank",
        str(node_rank),
        "--nproc-per-node",
        "1",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        str(REPO_ROOT / "train.py"),
        *args,
    ]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=subprocess_env(OMP_NUM_THREADS="1", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def run_two_nodes(args: list[str], cwd: Path, timeout: int = 600, **env: str) -> list[str]:
    """Both nodes' output; fails the test (after stopping both) if either exits non-zero or hangs."""
    port = free_port()
    nodes = [torchrun_node(rank, port, args, cwd, **env) for rank in (0, 1)]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=timeout)[0])
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)  # the agent and its worker; started in their own session
                node.wait()
    for rank, (node, output) in enumerate(zip(nodes, outputs, strict=True)):
        assert node.returncode == 0, f"node {rank} exited {node.returncode}\n{output[-6000:]}"
    return outputs


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed next to this interpreter")
def test_two_nodes_make_one_run_with_per_rank_seeds_and_one_process_validation(in_tmp_dir):
    noise_dir = in_tmp_dir / "rank_noise"
    fit = [
        "fit",
        "-c",
        DIGITS_CONFIG,
        "-c",
        DEBUG_PRESET,
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
        "--trainer.num_nodes",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.limit_val_batches",
        "1.0",
        "--trainer.callbacks+=tests.helpers.RecordRankNoise",
    ]
    node_logs = run_two_nodes(fit, in_tmp_dir, RANK_NOISE_DIR=str(noise_dir))
    assert "MEMBER: 2/2" in node_logs[1], "node 1 did not join a world of 2 processes"

    # one job: one W&B run, one run folder, one config (the one that names both nodes)
    runs = wandb_runs(in_tmp_dir / "outputs")
    assert len(runs) == 1, f"one W&B run per job, got {runs}"
    run_folders = list((in_tmp_dir / "outputs" / "meps-ldh").iterdir())
    assert len(run_folders) == 1, run_folders
    configs = list(in_tmp_dir.rglob("config.yaml"))
    assert configs == [run_folders[0] / "config.yaml"], configs
    assert yaml.safe_load(configs[0].read_text())["trainer"]["num_nodes"] == 2

    # per-rank seeds: global ranks 0 and 1, each with its own seed and noise stream
    ranks = [json.loads((noise_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["seed"] != ranks[1]["seed"] and ranks[0]["draw"] != ranks[1]["draw"]

    # the 2-node job's validation (full val split, after the last step) equals 1 process on its checkpoint
    two_nodes = wandb_summary(runs[0])["summary"]
    checkpoint = run_folders[0] / "checkpoints" / "last.ckpt"
    one_process = [
        "validate",
        "-c",
        DIGITS_CONFIG,
        "-c",
        DEBUG_PRESET,
        "--trainer.limit_val_batches",
        "1.0",
        "--ckpt_path",
        str(checkpoint),
    ]
    run_train(one_process, in_tmp_dir / "one")
    one = wandb_summary(wandb_runs(in_tmp_dir / "one")[0])["summary"]
    for key in VAL_KEYS:
        assert two_nodes[key] == pytest.approx(one[key], rel=1e-5), key

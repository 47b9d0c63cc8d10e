"""Test environment: nothing reaches the network, every test writes into its own tmp dir."""

import atexit
import os
import shutil
import tempfile

import pytest

pytest_plugins = ["tests.slurm_cluster"]
"""The ``slurm_cluster`` fixture, registered once: one cluster for the whole session, whichever modules use it."""

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Read at import time by datasets / huggingface_hub, so set them before anything imports those.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="meps-hf-home-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)  # a test session leaves no cache behind
os.environ["HF_DATASETS_CACHE"] = os.path.join(os.environ["HF_HOME"], "datasets")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# torch.compile's cache inside the session's tmp dir (removed with it), not /tmp/torchinductor_$USER
os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(os.environ["HF_HOME"], "torchinductor")
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny test models on 2 shared cores: intra-op threads only add contention (3-10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline_hf_cache(tmp_path, monkeypatch):
    """No network and a private cache; ``datasets`` reads these settings at import, so patch its config too."""
    import datasets
    import huggingface_hub

    cache = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    """Run a test from an empty folder so outputs/ (run folders and their W&B files) land in tmp.

    No WANDB_DIR: train.py honours it (tests/cli/test_run_location.py), and these tests read the W&B runs
    from under their run folders' root."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.delenv("MEPS_RUN_ID", raising=False)
    return tmp_path

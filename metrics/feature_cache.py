"""Features of a fixed image set, computed once per machine: the Inception pass is the slow part.

A sweep measures every cell against the same held-out images (and the same BL-AE reconstructions of
them); on a CPU, Inception costs a few tenths of a second per image. The features are stored under
`cache_dir` by a key made of the images' bytes and the network's `cache_key`, so any later run
(another cell, another sweep, a resumed one) reads them back instead, and a different image set or
network never does. A network without a `cache_key` is never cached. Files are written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from runtime.atomic_files import atomic_write

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # not POSIX: no lock, a second process may compute the same features
    fcntl = None

DEFAULT_CACHE_DIR = "~/.cache/meps_ldh/features"


def feature_key(images: Tensor, feature: nn.Module) -> str | None:
    """sha256 of (network key, shape, uint8 bytes); None for a network that names no cache key."""
    network = getattr(feature, "cache_key", None)
    if network is None:
        return None
    digest = hashlib.sha256(f"{network}|{tuple(images.shape)}|".encode())
    digest.update(images.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


@torch.no_grad()
def cached_features(
    feature: nn.Module, images: Tensor, cache_dir: str | Path | None, batch_size: int = 64, device=None, write: bool = True
) -> Tensor:
    """(N, D) float32 features of uint8 (N, C, H, W) images, read from the cache when present.

    `write=False` (DDP ranks other than 0) reads a cache but never writes one.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"cached_features takes uint8 images (their bytes are the cache key), got {images.dtype}")
    key = feature_key(images, feature) if cache_dir is not None else None
    if key is None:
        return compute_features(feature, images, batch_size, device)
    assert cache_dir is not None  # cannot fire: key is None without a cache_dir
    path = Path(cache_dir).expanduser() / f"{key}.pt"
    with computing(path) if write else contextlib.nullcontext():
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
        features = compute_features(feature, images, batch_size, device)
        if write:
            buffer = io.BytesIO()
            torch.save(features, buffer)
            atomic_write(path, lambda file: file.write(buffer.getvalue()))
    return features


def compute_features(feature: nn.Module, images: Tensor, batch_size: int, device) -> Tensor:
    chunks = [feature(chunk.to(device)).float().cpu() for chunk in images.split(batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, getattr(feature, "num_features", 0))


@contextlib.contextmanager
def computing(path: Path):
    """An exclusive lock beside `path` (released when the holder exits, even killed): one writer at a time."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

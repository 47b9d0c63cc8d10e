"""``HFImageDataModule`` train-loader throughput vs a ``TensorDataset`` of the same decoded images.

Both loaders use the datamodule's batch size, shuffle, drop_last, ``num_workers`` (default) and
pin_memory, so the ratio is the cost of serving images from the ``datasets`` pipeline (Arrow
read, PNG decode and conversion per image, collate of per-image dicts) relative to indexing
tensors that are already decoded. Goal ≥ 0.8. Sources: (a) the embedded digits (8x8 grey),
(b) a folder of 32x32 RGB PNGs generated at bench time. A third row compares later epochs with
the first one of a cold cache (``prepare_data`` + ``setup`` + one pass): what caching buys.

    python -m bench.bench_dataloading [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from bench import harness
from bench.common import Row
from datamodules import HFImageDataModule

GOAL = 0.8
CACHE_GOAL = 1.0
DIGITS_NAME = "dataloading, digits 8x8: HF loader vs TensorDataset"
FOLDER_NAME = "dataloading, PNG folder 32x32 RGB: HF loader vs TensorDataset"
EPOCH_NAME = "dataloading, PNG folder: later epoch vs first (cold cache)"
LOADER_ROWS = ((DIGITS_NAME, "images/s", GOAL), (FOLDER_NAME, "images/s", GOAL))
ROW_NAMES = [DIGITS_NAME, FOLDER_NAME, EPOCH_NAME, *(name + harness.GPU_SUFFIX for name, _, _ in LOADER_ROWS)]
"""Every row ``run`` returns, on any machine (the [gpu] ones as placeholders without a GPU)."""
CACHED_NOTE = (
    "cached by the first run: imagefolder -> Arrow table, decodability scan and the decoded uint8 pixels"
    " (memory-mapped .npy keyed by the source fingerprint); later epochs gather batches from memory"
)


@dataclass(frozen=True)
class Sizes:
    folder_images: int
    batch_size: int
    repeats: int  # timed epochs per loader


FULL = Sizes(folder_images=3000, batch_size=128, repeats=5)
SMOKE = Sizes(folder_images=48, batch_size=16, repeats=1)


# --------------------------------------------------------------------------------------------
# data


def write_png_folder(folder: Path, count: int, size: int = 32, seed: int = 0) -> Path:
    """``count`` distinct RGB PNGs: smooth colour gradients plus noise, so PNG compression has real work."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    for i in range(count):
        colours = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        gradient = colours[0] * ramp[:, None, None] + colours[1] * ramp[None, :, None] * (1 - ramp[:, None, None])
        pixels = np.clip(gradient + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{i:05d}.png")
    return folder


def decoded_twin(datamodule: HFImageDataModule) -> DataLoader:
    """A loader over the same pixels, already decoded into one tensor, with the datamodule's loader settings."""
    images = datamodule.images_uint8("train").float().div_(127.5).sub_(1.0)
    reference = datamodule.train_dataloader()
    return DataLoader(
        TensorDataset(images, torch.arange(len(images))),
        batch_size=reference.batch_size,
        shuffle=True,
        drop_last=reference.drop_last,
        num_workers=reference.num_workers,
        persistent_workers=reference.persistent_workers,
        pin_memory=reference.pin_memory,
    )


def images_of(batch) -> torch.Tensor:
    return batch["image"] if isinstance(batch, dict) else batch[0]


def epoch_seconds(loader: DataLoader, device: torch.device) -> tuple[float, int]:
    """Seconds and images of one pass; on a GPU each batch is also copied to it (non-blocking, as Lightning does)."""
    start, count = time.perf_counter(), 0
    for batch in loader:
        images = images_of(batch)
        if device.type == "cuda":
            images = images.to(device, non_blocking=True)
        count += len(images)
    harness.synchronize(device)
    return time.perf_counter() - start, count


def loader_row(name: str, datamodule: HFImageDataModule, sizes: Sizes, device: torch.device, note: str) -> Row:
    """Median epoch throughput of the datamodule's train loader vs its decoded twin, epochs interleaved."""
    ours, baseline = datamodule.train_dataloader(), decoded_twin(datamodule)
    images = {"ours": epoch_seconds(ours, device)[1], "baseline": epoch_seconds(baseline, device)[1]}  # warm-up epochs
    seconds = harness.interleaved_medians(
        {"ours": lambda: epoch_seconds(ours, device)[0], "baseline": lambda: epoch_seconds(baseline, device)[0]}, sizes.repeats
    )
    workers = datamodule.hparams.num_workers
    return Row(
        name,
        harness.per_second(images["ours"], seconds["ours"]),
        harness.per_second(images["baseline"], seconds["baseline"]),
        "images/s",
        GOAL,
        note=f"{device.type}; {images['ours']} train images/epoch, batch {ours.batch_size}, num_workers={workers},"
        f" median of {sizes.repeats} epochs; {note}",
    )


# --------------------------------------------------------------------------------------------
# rows


def cold_first_epoch(folder: Path, cache_dir: Path, sizes: Sizes) -> tuple[HFImageDataModule, float, int]:
    """A datamodule on an empty cache, and the seconds of what a fresh run does before epoch 2 starts."""
    start = time.perf_counter()
    datamodule = HFImageDataModule(path=str(folder), image_size=32, channels=3, batch_size=sizes.batch_size, cache_dir=str(cache_dir))
    datamodule.prepare_data()
    datamodule.setup("fit")
    _, count = epoch_seconds(datamodule.train_dataloader(), torch.device("cpu"))
    return datamodule, time.perf_counter() - start, count


def warm_setup_seconds(folder: Path, cache_dir: Path, sizes: Sizes) -> float:
    """``prepare_data`` + ``setup`` of a new datamodule on the now warm cache (what a resumed run pays)."""
    start = time.perf_counter()
    datamodule = HFImageDataModule(path=str(folder), image_size=32, channels=3, batch_size=sizes.batch_size, cache_dir=str(cache_dir))
    datamodule.prepare_data()
    datamodule.setup("fit")
    return time.perf_counter() - start


@dataclass(frozen=True)
class FolderSource:
    """The generated PNG folder's datamodule and what its cold start cost (built once, shared by CPU and GPU rows)."""

    datamodule: HFImageDataModule
    first_epoch_seconds: float  # cold prepare_data + setup + one pass
    first_epoch_images: int
    warm_setup_seconds: float


def folder_source(sizes: Sizes, workdir: Path) -> FolderSource:
    folder = write_png_folder(workdir / "pngs", sizes.folder_images)
    cache_dir = workdir / "hf_cache"
    datamodule, first_seconds, first_count = cold_first_epoch(folder, cache_dir, sizes)
    return FolderSource(datamodule, first_seconds, first_count, warm_setup_seconds(folder, cache_dir, sizes))


def folder_rows(source: FolderSource, sizes: Sizes) -> list[Row]:
    """The folder comparison and the later-vs-first epoch row (later = the comparison's median epoch)."""
    folder_row = loader_row(FOLDER_NAME, source.datamodule, sizes, torch.device("cpu"), f"{sizes.folder_images} PNGs in a tmp dir")
    epoch_row = Row(
        EPOCH_NAME,
        folder_row.ours,
        harness.per_second(source.first_epoch_images, source.first_epoch_seconds),
        "images/s",
        CACHE_GOAL,
        note=f"ours = median later epoch, baseline = first epoch incl. cold prepare_data+setup ({source.first_epoch_seconds:.2f} s);"
        f" prepare_data+setup on the warm cache {source.warm_setup_seconds:.2f} s; {CACHED_NOTE}",
    )
    return [folder_row, epoch_row]


def gpu_loader_rows(folder: FolderSource, sizes: Sizes, device: torch.device) -> list[Row]:
    """The two loader rows with each batch copied to the GPU from pinned memory."""
    return [
        loader_row(DIGITS_NAME + harness.GPU_SUFFIX, harness.digits_datamodule(sizes.batch_size), sizes, device, "to GPU, pinned"),
        loader_row(FOLDER_NAME + harness.GPU_SUFFIX, folder.datamodule, sizes, device, "to GPU, pinned"),
    ]


@contextlib.contextmanager
def no_progress_bars():
    """``datasets`` draws a bar per file listing and split generation; they would bury the table."""
    enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def run(smoke: bool = False) -> list[Row]:
    sizes = SMOKE if smoke else FULL
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="bench-dataloading-") as tmp, no_progress_bars():
        folder = functools.cache(lambda: folder_source(sizes, Path(tmp)))
        rows = harness.guarded(
            lambda: [loader_row(DIGITS_NAME, harness.digits_datamodule(sizes.batch_size), sizes, cpu, "embedded digits")], [LOADER_ROWS[0]]
        )
        rows += harness.guarded(lambda: folder_rows(folder(), sizes), [LOADER_ROWS[1], (EPOCH_NAME, "images/s", CACHE_GOAL)])
        rows += harness.gpu_or_placeholders(
            lambda cuda: harness.guarded(
                lambda: gpu_loader_rows(folder(), sizes, cuda),
                [(name + harness.GPU_SUFFIX, unit, goal) for name, unit, goal in LOADER_ROWS],
            ),
            [(name, unit) for name, unit, _ in LOADER_ROWS],
        )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    from bench.run_all import format_table

    print(format_table(run(smoke=parser.parse_args().smoke)))

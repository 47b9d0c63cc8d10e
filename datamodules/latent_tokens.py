"""``LatentTokenDataModule``: the images of ``HFImageDataModule`` as the token grids of a frozen BL-AE.

Batch contract (train/val/test/predict DataLoaders)::

    {"tokens": int64 (B, h, w) in [0, 2^C),   # packed hard-sign bits, channel 0 most significant
     "index":  int64 (B,)}                     # row of each grid within its split

Row i of a token split is image row i of the same split (``dataset(split)``,
``train_images_uint8(split)``), so memorization metrics can compare decoded samples with the
training images and the token grids of the same rows.

Token cache. ``prepare_data`` (one process per node) encodes every split once and saves a
``DatasetDict`` with a ``tokens`` column (``Array2D (h, w)``, uint8 for C <= 8 bits, else int32)
and a ``meta.json`` into ``<token_cache_dir>/<source fingerprint>--ae-<checkpoint sha256[:16]>``.
The folder is written under a temporary name and renamed when complete, so a crash or a full
disk never leaves a folder that a later run would take for a cache; temporary folders of dead
processes are removed. ``setup`` (every rank) only reads the cache, and checks its ``meta.json``
against the checkpoint hash, the source fingerprint and the split sizes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Array2D, Dataset, DatasetDict, Features, load_from_disk
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from datamodules.hf_images import HFImageDataModule, IndexedSplit, collate_rows
from datamodules.partial_files import process_alive
from lightning_modules.autoencoder_checkpoint import (
    AutoencoderSpec,
    autoencoder_spec,
    check_fits_data,
    load_autoencoder,
)

TOKEN_CACHE_VERSION = 1
"""Bump when the stored tokens change for the same checkpoint and images (packing, precision, layout)."""

META_FILE = "meta.json"
_PARTIAL_PREFIX = ".partial-"
_DEFAULT_CACHE_ROOT = Path("~/.cache/meps_ldh")


def token_storage_dtype(num_bits: int) -> str:
    """The smallest stored dtype for ids in [0, 2^C): uint8 up to 8 bits, int32 up to 31, else int64."""
    return "uint8" if num_bits <= 8 else "int32" if num_bits <= 31 else "int64"


@contextlib.contextmanager
def full_float32():
    """No TF32 in convolutions or matmuls while encoding: a hard sign flips on tiny rounding near 0."""
    cudnn = torch.backends.cudnn
    matmul_precision, conv_tf32 = torch.get_float32_matmul_precision(), cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul_precision)
        cudnn.allow_tf32 = conv_tf32


@torch.no_grad()
def encode_tokens(
    autoencoder, images: Dataset | torch.utils.data.Dataset, batch_size: int, num_workers: int, device: torch.device
) -> np.ndarray:
    """Hard-sign token ids (N, h, w) of every image of a split, in row order (``autoencoder.tokens``).

    ``images``: a transformed ``datasets`` split, or what ``HFImageDataModule`` serves for it
    (``DecodedImages``/``IndexedSplit``: rows ``{"image", "index"}``).
    """
    rows = IndexedSplit(images) if isinstance(images, Dataset) else images
    loader = DataLoader(rows, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_rows)
    grids = []
    with full_float32(), torch.autocast(device.type, enabled=False):
        for batch in loader:
            grids.append(autoencoder.tokens(batch["image"].to(device)).cpu())
    return torch.cat(grids).numpy()


def tokens_as_numpy(tokens: Dataset) -> np.ndarray:
    """The whole ``tokens`` column as one (N, h, w) array, straight from Arrow (no per-row Python)."""
    if tokens._indices is not None:
        tokens = tokens.flatten_indices()
    height, width = tokens.features["tokens"].shape
    chunks = [chunk.storage if hasattr(chunk, "storage") else chunk for chunk in tokens.data.column("tokens").chunks]
    flat = [chunk.flatten().flatten().to_numpy(zero_copy_only=False) for chunk in chunks]
    dtype = np.dtype(tokens.features["tokens"].dtype)
    return (np.concatenate(flat) if flat else np.zeros(0, dtype)).reshape(-1, height, width)


class IndexedTokens(torch.utils.data.Dataset):
    """Token grids of one split in memory: ``{"tokens": int64 (h, w), "index": row}`` per example.

    The grids are small (uint8 CIFAR-10: 50 MB), so they are read from the Arrow cache once and
    batches are tensor indexing; ``__getitems__`` returns a whole batch, ``{"tokens": (B, h, w),
    "index": (B,)}``, from one gather (``collate_rows`` passes it on).
    """

    def __init__(self, tokens: torch.Tensor) -> None:
        self.tokens = tokens
        self._grids = tokens.numpy()  # the same memory; NumPy gathers single-threaded (see ``DecodedImages``)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"tokens": self.tokens[index].long(), "index": index}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows = np.asarray(indices, dtype=np.int64)
        return {"tokens": torch.from_numpy(self._grids[rows].astype(np.int64)), "index": torch.from_numpy(rows)}

    def __getstate__(self) -> dict[str, Any]:
        return {"tokens": self.tokens}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tokens"])


class SampleRequests(torch.utils.data.Dataset):
    """`predict` on a generative model: row i asks for global sample i (drawn with seed base + i).

    Lightning's predict sampler hands each rank disjoint rows, so ranks never draw the same sample.
    """

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, int]:
        return {"index": index}


class LatentTokenDataModule(HFImageDataModule):
    """Token grids of a frozen BL-AE over any image source of ``HFImageDataModule``.

    Args:
        autoencoder: path of a BL-AE ``.ckpt`` (``--data.autoencoder``); its image_size and channels
            must equal ``image_size``/``channels`` of the data.
        token_cache_dir: where token caches live; ``None`` = ``<cache_dir or ~/.cache/meps_ldh>/tokens``.
            Shared by the ranks of a node (and by nodes if it is on a shared file system).
        encode_batch_size: images per forward pass of the BL-AE while building the cache.
        num_samples: how many samples ``predict`` asks a token model for (one per global index).
        **kwargs: every argument of ``HFImageDataModule`` (path, image_size, channels, batch_size
            [global], num_workers, splits, cache_dir, ...).

    After ``setup``: everything of ``HFImageDataModule`` (the image splits stay available as the
    memorization reference), plus ``num_bits``, ``grid_shape``, ``autoencoder_sha256``,
    ``token_meta``, ``train_tokens(split)``, ``token_dataset(split)``, ``load_autoencoder()``.
    ``num_bits``, ``grid_shape`` and ``autoencoder_sha256`` are known from construction on.
    """

    def __init__(
        self,
        autoencoder: str,
        token_cache_dir: str | None = None,
        encode_batch_size: int = 256,
        num_samples: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_samples = num_samples
        if encode_batch_size < 1:
            raise ValueError(f"encode_batch_size must be >= 1, got {encode_batch_size}")
        self.spec: AutoencoderSpec = autoencoder_spec(autoencoder)
        check_fits_data(self.spec, self.image_size, self.channels)
        root = token_cache_dir or Path(self.hparams.cache_dir or _DEFAULT_CACHE_ROOT) / "tokens"
        self.token_cache_dir = Path(root).expanduser()
        self._token_splits: dict[str, torch.Tensor] | None = None
        self._token_meta: dict[str, Any] | None = None

    # ---------------------------------------------------------------- Lightning hooks

    def prepare_data(self) -> None:
        """Reuse a complete cache for (checkpoint, images), or encode every split and save it atomically."""
        _, splits, fingerprint = self._built_splits()
        folder = self.cache_folder(fingerprint)
        self._remove_dead_partials(folder)
        problem = _cache_problem(folder, self._expected_meta(fingerprint, splits))
        if problem is None:
            return
        if folder.exists():
            rank_zero_warn(f"rebuilding the token cache {folder}: {problem}")
            shutil.rmtree(folder)
        self._write_cache(folder, fingerprint, splits)

    def setup(self, stage: str | None = None) -> None:
        """The image splits (parent), then the token grids from the cache (a cache hit on every rank)."""
        super().setup(stage)
        if self._token_splits is not None:
            return
        fingerprint = self.source_fingerprint()
        folder = self.cache_folder(fingerprint)
        problem = _cache_problem(folder, self._expected_meta(fingerprint, self._splits))
        if problem is not None:
            raise RuntimeError(
                f"token cache {folder} is not usable ({problem}); prepare_data() builds it"
                " (a Trainer calls it before setup; call it yourself outside one)"
            )
        tokens = load_from_disk(str(folder))
        self._token_splits = {split: torch.from_numpy(tokens_as_numpy(tokens[split])) for split in self._splits}
        self._token_meta = json.loads((folder / META_FILE).read_text())

    # ---------------------------------------------------------------- public helpers

    @property
    def num_bits(self) -> int:
        """C, bits per latent cell: token ids lie in [0, 2^C)."""
        return self.spec.num_bits

    @property
    def vocab_size(self) -> int:
        return self.spec.vocab_size

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(h, w) of a token grid."""
        return self.spec.grid_shape

    @property
    def autoencoder_sha256(self) -> str:
        """sha256 of the checkpoint file the tokens come from (computed when the datamodule was built)."""
        return self.spec.sha256

    @property
    def token_meta(self) -> dict[str, Any]:
        """The cache's ``meta.json``: num_bits, grid_height, grid_width, autoencoder_path (where the
        checkpoint was when the cache was built), autoencoder_sha256, source_fingerprint, image_size,
        channels, token_dtype, split_sizes, version."""
        self._require_setup("token_meta")
        return dict(self._token_meta)

    def token_dataset(self, split: str = "train") -> IndexedTokens:
        """The map-style dataset that the DataLoaders of ``split`` iterate."""
        self._split(split)  # names a missing split
        return IndexedTokens(self._token_splits[split])

    def train_tokens(self, split: str = "train") -> torch.Tensor:
        """Every token grid of ``split`` as int64 (N, h, w); row i belongs to ``train_images_uint8(split)[i]``."""
        self._split(split)
        return self._token_splits[split].long()

    def load_autoencoder(self) -> Any:
        """The BL-AE the tokens come from, frozen (eval, no grad), on CPU; refuses a changed checkpoint file."""
        return load_autoencoder(self.hparams.autoencoder, expected_sha256=self.autoencoder_sha256)

    def cache_folder(self, fingerprint: str | None = None) -> Path:
        """Cache folder of these images (``source_fingerprint``) encoded by this checkpoint."""
        fingerprint = fingerprint or self.source_fingerprint()
        return self.token_cache_dir / f"{fingerprint}--ae-{self.autoencoder_sha256[:16]}-v{TOKEN_CACHE_VERSION}"

    # ---------------------------------------------------------------- internals

    def predict_dataloader(self):
        return self._loader(SampleRequests(self.num_samples))

    def _served(self, split: str) -> IndexedTokens:
        return self.token_dataset(split)

    def _expected_meta(self, fingerprint: str, splits: dict[str, Dataset]) -> dict[str, Any]:
        spec = self.spec
        return {
            "version": TOKEN_CACHE_VERSION,
            "num_bits": spec.num_bits,
            "grid_height": spec.grid_height,
            "grid_width": spec.grid_width,
            "autoencoder_path": str(Path(self.hparams.autoencoder).expanduser().resolve()),
            "autoencoder_sha256": spec.sha256,
            "source_fingerprint": fingerprint,
            "image_size": self.image_size,
            "channels": self.channels,
            "token_dtype": token_storage_dtype(spec.num_bits),
            "split_sizes": {split: len(rows) for split, rows in splits.items()},
        }

    def _encode_device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _write_cache(self, folder: Path, fingerprint: str, splits: dict[str, Dataset]) -> None:
        meta = self._expected_meta(fingerprint, splits)
        device = self._encode_device()
        autoencoder = load_autoencoder(self.hparams.autoencoder, expected_sha256=self.autoencoder_sha256).to(device)
        height, width = self.grid_shape
        features = Features({"tokens": Array2D((height, width), meta["token_dtype"])})
        rank_zero_info(f"encoding {meta['split_sizes']} images into tokens with {self.hparams.autoencoder} on {device}")
        encoded = {}
        for split in splits:
            images = self._image_rows(split)  # decoded once, shared with train_images_uint8 later
            grids = encode_tokens(autoencoder, images, self.hparams.encode_batch_size, self.hparams.num_workers, device)
            if grids.shape[1:] != (height, width):
                raise RuntimeError(f"the autoencoder made {grids.shape[1:]} grids, its checkpoint says {(height, width)}")
            encoded[split] = Dataset.from_dict({"tokens": grids.astype(meta["token_dtype"])}, features=features)
        partial = folder.parent / f"{_PARTIAL_PREFIX}{folder.name}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            DatasetDict(encoded).save_to_disk(str(partial))
            (partial / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            try:
                os.rename(partial, folder)  # atomic: the folder appears complete or not at all
            except OSError:
                if _cache_problem(folder, meta) is not None:
                    raise
                rank_zero_info(f"token cache {folder} was written meanwhile by another process; using it")
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    @staticmethod
    def _remove_dead_partials(folder: Path) -> None:
        """Temporary folders that this host's crashed processes left for this cache (never read anyway)."""
        host = socket.gethostname()
        for partial in folder.parent.glob(f"{_PARTIAL_PREFIX}{folder.name}-{host}-*"):
            pid = partial.name[len(f"{_PARTIAL_PREFIX}{folder.name}-{host}-") :].split("-")[0]
            if pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(partial, ignore_errors=True)



def _cache_problem(folder: Path, expected: dict[str, Any]) -> str | None:
    """Why ``folder`` is not a complete cache matching ``expected`` (``None`` when it is one)."""
    if not folder.is_dir():
        return "no cache yet"
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return f"no readable {META_FILE}"
    for key, value in expected.items():
        if key != "autoencoder_path" and meta.get(key) != value:
            return f"{META_FILE} has {key}={meta.get(key)!r}, expected {value!r}"
    if not (folder / "dataset_dict.json").is_file():
        return "no dataset_dict.json"
    missing = [split for split in expected["split_sizes"] if not (folder / split / "state.json").is_file()]
    return f"split folder(s) {missing} incomplete" if missing else None

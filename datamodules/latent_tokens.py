"""``LatentTokenDataModule``: the images of ``HFImageDataModule`` as the token grids of a frozen BL-AE.

Batch contract (train/val/test/predict DataLoaders)::

    {"tokens": int64 (B, h, w) in [0, 2^C),   # packed hard-sign bits, channel 0 most significant
     "index":  int64 (B,)}                     # row of each grid within its split

Row i of a token split is image row i of the same split (``dataset(split)``,
``images_uint8(split)``), so memorization metrics can compare decoded samples with the
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

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, load_from_disk
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from checkpoints.autoencoder import AutoencoderSpec, autoencoder_spec, check_fits_data, load_token_encoder
from datamodules.arrow_columns import tokens_as_numpy
from datamodules.hf_images import HFImageDataModule
from datamodules.token_cache import (
    META_FILE,
    TOKEN_CACHE_VERSION,
    cache_problem,
    remove_dead_cache_partials,
    token_storage_dtype,
    write_token_cache,
)
from datamodules.token_datasets import IndexedTokens, SampleRequests
from datamodules.token_encoding import encode_tokens

_DEFAULT_CACHE_ROOT = Path("~/.cache/meps_ldh")


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
    ``token_meta``, ``token_grids(split)``, ``token_dataset(split)``, ``load_token_encoder()``.
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
        _, splits, fingerprint = self._memoized_splits()
        folder = self.cache_folder(fingerprint)
        remove_dead_cache_partials(folder)
        problem = cache_problem(folder, self._expected_meta(fingerprint, splits))
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
        problem = cache_problem(folder, self._expected_meta(fingerprint, self._splits))
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

    def token_grids(self, split: str = "train") -> torch.Tensor:
        """Every token grid of ``split`` as int64 (N, h, w); row i belongs to ``images_uint8(split)[i]``."""
        self._split(split)
        return self._token_splits[split].long()

    def load_token_encoder(self) -> Any:
        """The encoder of the BL-AE the tokens come from, frozen (eval, no grad), on CPU; refuses a changed checkpoint file."""
        return load_token_encoder(self.hparams.autoencoder, expected_sha256=self.autoencoder_sha256)

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
        encoder = self.load_token_encoder().to(device)
        height, width = self.grid_shape
        rank_zero_info(f"encoding {meta['split_sizes']} images into tokens with {self.hparams.autoencoder} on {device}")
        grids = {}
        for split in splits:
            images = self._image_rows(split)  # decoded once, shared with images_uint8 later
            grids[split] = encode_tokens(encoder, images, self.hparams.encode_batch_size, self.hparams.num_workers, device)
            if grids[split].shape[1:] != (height, width):
                raise RuntimeError(f"the autoencoder made {grids[split].shape[1:]} grids, its checkpoint says {(height, width)}")
        if not write_token_cache(folder, grids, meta):
            rank_zero_info(f"token cache {folder} was written meanwhile by another process; using it")

"""``LatentTokenDataModule``: the images of ``HFImageDataModule`` as the token grids of a frozen BL-AE.

Batch contract (train/val/test/predict DataLoaders)::

    {"tokens": int64 (B, h, w) in [0, 2^C),   # packed hard-sign bits, channel 0 most significant
     "index":  int64 (B,)}                     # row of each grid within its split

Row i of a token split is image row i of the same split (``dataset(split)``,
``images_uint8(split)``), so memorization metrics can compare decoded samples with the
training images and the token grids of the same rows.

The image path is the parent's; then ``prepare_data`` (one process per node) encodes every split
once into the token cache (``token_cache.py``), and ``setup`` (every rank) only reads the cache,
checking its ``meta.json`` against the checkpoint hash, the source fingerprint and the split sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

import datamodules.hf_types as hf_types
from autoencoder_checkpoint.tokens import AutoencoderSpec, autoencoder_spec, check_fits_data, load_token_encoder
from datamodules.image_datamodule import HFImageDataModule
from datamodules.rows import IndexedTokens, SampleRequests
from datamodules.token_cache import (
    TOKEN_CACHE_VERSION,
    build_token_cache,
    cache_problem,
    read_token_cache,
    reusable_cache,
    token_storage_dtype,
)

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
        self, autoencoder: str, token_cache_dir: str | None = None, encode_batch_size: int = 256, num_samples: int = 64, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.num_samples = num_samples
        if encode_batch_size < 1:
            raise ValueError(f"encode_batch_size must be >= 1, got {encode_batch_size}")
        self.spec: AutoencoderSpec = autoencoder_spec(autoencoder)
        check_fits_data(self.spec, self.image_size, self.channels)
        root = token_cache_dir or Path(self._hp.cache_dir or _DEFAULT_CACHE_ROOT) / "tokens"
        self.token_cache_dir = Path(root).expanduser()
        self._token_splits: dict[str, torch.Tensor] | None = None
        self._token_meta: dict[str, Any] | None = None

    # ---------------------------------------------------------------- Lightning hooks

    def prepare_data(self) -> None:
        """Reuse a complete cache for (checkpoint, images), or encode every split and save it atomically."""
        _, splits, fingerprint = self._memoized_splits()
        folder = self.cache_folder(fingerprint)
        if not reusable_cache(folder, self._expected_meta(fingerprint, splits)):
            self._write_cache(folder, fingerprint, splits)

    def setup(self, stage: str | None = None) -> None:
        """The image splits (parent), then the token grids from the cache (a cache hit on every rank)."""
        super().setup(stage)
        if self._token_splits is not None:
            return
        fingerprint = self.source_fingerprint()
        folder = self.cache_folder(fingerprint)
        assert self._splits is not None  # super().setup() loaded them
        problem = cache_problem(folder, self._expected_meta(fingerprint, self._splits))
        if problem is not None:
            raise RuntimeError(
                f"token cache {folder} is not usable ({problem}); prepare_data() builds it"
                " (a Trainer calls it before setup; call it yourself outside one)"
            )
        self._token_splits, self._token_meta = read_token_cache(folder, self._splits)

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
        assert self._token_meta is not None  # setup() reads it right after _splits
        return dict(self._token_meta)

    def token_dataset(self, split: str = "train") -> IndexedTokens:
        """The map-style dataset that the DataLoaders of ``split`` iterate."""
        self._split(split)  # names a missing split
        assert self._token_splits is not None  # setup() reads them right after _splits
        return IndexedTokens(self._token_splits[split])

    def token_grids(self, split: str = "train") -> torch.Tensor:
        """Every token grid of ``split`` as int64 (N, h, w); row i belongs to ``images_uint8(split)[i]``."""
        self._split(split)
        assert self._token_splits is not None  # setup() reads them right after _splits
        return self._token_splits[split].long()

    def load_token_encoder(self) -> Any:
        """The encoder of the BL-AE the tokens come from, frozen (eval, no grad), on CPU; refuses a changed checkpoint file."""
        return load_token_encoder(self._hp.autoencoder, expected_sha256=self.autoencoder_sha256)

    def cache_folder(self, fingerprint: str | None = None) -> Path:
        """Cache folder of these images (``source_fingerprint``) encoded by this checkpoint."""
        fingerprint = fingerprint or self.source_fingerprint()
        return self.token_cache_dir / f"{fingerprint}--ae-{self.autoencoder_sha256[:16]}-v{TOKEN_CACHE_VERSION}"

    # ---------------------------------------------------------------- internals

    def predict_dataloader(self) -> DataLoader:
        return self._loader(SampleRequests(self.num_samples))

    def _served(self, split: str) -> IndexedTokens:
        return self.token_dataset(split)

    def _expected_meta(self, fingerprint: str, splits: dict[str, hf_types.Dataset]) -> dict[str, Any]:
        spec = self.spec
        return {
            "version": TOKEN_CACHE_VERSION,
            "num_bits": spec.num_bits,
            "grid_height": spec.grid_height,
            "grid_width": spec.grid_width,
            "autoencoder_path": str(Path(self._hp.autoencoder).expanduser().resolve()),
            "autoencoder_sha256": spec.sha256,
            "source_fingerprint": fingerprint,
            "image_size": self.image_size,
            "channels": self.channels,
            "token_dtype": token_storage_dtype(spec.num_bits),
            "split_sizes": {split: len(rows) for split, rows in splits.items()},
        }

    def _encode_device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _write_cache(self, folder: Path, fingerprint: str, splits: dict[str, hf_types.Dataset]) -> None:
        """Encode every split with this checkpoint's frozen encoder, on the Trainer's device, into the cache ``folder``."""
        meta = self._expected_meta(fingerprint, splits)
        device = self._encode_device()
        encoder = self.load_token_encoder().to(device)
        # the images are decoded once, shared with images_uint8 later
        build_token_cache(
            folder, meta, encoder, self._split_images().rows, self._hp.encode_batch_size, self._hp.num_workers, device, self._hp.autoencoder
        )

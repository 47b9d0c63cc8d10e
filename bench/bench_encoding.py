"""Token-cache encoding throughput of the BL-AE vs a plain encoder forward + sign + pack loop.

``LatentTokenDataModule.prepare_data`` encodes every split once with ``encode_tokens``: a
DataLoader over the image split (decoding each PNG), then ``BinaryLatentAutoencoder.tokens``
(tanh, hard sign, ``pack_bits``) in full float32. Two rows on the digits train split at the
default ``encode_batch_size``:

- ``tokens()`` on already decoded batches vs the plain loop on the same batches: the cost of the
  module's API (tanh, einsum packing) over the bare network. Goal ≥ 0.95.
- the whole cache path (``encode_tokens``, image decoding included) vs the same plain loop: how
  much of building a token cache is the encoder and how much the image pipeline. No goal.

Both rows check that ours and the baseline give identical tokens.

    python -m bench.bench_encoding [--smoke]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from autoencoder_checkpoint.tokens import freeze
from bench import harness
from bench.common import Row
from datamodules.token_cache import encode_tokens
from lightning_modules.blae import BinaryLatentAutoencoder
from networks.autoencoder import PatchMLPDecoder, PatchMLPEncoder
from networks.precision import strict_fp32

GOAL = 0.95
TOKENS_NAME = "encoding, digits: BL-AE.tokens vs encoder+sign+pack"
CACHE_PATH_NAME = "encoding, digits: encode_tokens (decodes images) vs encoder+sign+pack"
ROWS = ((TOKENS_NAME, "images/s", GOAL), (CACHE_PATH_NAME, "images/s", None))
ROW_NAMES = [name + suffix for suffix in ("", harness.GPU_SUFFIX) for name, _, _ in ROWS]
"""Every row ``run`` returns, on any machine (the [gpu] ones as placeholders without a GPU)."""
ENCODE_BATCH_SIZE = 256  # LatentTokenDataModule's default encode_batch_size


@dataclass(frozen=True)
class Sizes:
    width: int
    blocks: int
    bits: int
    repeats: int  # timed passes over the split


FULL = Sizes(width=128, blocks=2, bits=6, repeats=5)  # configs/blae/digits.yaml
SMOKE = Sizes(width=16, blocks=1, bits=4, repeats=1)


def frozen_blae(sizes: Sizes, device: torch.device) -> BinaryLatentAutoencoder:
    """The digits BL-AE as ``load_autoencoder`` hands it to ``prepare_data``: eval mode, no gradients."""
    with harness.quiet_lightning():
        model = BinaryLatentAutoencoder(
            PatchMLPEncoder(1, sizes.bits, sizes.width, sizes.blocks),
            PatchMLPDecoder(1, sizes.bits, sizes.width, sizes.blocks),
            image_size=8,
            channels=1,
        )
    return freeze(model).to(device)


@torch.no_grad()
def plain_tokens(encoder: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The baseline: encoder forward, sign (> 0, as tanh keeps the sign), shift-and-add packing, channel 0 most significant."""
    bits = encoder(images) > 0  # (B, C, h, w)
    shifts = torch.arange(bits.shape[1] - 1, -1, -1, device=images.device).view(1, -1, 1, 1)
    return (bits.long() << shifts).sum(1)


def encode_batches(encode, batches: list[torch.Tensor]) -> torch.Tensor:
    """Tokens of every batch under the cache's numerics (fp32, no TF32, no autocast), concatenated on the CPU."""
    with strict_fp32(), torch.autocast(batches[0].device.type, enabled=False):
        return torch.cat([encode(batch).cpu() for batch in batches])


def throughput_row(name: str, goal, count: int, ours, baseline, sizes: Sizes, device: torch.device, note: str) -> Row:
    """Interleaved timed passes of two encoders that must agree token for token."""
    ours_tokens, baseline_tokens = torch.as_tensor(ours()), torch.as_tensor(baseline())  # warm-up, and the check
    if not torch.equal(ours_tokens.long(), baseline_tokens.long()):
        raise AssertionError(f"{name}: ours and the baseline disagree on {int((ours_tokens != baseline_tokens).sum())} tokens")
    seconds = harness.interleaved_medians(
        {"ours": lambda: harness.timed(ours, device), "baseline": lambda: harness.timed(baseline, device)}, sizes.repeats
    )
    return Row(
        name,
        harness.per_second(count, seconds["ours"]),
        harness.per_second(count, seconds["baseline"]),
        "images/s",
        goal,
        note=f"{device.type} fp32; {count} images, batch {ENCODE_BATCH_SIZE}, PatchMLP width {sizes.width}, {sizes.blocks} blocks,"
        f" {sizes.bits} bits; identical tokens; median of {sizes.repeats} passes; {note}",
    )


def rows_on(device: torch.device, sizes: Sizes, suffix: str = "") -> list[Row]:
    model = frozen_blae(sizes, device)
    images = harness.digits_train_images()
    batches = [chunk.to(device) for chunk in images.split(ENCODE_BATCH_SIZE)]
    split = harness.digits_datamodule().dataset("train")

    def baseline():
        return encode_batches(lambda x: plain_tokens(model.encoder, x), batches)

    num_workers = harness.digits_datamodule().hparams.num_workers
    return [
        *harness.guarded(
            lambda: [
                throughput_row(
                    TOKENS_NAME + suffix,
                    GOAL,
                    len(images),
                    lambda: encode_batches(model.tokens, batches),
                    baseline,
                    sizes,
                    device,
                    "decoded batches already on the device",
                )
            ],
            [(TOKENS_NAME + suffix, "images/s", GOAL)],
        ),
        *harness.guarded(
            lambda: [
                throughput_row(
                    CACHE_PATH_NAME + suffix,
                    None,
                    len(images),
                    lambda: encode_tokens(model, split, ENCODE_BATCH_SIZE, num_workers, device),
                    baseline,
                    sizes,
                    device,
                    f"ours decodes the PNGs (num_workers={num_workers}), the baseline reuses decoded tensors",
                )
            ],
            [(CACHE_PATH_NAME + suffix, "images/s", None)],
        ),
    ]


def run(smoke: bool = False) -> list[Row]:
    sizes = SMOKE if smoke else FULL
    return rows_on(torch.device("cpu"), sizes) + harness.gpu_or_placeholders(
        lambda cuda: rows_on(cuda, sizes, harness.GPU_SUFFIX), [(name, unit) for name, unit, _ in ROWS]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    from bench.run_all import format_table

    print(format_table(run(smoke=parser.parse_args().smoke)))

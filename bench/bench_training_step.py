"""Lightning training throughput of the BL-AE and the γ-ARVM vs a plain PyTorch loop on the same network.

Both paths get the same starting weights, optimizer, batches (already in memory, on the
device) and step count. They run in lock-step inside one ``Trainer.fit`` (after each Lightning
step, one plain step on the same batch; ``harness.LockstepTimer``), so load from other jobs hits
both alike; Trainer start-up and warm-up steps are never timed. The ratio is the share of step
time that is the network itself: what Lightning's hooks, ``self.log`` and closure cost on top.
Goal ≥ 0.95. Sizes are the digits configs (configs/blae/digits.yaml, configs/arvm/digits.yaml
with γ = 2; the Trainer's gradient clipping there is left out of both paths).

    python -m bench.bench_training_step [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bench import harness
from bench.common import Row
from lightning_modules.blae import BinaryLatentAutoencoder
from lightning_modules.gamma_arvm import GammaARVM
from networks.autoencoder import PatchMLPDecoder, PatchMLPEncoder
from networks.binarizer import NoiseInjectionBinarizer

GOAL = 0.95
BLAE_NAME = "train step, BL-AE digits: Lightning vs plain loop"
ARVM_NAME = "train step, γ-ARVM digits: Lightning vs plain loop"
ROWS = ((BLAE_NAME, "images/s", GOAL), (ARVM_NAME, "tokens/s", GOAL))
ROW_NAMES = [name + suffix for suffix in ("", harness.GPU_SUFFIX) for name, _, _ in ROWS]
"""Every row ``run`` returns, on any machine (the [gpu] ones as placeholders without a GPU)."""
BLAE_LR = 2e-3  # configs/model/blae_digits.yaml


def arvm_optimizer(params):
    """AdamW without weight decay, as configs/model/arvm_digits.yaml (whose lr is 3e-3; the ratio does not depend on it)."""
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)


@dataclass(frozen=True)
class Sizes:
    width: int  # BL-AE Patch-MLP width
    blocks: int
    bits: int
    n_layer: int  # γ-ARVM
    n_embd: int
    blae_batch: int  # configs/blae/digits.yaml
    arvm_batch: int  # configs/arvm/digits.yaml
    warmup: int
    steps: int  # steps after the warm-up per repeat (each a sample of the pooled median; Lightning's last is dropped)
    repeats: int


FULL = Sizes(width=128, blocks=2, bits=6, n_layer=3, n_embd=128, blae_batch=128, arvm_batch=64, warmup=2, steps=10, repeats=3)
SMOKE = Sizes(width=16, blocks=1, bits=4, n_layer=1, n_embd=16, blae_batch=16, arvm_batch=16, warmup=1, steps=4, repeats=1)
GAMMA = 2
IMAGE_SIZE = 8


# --------------------------------------------------------------------------------------------
# BL-AE


def blae_networks(sizes: Sizes) -> dict[str, dict]:
    """The networks as LightningCLI records them, so a checkpoint of them can be rebuilt by class path."""
    net_args = {"image_channels": 1, "latent_channels": sizes.bits, "width": sizes.width, "num_blocks": sizes.blocks, "patch_size": 3}
    return {
        "encoder": {"class_path": "networks.autoencoder.PatchMLPEncoder", "init_args": net_args},
        "decoder": {"class_path": "networks.autoencoder.PatchMLPDecoder", "init_args": net_args},
        "binarizer": {"class_path": "networks.binarizer.NoiseInjectionBinarizer", "init_args": {"noise": "gaussian", "noise_rate": 0.5}},
    }


def build_blae(sizes: Sizes) -> BinaryLatentAutoencoder:
    configs = blae_networks(sizes)
    with harness.quiet_lightning():  # save_hyperparameters warns that the networks are modules
        return BinaryLatentAutoencoder(
            PatchMLPEncoder(**configs["encoder"]["init_args"]),
            PatchMLPDecoder(**configs["decoder"]["init_args"]),
            NoiseInjectionBinarizer(**configs["binarizer"]["init_args"]),
            optimizer=lambda params: torch.optim.Adam(params, lr=BLAE_LR),
            image_size=IMAGE_SIZE,
            channels=1,
        )


def blae_plain_loss(model: BinaryLatentAutoencoder, batch: dict) -> torch.Tensor:
    """``BinaryLatentAutoencoder.training_step`` without its logging: the network's own work."""
    x = batch["image"]
    z = torch.tanh(model.encoder(x))
    recon = model.decoder(model.binarizer(z, straight_through=False))
    return F.mse_loss(recon, x) + model.hparams.latent_penalty * z.pow(2).mean()


def blae_row(sizes: Sizes, device: torch.device, name: str) -> Row:
    model = build_blae(sizes)
    images = harness.digits_train_images()
    batches = harness.cycled_batches({"image": images}, sizes.blae_batch, sizes.warmup + sizes.steps, device)
    return compare_loops(
        name,
        "images/s",
        model,
        blae_plain_loss,
        model.optimizer_factory,
        batches,
        sizes,
        device,
        items_per_batch=sizes.blae_batch,
        note=f"PatchMLP width {sizes.width}, {sizes.blocks} blocks, {sizes.bits} bits, batch {sizes.blae_batch}, Adam",
    )


# --------------------------------------------------------------------------------------------
# γ-ARVM


def write_blae_checkpoint(sizes: Sizes, folder: Path) -> Path:
    """A BL-AE checkpoint as LightningCLI would save it: weights plus the networks' class paths.

    The real ``GammaARVM`` reads only its token spec (bits, grid) from it at construction;
    training never loads the autoencoder, so untrained weights are enough.
    """
    model = build_blae(sizes)
    path = folder / "blae.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": {
                **blae_networks(sizes),
                "image_size": IMAGE_SIZE,
                "channels": 1,
                "latent_penalty": 0.0,
                "straight_through_from_step": None,
                "_class_path": "lightning_modules.BinaryLatentAutoencoder",
            },
        },
        path,
    )
    return path


def arvm_plain_loss(model: GammaARVM, batch: dict) -> torch.Tensor:
    """``GammaARVM.training_step`` without its logging."""
    tokens = batch["tokens"]
    return model.net.loss(model.net(tokens), tokens, model.hparams.flip_prob)


def arvm_row(sizes: Sizes, device: torch.device, name: str) -> Row:
    with tempfile.TemporaryDirectory(prefix="bench-arvm-") as folder:
        checkpoint = write_blae_checkpoint(sizes, Path(folder))
        model = GammaARVM(
            str(checkpoint),
            gamma=GAMMA,
            n_layer=sizes.n_layer,
            n_head=4,
            n_embd=sizes.n_embd,
            optimizer=arvm_optimizer,
            image_size=IMAGE_SIZE,
            channels=1,
        )
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 2**sizes.bits, (4 * sizes.arvm_batch, IMAGE_SIZE, IMAGE_SIZE), generator=generator)
    batches = harness.cycled_batches({"tokens": tokens}, sizes.arvm_batch, sizes.warmup + sizes.steps, device)
    return compare_loops(
        name,
        "tokens/s",
        model,
        arvm_plain_loss,
        arvm_optimizer,
        batches,
        sizes,
        device,
        items_per_batch=sizes.arvm_batch * IMAGE_SIZE * IMAGE_SIZE,
        note=f"γ={GAMMA}, {sizes.n_layer} layers x {sizes.n_embd}, 2^{sizes.bits} histogram, "
        f"batch {sizes.arvm_batch} random 8x8 grids, AdamW",
    )


# --------------------------------------------------------------------------------------------
# shared


def compare_loops(name, unit, model, plain_loss, make_optimizer, batches, sizes: Sizes, device, items_per_batch: int, note: str) -> Row:
    """Lightning and the plain loop in lock-step (``harness.LockstepTimer``); throughput from median step times."""
    precision, autocast_dtype = harness.precision_for(device)
    lightning, plain, pair_ratios = [], [], []
    for _ in range(sizes.repeats):
        plain_step = harness.PlainStep(model, plain_loss, make_optimizer, device, autocast_dtype)
        lightning_steps, plain_steps = harness.lockstep_step_seconds(model, plain_step, batches, sizes.warmup, device, precision)
        lightning += lightning_steps
        plain += plain_steps
        # plain step k ran right after Lightning step k, under the same load: a cross-check less sensitive to drift
        # (the last plain step has no Lightning step after it to time: one pair fewer)
        pair_ratios += [p / lit for lit, p in zip(lightning_steps, plain_steps, strict=False)]
    step = {"lightning": statistics.median(lightning), "plain": statistics.median(plain)}
    overhead_ms = 1000 * (step["lightning"] - step["plain"])
    paired = statistics.median(pair_ratios)
    return Row(
        name,
        harness.per_second(items_per_batch, step["lightning"]),
        harness.per_second(items_per_batch, step["plain"]),
        unit,
        GOAL,
        note=f"{precision} {device.type}; median step {1000 * step['lightning']:.1f} vs {1000 * step['plain']:.1f} ms"
        f" (Lightning {overhead_ms:+.2f} ms/step, paired median ratio {paired:.3f}); {note};"
        f" {len(lightning)}/{len(plain)} steps in lock-step after {sizes.warmup} warm-up",
    )


def rows_on(device: torch.device, sizes: Sizes, suffix: str = "") -> list[Row]:
    return [
        *harness.guarded(lambda: [blae_row(sizes, device, BLAE_NAME + suffix)], [(BLAE_NAME + suffix, "images/s", GOAL)]),
        *harness.guarded(lambda: [arvm_row(sizes, device, ARVM_NAME + suffix)], [(ARVM_NAME + suffix, "tokens/s", GOAL)]),
    ]


def run(smoke: bool = False) -> list[Row]:
    sizes = SMOKE if smoke else FULL
    cpu_rows = rows_on(torch.device("cpu"), sizes)
    gpu_rows = harness.gpu_or_placeholders(lambda cuda: rows_on(cuda, sizes, harness.GPU_SUFFIX), [(name, unit) for name, unit, _ in ROWS])
    return cpu_rows + gpu_rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    from bench.run_all import format_table

    print(format_table(run(smoke=parser.parse_args().smoke)))

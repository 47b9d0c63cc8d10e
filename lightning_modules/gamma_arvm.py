"""GammaARVM: the neural γ-ARVM, a windowed transformer over a frozen BL-AE's tokens."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from lightning_modules.base import InjectedOptimizers
from lightning_modules.token_model import Gamma, LatentTokenModel
from networks.bits import bits_to_tokens
from networks.compiled_step import compile_network
from networks.window_transformer import AttentionKind, WindowedARConfig, WindowedARTransformer


class GammaARVM(InjectedOptimizers, LatentTokenModel):
    """Predicts the histogram over all 2^C values of the next token from the tokens within γ.

    `flip_prob` > 0 trains against the bit-flip-kernel soft target (docs/models.md, kernel γ-ARVM): every
    training token is treated as a random variable rather than a label. `compile` = True runs the network's
    forward and its cached sampling step through torch.compile (networks/compiled_step.py; same logits).
    `attention` picks the training path's attention (networks/window_transformer.py: "auto" by a cost rule,
    "flex" = torch's FlexAttention for GPUs, opt-in).
    """

    def __init__(
        self,
        autoencoder: str | None = None,
        gamma: Gamma = "global",
        n_layer: int = 3,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
        head: Literal["histogram", "bits"] = "histogram",
        flip_prob: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        image_size: int = 8,
        channels: int = 1,
        sample_seed: int = 0,
        temperature: float = 1.0,
        train_nll_grids: int | None = 1000,
        compile: bool = False,
        attention: AttentionKind = "auto",
    ):
        super().__init__(autoencoder, gamma, image_size, channels, sample_seed, temperature, train_nll_grids)
        self.save_hyperparameters(logger=False)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        height, width = self.grid_shape
        self.net = WindowedARTransformer(
            WindowedARConfig(
                height=height,
                width=width,
                num_bits=self.num_bits,
                gamma=self.gamma,
                n_layer=n_layer,
                n_head=n_head,
                n_embd=n_embd,
                dropout=dropout,
                head=head,
                attention=attention,
            )
        )
        if compile:
            compile_network(self.net)

    def sample(self, n: int, temperature: float = 1.0, generator=None) -> Tensor:
        return self.net.sample(n, temperature, generator)

    @torch.no_grad()
    def resample(self, tokens: Tensor, redraw: Tensor, seeds: list[int], conditioning: str = "causal") -> Tensor:
        """Causal only: a cell's conditional given later cells is not something this network outputs."""
        self.check_conditioning(conditioning)
        return self.net.resample(tokens.to(self.device), redraw.to(self.device), self.temperature, seeds)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        tokens = batch["tokens"]
        loss = self.net.loss(self.net(tokens), tokens, self.hparams["flip_prob"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def nll_bits(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.net(tokens)  # (B, T, out_dim)
        # the most likely token: per bit for the factorized head, over the histogram otherwise
        predicted = bits_to_tokens(logits > 0) if self.net.config.head == "bits" else logits.argmax(-1)  # (B, T)
        return self.net.nll_bits(logits, tokens), predicted

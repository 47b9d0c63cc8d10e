"""KernelGammaARVM: the training-free γ-ARVM (docs/models.md) behind the same CLI and metrics.

Nothing is fitted: its "training set" is the token grids of the data module's train split, read
in `setup`. Use it with `validate` (val/nll_bits), `predict` (samples) or the sweep.
"""

from __future__ import annotations

from torch import Tensor

from lightning_modules.token_model import Gamma, LatentTokenModel
from networks.kernel_estimator import KernelARVM


class KernelGammaARVM(LatentTokenModel):
    def __init__(
        self,
        autoencoder: str | None = None,
        gamma: Gamma = "global",
        flip_prob: float = 0.002,
        chunk_size: int = 4096,
        image_size: int = 8,
        channels: int = 1,
        sample_seed: int = 0,
        temperature: float = 1.0,
        train_nll_grids: int | None = 1000,
    ):
        super().__init__(autoencoder, gamma, image_size, channels, sample_seed, temperature, train_nll_grids)
        self.save_hyperparameters(logger=False)
        self.estimator: KernelARVM | None = None

    def setup(self, stage: str) -> None:
        if self.estimator is None:
            self.fit_to(self.trainer.datamodule.token_grids())  # type: ignore[attr-defined]  # set by Lightning, not declared

    def fit_to(self, train_tokens: Tensor) -> KernelGammaARVM:
        """Store the training token grids (the estimator's whole state)."""
        if tuple(train_tokens.shape[1:]) != tuple(self.grid_shape):
            raise ValueError(f"training tokens have grid {tuple(train_tokens.shape[1:])}, the autoencoder makes {self.grid_shape}")
        self.estimator = KernelARVM(
            train_tokens.to(self.device), self.num_bits, self.gamma, self.hparams["flip_prob"], self.hparams["chunk_size"]
        )
        return self

    def training_step(self, batch: dict, batch_idx: int):
        raise RuntimeError("KernelGammaARVM has nothing to train: run `validate` or `predict` (or sweep.py) instead of `fit`")

    def configure_optimizers(self):
        return None

    def sample(self, n: int, temperature: float = 1.0, generator=None) -> Tensor:
        assert self.estimator is not None  # set by setup / fit_to, which run before any sampling or evaluation
        return self.estimator.sample(n, temperature, generator).to(self.device)

    conditionings = ("window", "causal")

    def resample(self, tokens: Tensor, redraw: Tensor, seeds: list[int], conditioning: str = "window") -> Tensor:
        self.check_conditioning(conditioning)
        assert self.estimator is not None  # set by setup / fit_to, which run before any sampling or evaluation
        return self.estimator.resample(tokens, redraw, self.temperature, seeds, full_window=conditioning == "window").to(self.device)

    def nll_bits(self, tokens: Tensor) -> tuple[Tensor, None]:
        assert self.estimator is not None  # set by setup / fit_to, which run before any sampling or evaluation
        return self.estimator.nll_bits(tokens), None

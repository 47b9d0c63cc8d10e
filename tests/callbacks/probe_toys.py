"""What ProbesCallback reads of a trainer and a token model, on toy token grids with a lossless decoder.

A token grid of C-bit ids decodes to the (1, h, w) uint8 image id · 255 // (2^C - 1): copies decode to
exact copies (100 dB), a completion that differs in a few cells stays high, a different grid falls
far below 25 dB. The models are the real networks (KernelARVM, WindowedARTransformer) behind the
interface of lightning_modules.token_model.LatentTokenModel that the callback uses.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor

from networks.kernel_estimator import KernelARVM
from networks.window_transformer import WindowedARConfig, WindowedARTransformer


def toy_images(tokens: Tensor, num_bits: int) -> Tensor:
    """(N, h, w) ids -> (N, 1, h, w) uint8."""
    return (tokens.long() * (255 // (2**num_bits - 1))).to(torch.uint8).unsqueeze(1)


class ToyData:
    """The data-module side: token grids and their images per split."""

    def __init__(self, splits: dict[str, Tensor], num_bits: int):
        self.splits, self.num_bits = splits, num_bits

    def token_grids(self, split: str = "train") -> Tensor:
        return self.splits[split].long()

    def images_uint8(self, split: str = "train") -> Tensor:
        return toy_images(self.splits[split], self.num_bits)


def toy_trainer(data: ToyData, rank: int = 0, world_size: int = 1) -> SimpleNamespace:
    return SimpleNamespace(datamodule=data, global_rank=rank, world_size=world_size)


class ToyTokenModel(torch.nn.Module):
    """A network behind the token model's interface (grid_shape, num_bits, decode_tokens, resample)."""

    def __init__(self, net, num_bits: int, grid_shape: tuple[int, int], conditionings: tuple[str, ...]):
        super().__init__()
        self.net, self.num_bits, self.grid_shape, self.conditionings = net, num_bits, grid_shape, conditionings
        self.temperature = 1.0
        self.logged: dict[str, float] = {}

    @property
    def device(self):
        return torch.device("cpu")

    def decode_tokens(self, tokens: Tensor) -> Tensor:
        return toy_images(tokens, self.num_bits).float() / 127.5 - 1

    def check_conditioning(self, conditioning: str) -> None:
        if conditioning not in self.conditionings:
            raise ValueError(conditioning)

    def resample(self, tokens: Tensor, redraw: Tensor, seeds: list[int], conditioning: str = "causal") -> Tensor:
        self.check_conditioning(conditioning)
        if isinstance(self.net, KernelARVM):
            return self.net.resample(tokens, redraw, self.temperature, seeds, full_window=conditioning == "window")
        return self.net.resample(tokens, redraw, self.temperature, seeds)

    def log_dict(self, values: dict, sync_dist: bool = False) -> None:
        self.logged.update({k: float(v) for k, v in values.items()})


def kernel_model(train: Tensor, num_bits: int, gamma, flip_prob: float = 0.002) -> ToyTokenModel:
    net = KernelARVM(train, num_bits, gamma, flip_prob)
    return ToyTokenModel(net, num_bits, tuple(train.shape[1:]), ("window", "causal"))


def neural_model(height: int, width: int, num_bits: int, gamma, seed: int = 0) -> ToyTokenModel:
    torch.manual_seed(seed)
    net = WindowedARTransformer(
        WindowedARConfig(height=height, width=width, num_bits=num_bits, gamma=gamma, n_layer=1, n_head=2, n_embd=16)
    )
    return ToyTokenModel(net.eval(), num_bits, (height, width), ("causal",))


def iid_grids(count: int, height: int, width: int, num_bits: int, seed: int) -> Tensor:
    return torch.randint(0, 2**num_bits, (count, height, width), generator=torch.Generator().manual_seed(seed))

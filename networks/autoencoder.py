"""Encoder/decoder families of the BL-AE (pure torch).

- Patch-MLP (the authors' follow-up design, docs/models.md): every pixel's k×k neighbourhood -> 1×1 convs
  with residual 1×1 blocks -> C latent channels; no downsampling, so the latent grid is the image
  grid. (Unfold k×k followed by a 1×1 conv is exactly a k×k conv, which is what we run.)
- Conv ResNet: downsampling by 2^levels for images of 32 px and more (this project's choice, docs/models.md).

Every encoder/decoder exposes `image_channels`, `latent_channels` and `downsample` so the
LightningModule can check them against the data and derive the latent grid shape.
"""

from torch import Tensor, nn


class ResidualPointwiseBlock(nn.Module):
    """x + conv1x1(relu(conv1x1(x))), no normalization (as the authors)."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, width, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def patch_mlp(in_channels: int, out_channels: int, width: int, num_blocks: int, patch_size: int) -> nn.Sequential:
    if patch_size % 2 == 0:
        raise ValueError(f"patch_size must be odd so the grid keeps its size, got {patch_size}")
    return nn.Sequential(
        nn.Conv2d(in_channels, width, patch_size, padding=patch_size // 2),  # == unfold k×k + 1×1 conv
        *[ResidualPointwiseBlock(width) for _ in range(num_blocks)],
        nn.ReLU(),
        nn.Conv2d(width, out_channels, 1),
    )


class PatchMLPEncoder(nn.Module):
    """(B, image_channels, H, W) image -> (B, latent_channels, H, W) pre-tanh latent."""

    downsample = 1

    def __init__(self, image_channels: int = 1, latent_channels: int = 6, width: int = 128, num_blocks: int = 2, patch_size: int = 3):
        super().__init__()
        self.image_channels, self.latent_channels = image_channels, latent_channels
        self.net = patch_mlp(*self.io_channels(), width, num_blocks, patch_size)

    def io_channels(self) -> tuple[int, int]:
        return self.image_channels, self.latent_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PatchMLPDecoder(PatchMLPEncoder):
    """The mirror: (B, latent_channels, H, W) latent -> (B, image_channels, H, W) image in about [-1, 1]."""

    def io_channels(self) -> tuple[int, int]:
        return self.latent_channels, self.image_channels


class ResBlock(nn.Module):
    """Pre-activation 3×3 residual block with GroupNorm."""

    def __init__(self, width: int):
        super().__init__()
        groups = min(32, width // 4) or 1
        self.net = nn.Sequential(
            nn.GroupNorm(groups, width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GroupNorm(groups, width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class ConvResNetEncoder(nn.Module):
    """(B, image_channels, H, W) -> (B, latent_channels, H / 2^levels, W / 2^levels)."""

    def __init__(self, image_channels: int = 3, latent_channels: int = 16, width: int = 64, levels: int = 2, blocks_per_level: int = 1):
        super().__init__()
        self.image_channels, self.latent_channels, self.downsample = image_channels, latent_channels, 2**levels
        layers: list[nn.Module] = [nn.Conv2d(image_channels, width, 3, padding=1)]
        for _ in range(levels):
            layers += [ResBlock(width) for _ in range(blocks_per_level)]
            layers.append(nn.Conv2d(width, width, 4, stride=2, padding=1))  # halves H and W
        layers += [ResBlock(width), nn.SiLU(), nn.Conv2d(width, latent_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvResNetDecoder(nn.Module):
    """(B, latent_channels, h, w) -> (B, image_channels, h * 2^levels, w * 2^levels)."""

    def __init__(self, image_channels: int = 3, latent_channels: int = 16, width: int = 64, levels: int = 2, blocks_per_level: int = 1):
        super().__init__()
        self.image_channels, self.latent_channels, self.downsample = image_channels, latent_channels, 2**levels
        layers = [nn.Conv2d(latent_channels, width, 3, padding=1), ResBlock(width)]
        for _ in range(levels):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1)]
            layers += [ResBlock(width) for _ in range(blocks_per_level)]
        layers += [nn.SiLU(), nn.Conv2d(width, image_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

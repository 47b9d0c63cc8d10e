"""Nearest-neighbour memorization of generated samples against the (deduplicated) training set.

Three tests share one exact NN search each, and a fourth searches a second pixel reference:
- NN-PSNR >= tau (tau = 25 dB, as in the follow-up code of Zhao & Basu, arXiv 2506.21731). Max
  PSNR over the training set is the PSNR of the L2 nearest neighbour, so it is computed exactly as
  a 1-NN.
- the ratio test d1/d2 < 1/3 of L2 distances in pixel space (Yoon et al. 2023; Gu et al., "On
  Memorization in Diffusion Models", TMLR 2025). Duplicated training images make d2 = d1 for
  copies of them, hence the references are deduplicated first.
- latent copies: Hamming distance H of the sample's token grid to the nearest training grid
  (0 = exact copy, <= fraction x bits = near copy), and the same L2 ratio test on the ±1 codes:
  ||s - t|| = 2 sqrt(H), so d1/d2 = sqrt(H1/H2) < 1/3, i.e. H1/H2 < 1/9 (`code_l2_ratio`; a ratio
  of Hamming distances against 1/3 would be a looser rule with another name). docs/metrics.md.
- decoded copies (`decoded_reference`): NN-PSNR >= tau against the training images as the
  autoencoder decodes them (their reconstructions: what a copier of a training token grid or
  latent decodes to). A perfect copier scores 1 here at any autoencoder quality, whereas against
  the original images it scores only as well as the decoder reconstructs (the pixel rates' ceiling).

Images are compared as saved uint8 images would be: the quantization can only merge nearly equal
pixels, and uint8 on both sides gives an exact integer search (nn_search/).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor

from imaging.pixels import signed_unit_to_uint8
from metrics._per_sample import PerSampleMetric
from nn_search import deduplicate_rows, exact_l2_top2, first_occurrence, hamming_top2, search_sq_norms, token_codes

PSNR_CAP_DB = 100.0  # reported for exact copies (MSE = 0)


def psnr_from_distance(l2_distance: Tensor, num_values: int) -> Tensor:
    """L2 distance between uint8 images (0-255 scale) -> PSNR in dB, capped at PSNR_CAP_DB."""
    mse = l2_distance.double().square() / num_values
    return (10 * torch.log10(255.0**2 / mse)).clamp(max=PSNR_CAP_DB)  # mse = 0 -> inf -> cap


def nn_ratio(d1: Tensor, d2: Tensor) -> Tensor:
    """d1 / d2, defined as 0 when d1 = 0 (an exact copy passes the ratio test whatever d2 is)."""
    return torch.where(d1 == 0, torch.zeros_like(d1), d1 / d2)


def code_l2_ratio(hamming1: Tensor, hamming2: Tensor) -> Tensor:
    """L2 distance ratio d1/d2 of ±1 codes from their Hamming distances: ||s - t|| = 2 sqrt(H)."""
    return nn_ratio(hamming1.double().sqrt(), hamming2.double().sqrt())


def ratio_key(threshold: float) -> str:
    """1/3 -> "ratio13", 0.5 -> "ratio12": the literature's name for the ratio test."""
    fraction = Fraction(threshold).limit_denominator(1000)
    return f"ratio{fraction.numerator}{fraction.denominator}"


class _DedupedReference:
    """A deduplicated reference set plus the original index of each kept row."""

    def __init__(self, rows: Tensor, what: str) -> None:
        unique = deduplicate_rows(rows)
        if unique.rows.shape[0] < 2:
            raise ValueError(f"need at least 2 distinct reference {what} for a 2-NN ratio test, got {unique.rows.shape[0]}")
        self.rows = unique.rows
        self.original_index = first_occurrence(unique.inverse)  # (U,) long


class NNMemorization(PerSampleMetric):
    """Memorization rates of generated images (and optionally their token grids) vs a training set.

    reference_images: uint8 (N, C, H, W) training images; reference_tokens: long (N, h, w) token
    ids of the same (or other) training items, packing `num_bits` sign bits each. Both are
    deduplicated separately and kept as non-persistent uint8 / int8 buffers, so `.half()` or a
    bf16 Lightning run cannot round them. decoded_reference: optional uint8 (M, C, H, W) training
    images decoded through the autoencoder (their reconstructions), for the `decoded_*` NN-PSNR
    rates; deduplicated too, and one distinct row is enough (no ratio test is run against it: a
    collapsed decoder may map every image to one). `per_sample()` gives the values behind the rates and the
    nearest training index (into the arguments as given) of every sample. Under DDP, `compute()`
    and `per_sample()` are collectives: call them on every rank (a rank may have seen no sample).
    """

    higher_is_better = False
    reference_pixels: Tensor  # buffers; the token ones exist only with reference_tokens
    reference_pixel_index: Tensor
    reference_sq_norms: Tensor
    reference_codes: Tensor
    reference_token_index: Tensor
    decoded_pixels: Tensor  # the decoded ones exist only with decoded_reference
    decoded_pixel_index: Tensor
    decoded_sq_norms: Tensor

    def __init__(
        self,
        reference_images: Tensor,
        reference_tokens: Tensor | None = None,
        num_bits: int | None = None,
        decoded_reference: Tensor | None = None,
        psnr_thresholds: Sequence[float] = (25.0, 30.0, 35.0),
        ratio_threshold: float = 1 / 3,
        near_copy_fraction: float = 0.01,
        chunk_size: int = 1024,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if reference_images.dtype != torch.uint8 or reference_images.ndim != 4:
            raise ValueError(f"reference_images must be uint8 (N, C, H, W), got {reference_images.dtype} {tuple(reference_images.shape)}")
        self.image_shape = tuple(reference_images.shape[1:])
        self.psnr_thresholds = tuple(float(t) for t in psnr_thresholds)
        self.ratio_threshold = ratio_threshold
        self.near_copy_fraction = near_copy_fraction
        self.chunk_size = chunk_size
        self.num_bits = num_bits

        pixels = _DedupedReference(reference_images.flatten(1), "images")
        self.register_buffer("reference_pixels", pixels.rows, persistent=False)  # (U, C*H*W) uint8
        self.register_buffer("reference_pixel_index", pixels.original_index, persistent=False)  # (U,) long
        self.register_buffer("reference_sq_norms", search_sq_norms(pixels.rows), persistent=False)  # (U,) int32, once
        self.add_per_sample_state("nn_psnr", "ratio", "nearest_index")

        self.with_tokens = reference_tokens is not None
        if reference_tokens is not None:  # i.e. self.with_tokens
            if num_bits is None:
                raise ValueError("num_bits is required with reference_tokens")
            if reference_tokens.ndim != 3:
                raise ValueError(f"reference_tokens must be (N, h, w) ids, got shape {tuple(reference_tokens.shape)}")
            grids = _DedupedReference(reference_tokens.long(), "token grids")
            self.register_buffer("reference_codes", token_codes(grids.rows, num_bits), persistent=False)  # (Ut, C*h*w) int8
            self.register_buffer("reference_token_index", grids.original_index, persistent=False)  # (Ut,) long
            self.num_code_bits = self.reference_codes.shape[1]
            self.add_per_sample_state("hamming", "hamming2", "latent_nearest_index")

        self.with_decoded = decoded_reference is not None
        if decoded_reference is not None:  # i.e. self.with_decoded
            if decoded_reference.dtype != torch.uint8 or tuple(decoded_reference.shape[1:]) != self.image_shape:
                raise ValueError(
                    f"decoded_reference must be uint8 (M, {', '.join(map(str, self.image_shape))}), "
                    f"got {decoded_reference.dtype} {tuple(decoded_reference.shape)}"
                )
            if decoded_reference.shape[0] == 0:
                raise ValueError("decoded_reference is empty")
            decoded = deduplicate_rows(decoded_reference.flatten(1))
            self.register_buffer("decoded_pixels", decoded.rows, persistent=False)  # (Ud, C*H*W) uint8
            self.register_buffer("decoded_pixel_index", first_occurrence(decoded.inverse), persistent=False)  # (Ud,) long
            self.register_buffer("decoded_sq_norms", search_sq_norms(decoded.rows), persistent=False)  # (Ud,) int32, once
            self.add_per_sample_state("decoded_nn_psnr", "decoded_nearest_index")

    def update(self, images: Tensor, tokens: Tensor | None = None) -> None:
        """images: (B, C, H, W) float in [-1, 1] or uint8; tokens: (B, h, w) ids, required iff the
        metric was built with reference_tokens."""
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images of shape {tuple(images.shape[1:])} do not match the reference {self.image_shape}")
        if self.with_tokens != (tokens is not None):
            raise ValueError("pass tokens exactly when the metric was built with reference_tokens")
        codes = self._codes(tokens) if tokens is not None else None  # (B, C*h*w) int8, validated first; tokens iff with_tokens
        pixels = signed_unit_to_uint8(images.to(self.reference_pixels.device)).flatten(1)  # (B, C*H*W) uint8
        top = exact_l2_top2(pixels, self.reference_pixels, self.reference_sq_norms, chunk_size=self.chunk_size)
        self.append_per_sample(
            nn_psnr=psnr_from_distance(top.d1, pixels.shape[1]),
            ratio=nn_ratio(top.d1, top.d2),
            nearest_index=self.reference_pixel_index[top.idx1],
        )
        if self.with_decoded:
            decoded = exact_l2_top2(pixels, self.decoded_pixels, self.decoded_sq_norms, chunk_size=self.chunk_size)
            self.append_per_sample(
                decoded_nn_psnr=psnr_from_distance(decoded.d1, pixels.shape[1]),
                decoded_nearest_index=self.decoded_pixel_index[decoded.idx1],
            )
        if codes is not None:
            latent = hamming_top2(codes, self.reference_codes, chunk_size=self.chunk_size)
            self.append_per_sample(hamming=latent.d1, hamming2=latent.d2, latent_nearest_index=self.reference_token_index[latent.idx1])

    def _codes(self, tokens: Tensor) -> Tensor:
        assert self.num_bits is not None  # cannot fire: __init__ requires num_bits with reference_tokens
        codes = token_codes(tokens.to(self.reference_codes.device), self.num_bits)  # (B, C*h*w) int8
        if codes.shape[1] != self.num_code_bits:
            raise ValueError(f"token grids give {codes.shape[1]} bits, the reference {self.num_code_bits}")
        return codes

    def compute(self) -> dict[str, Tensor]:
        psnr, ratio = self.gathered("nn_psnr"), self.gathered("ratio")
        rates = {f"psnr{threshold:g}_rate": _rate(psnr >= threshold) for threshold in self.psnr_thresholds}
        rates[f"{ratio_key(self.ratio_threshold)}_rate"] = _rate(ratio < self.ratio_threshold)
        rates["nn_psnr_median"] = _median(psnr)
        if self.with_decoded:
            decoded_psnr = self.gathered("decoded_nn_psnr")
            rates |= {f"decoded_psnr{threshold:g}_rate": _rate(decoded_psnr >= threshold) for threshold in self.psnr_thresholds}
            rates["decoded_nn_psnr_median"] = _median(decoded_psnr)
        if self.with_tokens:
            hamming, hamming2 = self.gathered("hamming"), self.gathered("hamming2")
            rates["latent_copy_rate"] = _rate(hamming == 0)
            rates["latent_near_copy_rate"] = _rate(hamming <= self.near_copy_fraction * self.num_code_bits)
            rates[f"latent_{ratio_key(self.ratio_threshold)}_rate"] = _rate(code_l2_ratio(hamming, hamming2) < self.ratio_threshold)
            rates["hamming_median"] = _median(hamming)
        return rates

    def per_sample(self) -> dict[str, Tensor]:
        """Synced per-sample values (for histograms / tables); a collective: call on every rank.

        Keys: nn_psnr, ratio, nearest_index (long, into reference_images) and with tokens:
        hamming, latent_ratio (the L2 ratio sqrt(H1/H2)), latent_nearest_index (long, into reference_tokens);
        with a decoded reference: decoded_nn_psnr, decoded_nearest_index (long, into decoded_reference).
        """
        states = self.synced_per_sample()
        values = {"nn_psnr": states["nn_psnr"], "ratio": states["ratio"], "nearest_index": states["nearest_index"].long()}
        if self.with_tokens:
            values["hamming"] = states["hamming"]
            values["latent_ratio"] = code_l2_ratio(states["hamming"], states["hamming2"])
            values["latent_nearest_index"] = states["latent_nearest_index"].long()
        if self.with_decoded:
            values["decoded_nn_psnr"] = states["decoded_nn_psnr"]
            values["decoded_nearest_index"] = states["decoded_nearest_index"].long()
        return values


def _rate(flags: Tensor) -> Tensor:
    return flags.double().mean()  # NaN when no sample was seen


def _median(values: Tensor) -> Tensor:
    if values.numel() == 0:
        return values.new_tensor(float("nan"))
    return torch.quantile(values, 0.5)

"""The sweep's console: one line per cell (what, how long, its headline figure) with the overall progress,
while each cell's full output goes to its own log file (``runtime/output_redirect.py`` in this process,
``sweep/workers.py`` in a worker)."""

from __future__ import annotations


def figure(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def headline(record: dict) -> str:
    """An autoencoder's val/psnr (and a BL-AE's bin rate); a token model's memorization and its train/val nll (bits per token)."""
    metrics, stage = record.get("metrics", {}), record.get("role", {}).get("stage")
    parts = []
    if stage in ("blae", "vae"):
        if (psnr := figure(metrics, "val/psnr")) is not None:
            parts.append(f"val/psnr {psnr:.1f} dB")
        if (bin_rate := figure(metrics, "val/bin_rate")) is not None:  # a BL-AE's: how binary its latents became
            parts.append(f"bin rate {bin_rate:.2f}")
    else:
        if (rate := figure(metrics, "mem/psnr25_rate")) is not None:
            parts.append(f"memorization {rate:.2f}")
        nll = [f"{split} {value:.3f}" for split in ("train", "val") if (value := figure(metrics, f"{split}/nll_bits")) is not None]
        if nll:
            parts.append(f"nll bits/token {' / '.join(nll)}")
        if figure(metrics, "fit/plateaued") == 0:
            parts.append("NOT plateaued")
    return ", ".join(parts)


def cell_line(name: str, record: dict) -> str:
    """``neural-gamma-2: done in 63 s (61 CPU s), memorization 0.12, nll bits/token train 0.081 / val 0.402``."""
    cost = f"done in {record.get('seconds', 0):.0f} s"
    if record.get("cpu_s") is not None:
        cost += f" ({record['cpu_s']:.0f} CPU s)"
    figures = headline(record)
    return f"{name}: {cost}" + (f", {figures}" if figures else "")

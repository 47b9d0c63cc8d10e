"""Writing a report figure: one layout, resolution and clean-up for every plot (report/plots.py selects the backend)."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: Path) -> None:
    """Lay out, write at the report's resolution (120 dpi) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

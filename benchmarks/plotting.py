"""Matplotlib for the benchmark charts: imported on demand (headless), figures saved where asked."""
from __future__ import annotations

from pathlib import Path


def pyplot(command: str):
    """``matplotlib.pyplot`` with the file-only Agg backend, or a one-line exit naming ``command``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(f"dannet-bench {command} --plot: needs matplotlib (pip install matplotlib)") from None
    return plt


def save(fig, path: str | Path) -> None:
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)

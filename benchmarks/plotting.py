"""Matplotlib for the benchmark charts: imported on demand (headless), figures saved where asked."""
from __future__ import annotations

import io
from pathlib import Path

from runtime.atomic import atomic_write
from runtime.errors import DannetError


def pyplot(command: str):
    """``matplotlib.pyplot`` with the file-only Agg backend, or a one-line error naming ``command``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DannetError(f"--plot: dannet-bench {command} needs matplotlib (pip install matplotlib)") from None
    return plt


def save(fig, path: str | Path) -> None:
    """The figure as a PNG at ``path``, replacing what was there whole or not at all."""
    fig.tight_layout()
    encoded = io.BytesIO()
    fig.savefig(encoded, dpi=120, format="png")
    atomic_write(path, encoded.getvalue())

"""Shared pytest fixtures and the GPU/TensorRT skip rules."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the exact state-dict layouts of the DANNet reference networks (outside the repo, in ../shared)
REFERENCE_LAYOUTS = REPO.parent / "shared" / "reference" / "state_dict"


def reference_layout(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """``[(key, shape)]`` of a reference network, from ``shared/reference/state_dict/<name>.txt``."""
    path = REFERENCE_LAYOUTS / f"{name}.txt"
    if not path.is_file():
        pytest.skip(f"reference layout {path} not present")
    rows = []
    for line in path.read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        rows.append((key, () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))))
    return rows


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch
        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    try:
        import tensorrt  # noqa: F401
        has_trt = has_gpu
    except ImportError:
        has_trt = False
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT and a CUDA GPU"))

"""Benchmark commands on a tiny model: well-formed JSON and plots, and agreement of the reference loop
with the exported graph."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.cli import main as bench_main
from export import ExportSpec, to_onnx
from train.checkpoint import save_checkpoint
from train.models import RelightNet, build_segmenter


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bench")
    ckpt = save_checkpoint(root / "tiny.pth", {"segmenter": build_segmenter("pspnet", backbone="resnet18").eval(),
                                               "light": RelightNet(channels=16).eval()}, arch="pspnet",
                           config={"model": {"backbone": "resnet18"}})
    onnx_path = to_onnx(ckpt, root / "tiny.onnx", ExportSpec(input_size=(64, 128), output_size=(128, 256)),
                        say=lambda s: None)
    return ckpt, onnx_path


def test_compare_writes_json_and_plot(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, onnx_path = tiny
    bench_main(["compare", "--model", str(onnx_path), "--checkpoint", str(ckpt), "--input-size", "64x128",
                "--output-size", "128x256", "--frames", "2", "--warmup", "1", "--json", str(tmp_path / "c.json"),
                "--plot", str(tmp_path / "c.png")])
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["frames"] == 2 and result["reference"]["p50_ms"] > 0 and result["ours"]["p50_ms"] > 0
    assert result["speedup_p50"] == pytest.approx(result["reference"]["p50_ms"] / result["ours"]["p50_ms"], rel=1e-6)
    assert set(result["reference_stages_p50_ms"]) == {"preprocess", "network", "postprocess"}
    assert result["identical_pixels"] >= 0.999  # the documented tolerance: fp32 rounding at near-ties
    assert Image.open(tmp_path / "c.png").size[0] > 400


def test_compare_refuses_plugin_graphs(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, _ = tiny
    plugin = to_onnx(ckpt, tmp_path / "plugin.onnx", ExportSpec(input_size=(64, 128), output_size=(128, 256),
                                                                 tail="plugin"), say=lambda s: None)
    with pytest.raises(SystemExit, match="portable-tail"):
        bench_main(["compare", "--model", str(plugin), "--checkpoint", str(ckpt), "--input-size", "64x128",
                    "--output-size", "128x256"])


def test_kernel_benchmark_says_it_needs_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would run")
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        bench_main(["kernel", "--iters", "1"])

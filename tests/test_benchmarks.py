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


@pytest.fixture(scope="module")
def tiny(tiny_graphs: dict[str, Path]) -> tuple[Path, Path]:
    return tiny_graphs["checkpoint"], tiny_graphs["portable"]


def test_compare_writes_json_and_plot(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, onnx_path = tiny
    assert bench_main(["compare", "--model", str(onnx_path), "--checkpoint", str(ckpt), "--input-size", "64x128",
                       "--output-size", "96x160", "--frames", "2", "--warmup", "1", "--json", str(tmp_path / "c.json"),
                       "--plot", str(tmp_path / "c.png")]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["frames"] == 2 and result["reference"]["p50_ms"] > 0 and result["ours"]["p50_ms"] > 0
    assert result["speedup_p50"] == pytest.approx(result["reference"]["p50_ms"] / result["ours"]["p50_ms"], rel=1e-6)
    assert set(result["reference_stages_p50_ms"]) == {"preprocess", "network", "postprocess"}
    assert result["identical_pixels"] >= 0.999  # the documented tolerance: fp32 rounding at near-ties
    assert Image.open(tmp_path / "c.png").size[0] > 400


def test_compare_refuses_plugin_graphs(tiny_graphs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert bench_main(["compare", "--model", str(tiny_graphs["plugin"]), "--checkpoint",
                       str(tiny_graphs["checkpoint"]), "--input-size", "64x128", "--output-size", "96x160"]) == 2
    assert "has the TensorRT plugin tail" in capsys.readouterr().err


def test_kernel_benchmark_says_it_needs_a_gpu(capsys: pytest.CaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would run")
    assert bench_main(["kernel", "--iters", "1"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_latency_writes_json_and_plot(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    assert bench_main(["latency", "--model", str(tiny_graphs["portable"]), "--input-size", "128x256", "--iters", "3",
                       "--warmup", "1", "--json", str(tmp_path / "l.json"), "--plot", str(tmp_path / "l.png")]) == 0
    result = json.loads((tmp_path / "l.json").read_text())
    assert set(result["stages_ms"]) == {"preprocess", "inference", "postprocess", "overlay"}
    for stats in [*result["stages_ms"].values(), result["end_to_end_ms"]]:
        assert 0 <= stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    assert result["frame_size"] == [128, 256] and result["network_input"] == [64, 128]
    assert result["output_size"] == [96, 160] and result["overhead_vs_inference"] >= 1.0
    assert result["throughput_fps"] > 0
    assert Image.open(tmp_path / "l.png").size[0] > 400


def test_miou_through_the_runtime_with_a_second_model(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    from train.data.synth import generate
    from train.metrics import ConfusionMeter

    root = generate(tmp_path / "dz", "darkzurich", 4, (96, 160), seed=2)
    assert bench_main(["miou", "--model", str(tiny_graphs["portable"]), "--dataset", "darkzurich-val", "--root",
                       str(root), "--compare-model", str(tiny_graphs["portable"]), "--save-predictions",
                       str(tmp_path / "pred"), "--check-cityscapesscripts", "--json", str(tmp_path / "m.json")]) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["images"] == 2 and len(result["iou"]) == 19
    assert result["delta_miou"] == 0 and result["identical_pixels"] == 1.0  # the same model twice
    assert result["same_checkpoint"] is True
    assert result["cityscapesscripts_miou"] == pytest.approx(result["miou"], abs=1e-9)
    # recompute the mIoU from the saved predictions, independently of the command's bookkeeping
    meter = ConfusionMeter()
    for pred in sorted((tmp_path / "pred").rglob("*_labelTrainIds.png")):
        gt = root / "gt" / "val" / "night" / pred.parent.name / pred.name.replace("_labelTrainIds", "_gt_labelTrainIds")
        meter.update(np.asarray(Image.open(pred)), np.asarray(Image.open(gt)))
    assert meter.miou == pytest.approx(result["miou"])
    assert len(list((tmp_path / "pred").rglob("*_color.png"))) == 2


def test_std_sweep_agrees_with_the_evaluation_code(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    from runtime.classes import class_weights
    from train.data import EvalTransform, build_dataset
    from train.data.synth import generate
    from train.evaluate import evaluate, load_networks

    root = generate(tmp_path / "dz", "darkzurich", 4, (64, 128), seed=4)
    ckpt = str(tiny_graphs["checkpoint"])
    assert bench_main(["sweep", "--checkpoint", ckpt, "--dataset", "darkzurich-val", "--root", str(root), "--scale",
                       "1", "--stds", "0,0.16", "--json", str(tmp_path / "s.json"), "--plot",
                       str(tmp_path / "s.png")]) == 0
    result = json.loads((tmp_path / "s.json").read_text())
    seg, light, _, _ = load_networks(ckpt)
    dataset = build_dataset("darkzurich-val", root, transform=EvalTransform(scale=1.0))
    for std, weights in (("0.16", torch.from_numpy(class_weights(0.16))), ("0.0", torch.ones(19))):
        assert result["miou"][std] == pytest.approx(evaluate(seg, light, dataset, weights, progress=False).miou)
    assert result["best_std"] in (0.0, 0.16) and (tmp_path / "s.png").is_file()


def test_metric_agrees_with_cityscapesscripts_on_random_maps() -> None:
    pytest.importorskip("cityscapesscripts")
    from benchmarks.cityscapes_eval import cityscapes_miou
    from train.metrics import ConfusionMeter

    rng = np.random.default_rng(0)
    preds, labels, meter = [], [], ConfusionMeter()
    for _ in range(3):
        label = rng.integers(0, 19, (40, 60)).astype(np.uint8)
        label[label == 16] = 3  # 'train' absent from the ground truth...
        label[rng.random(label.shape) < 0.1] = 255  # ...and some pixels ignored
        pred = np.where(rng.random(label.shape) < 0.6, label, rng.integers(0, 19, label.shape)).astype(np.uint8)
        pred[pred == 255] = 0
        pred[pred == 17] = 5  # 'motorcycle' never predicted
        preds.append(pred)
        labels.append(label)
        meter.update(pred, label)
    assert cityscapes_miou(preds, labels) == pytest.approx(meter.miou, abs=1e-9)


def test_dark_zurich_submission_zip_layout_and_dtypes(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    import io
    import zipfile

    from train.data.synth import generate

    root = generate(tmp_path / "dz", "darkzurich", 4, (64, 128), seed=5)
    assert bench_main(["submission", "--checkpoint", str(tiny_graphs["checkpoint"]), "--root", str(root), "--scale",
                       "1", "--out", str(tmp_path / "sub.zip"), "--invalid-threshold", "0.3"]) == 0
    with zipfile.ZipFile(tmp_path / "sub.zip") as z:
        names = sorted(z.namelist())
        images = sorted(p.name for p in (root / "rgb_anon" / "test" / "night").rglob("*_rgb_anon.png"))
        for folder in ("labelTrainIds", "labelTrainIds_invalid", "confidence"):
            assert sorted(n.split("/", 1)[1] for n in names if n.startswith(folder + "/")) == images
        read = lambda n: np.asarray(Image.open(io.BytesIO(z.read(n))))  # noqa: E731
        labels, invalid = read(f"labelTrainIds/{images[0]}"), read(f"labelTrainIds_invalid/{images[0]}")
        confidence = read(f"confidence/{images[0]}")
    assert labels.dtype == np.uint8 and labels.shape == (64, 128) and labels.max() < 19
    assert confidence.dtype == np.uint16 and confidence.shape == (64, 128)
    assert confidence.min() >= 65535 // 19 - 1  # a max softmax over 19 classes is at least 1/19
    clear = np.abs(confidence.astype(float) - 0.3 * 65535) > 1  # away from the threshold's rounding band
    low = confidence < 0.3 * 65535
    assert (invalid[low & clear] == 255).all() and (invalid[~low & clear] == labels[~low & clear]).all()

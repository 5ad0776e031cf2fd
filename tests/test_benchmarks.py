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
from conftest import last_step_s


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
    assert result["command"].startswith(f"dannet-bench compare --model {onnx_path} --checkpoint {ckpt}")
    assert result["date"][:4].isdigit() and len(result["machine"]["load_average"]) == 3
    assert result["identical_pixels"] >= 0.999  # the documented tolerance: fp32 rounding at near-ties
    assert Image.open(tmp_path / "c.png").size[0] > 400


def test_compare_lets_each_path_go_first_in_turn(tiny: tuple[Path, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Frame by frame the reference loop and each model take turns going first: a path that always ran right after
    another would inherit its caches and threads' state in every sample."""
    import benchmarks.reference_loop as reference_loop
    from runtime.backends import OnnxRuntimeBackend

    ckpt, onnx_path = tiny
    order: list[str] = []
    reference, infer = reference_loop.reference_labels, OnnxRuntimeBackend.infer
    monkeypatch.setattr(reference_loop, "reference_labels",
                        lambda *a, **k: order.append("reference") or reference(*a, **k))
    monkeypatch.setattr(OnnxRuntimeBackend, "infer", lambda self, frames: order.append(str(id(self))) or
                        infer(self, frames))
    assert bench_main(["compare", "--model", str(onnx_path), "--also-model", str(onnx_path), "--checkpoint",
                       str(ckpt), "--input-size", "64x128", "--output-size", "96x160", "--frames", "3",
                       "--warmup", "0"]) == 0
    rounds = [order[i:i + 3] for i in range(0, 9, 3)]
    assert len(order) == 9 and all(len(set(r)) == 3 for r in rounds)
    assert len({r[0] for r in rounds}) == 3  # three frames, three different first paths


def test_generator_speed_baseline_writes_what_the_generator_wrote(tmp_path: Path) -> None:
    """synth_speed's "writing alone" baseline is the generator's own output written again: the same number of
    PNGs, the same pictures (it wrote random noise, one image and label pair per image, before)."""
    from benchmarks.synth_speed import writing_alone_s
    from train.data.synth import generate

    pngs = sorted(generate(tmp_path / "dz", "darkzurich", 2, (64, 128), seed=0).rglob("*.png"))
    assert writing_alone_s(pngs, tmp_path / "again") > 0
    again = sorted((tmp_path / "again").glob("*.png"), key=lambda path: int(path.stem))
    assert len(again) == len(pngs)
    for original, rewritten in zip(pngs, again):
        np.testing.assert_array_equal(np.asarray(Image.open(rewritten)), np.asarray(Image.open(original)))


def test_compare_refuses_plugin_graphs(tiny_graphs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert bench_main(["compare", "--model", str(tiny_graphs["plugin"]), "--checkpoint",
                       str(tiny_graphs["checkpoint"]), "--input-size", "64x128", "--output-size", "96x160"]) == 2
    assert "has the TensorRT plugin tail" in capsys.readouterr().err


def test_kernel_benchmark_says_it_needs_a_gpu(capsys: pytest.CaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would run")
    assert bench_main(["kernel", "--samples", "1"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_kernel_timing_counts_the_device_not_the_host_and_is_fair_to_every_path() -> None:
    """``interleaved_medians`` against a simulated GPU: each launch costs the host 0.5 units to build and the
    device its kernel's time (the stop waits for the device); the device starts a kernel when the host has queued
    it and the previous one is done, and the timer reads the device clock. Per-launch medians must come out at the
    kernels' times (not the host's), warm-up must not count, and two identical paths on a device that slows down as
    it warms must come out equal (the paths take turns)."""
    from benchmarks.kernel_bench import interleaved_medians

    host = device = 0.0
    slowdown = {"on": False}

    def launch(kernel_time: float):
        def call() -> None:
            nonlocal host, device
            host += 0.5
            device = max(device, host) + kernel_time * (1 + device / 200 if slowdown["on"] else 1)
        return call

    def timer():
        marks = {}

        def start() -> None:
            marks["start"] = max(device, host)

        def stop() -> float:  # waits for the device: the host goes on from there
            nonlocal host
            host = max(device, host)
            return host - marks["start"]
        return start, stop

    slow_first = iter([50.0] * 100)  # untimed, 5 of the 9 samples would be slow: the median would show it
    medians = interleaved_medians({"a": launch(2.0), "b": launch(5.0),
                                   "c": lambda: launch(next(slow_first, 3.0))()}, 9, 20, 100, timer)
    assert medians == pytest.approx({"a": 2.0, "b": 5.0, "c": 3.0}, rel=0.05)
    slowdown["on"] = True
    twins = interleaved_medians({"first": launch(2.0), "second": launch(2.0)}, 40, 10, 0, timer)
    assert twins["first"] == pytest.approx(twins["second"], rel=0.03)  # first always first: 10% apart


def test_latency_writes_json_and_plot(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    assert bench_main(["latency", "--model", str(tiny_graphs["portable"]), "--input-size", "128x256", "--iters", "3",
                       "--warmup", "1", "--json", str(tmp_path / "l.json"), "--plot", str(tmp_path / "l.png")]) == 0
    result = json.loads((tmp_path / "l.json").read_text())
    assert set(result["stages_ms"]) == {"preprocess", "inference", "postprocess", "overlay"}
    for stats in [*result["stages_ms"].values(), result["end_to_end_ms"]]:
        assert 0 <= stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    assert result["frame_size"] == [128, 256] and result["network_input"] == [64, 128]
    assert result["output_size"] == [96, 160] and result["overhead_vs_inference"] >= 1.0
    assert result["throughput_fps"] > 0 and result["precision"] == "fp32"
    assert Image.open(tmp_path / "l.png").size[0] > 400


def latency_flags(model: Path, *flags: str) -> list[str]:
    """``dannet-bench latency`` on ``model`` for one timed frame."""
    return ["latency", "--model", str(model), "--iters", "1", "--warmup", "0", *flags]


def test_latency_threads_are_onnx_runtimes_intra_op_threads(tiny_graphs: dict[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The session ONNX Runtime itself reports has the thread count asked for (per session, not per process)."""
    import onnxruntime as ort

    sessions = []

    class RecordedSession(ort.InferenceSession):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            sessions.append(self)

    monkeypatch.setattr(ort, "InferenceSession", RecordedSession)
    assert bench_main(latency_flags(tiny_graphs["portable"], "--threads", "2", "--json", str(tmp_path / "l.json"))) == 0
    assert [session.get_session_options().intra_op_num_threads for session in sessions] == [2]
    assert json.loads((tmp_path / "l.json").read_text())["threads"] == 2


def test_latency_threads_are_pytorchs_threads_for_a_pt2_program(tiny_program: Path, tmp_path: Path) -> None:
    """PyTorch's intra-op threads are the process's: the command sets them (a TypeError from the torch backend
    before)."""
    found = torch.get_num_threads()
    wanted = 3 if found != 3 else 2  # a count the command must set, not the one already there
    flags = latency_flags(tiny_program, "--threads", str(wanted), "--json", str(tmp_path / "l.json"))
    try:
        assert bench_main(flags) == 0
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(found)
    assert json.loads((tmp_path / "l.json").read_text())["threads"] == wanted


def test_latency_refuses_threads_for_a_tensorrt_engine(tiny_graphs: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    """An engine computes on the GPU: --threads would change nothing, so it is a usage error (a TypeError for a
    .plan, silently ignored for a .engine before); the same engine runs without it."""
    from tensorrt_standin import StandIn

    from export import build_engine

    StandIn().install(monkeypatch)
    engine = build_engine(tiny_graphs["portable"], tmp_path / "tiny.plan", say=lambda s: None)
    assert bench_main(latency_flags(engine, "--threads", "2")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--threads 2" in err and "TensorRT on the GPU" in err
    assert bench_main(latency_flags(engine)) == 0


def test_miou_through_the_runtime_with_a_second_model(tiny_graphs: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    import onnx

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
    # the same checkpoint exported with another relighting file is another network: said so
    graph = onnx.load(str(tiny_graphs["portable"]))
    metadata = {p.key: p.value for p in graph.metadata_props}
    onnx.helper.set_model_props(graph, {**metadata, "dannet.light_sha256": "0" * 64})
    onnx.save(graph, str(tmp_path / "relit.onnx"))
    assert bench_main(["miou", "--model", str(tiny_graphs["portable"]), "--dataset", "darkzurich-val", "--root",
                       str(root), "--compare-model", str(tmp_path / "relit.onnx"), "--max-images", "1", "--json",
                       str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["same_checkpoint"] is False
    assert "exported from different checkpoints (or relighting files)" in capsys.readouterr().out


def test_std_sweep_agrees_with_the_evaluation_code(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    from runtime.classes import class_weights
    from train.data import EvalTransform, build_dataset
    from train.data.synth import generate
    from train.checkpoint import load_checkpoint, save_checkpoint
    from train.evaluate import evaluate, load_networks

    root = generate(tmp_path / "dz", "darkzurich", 4, (64, 128), seed=4)
    ckpt = str(tiny_graphs["checkpoint"])
    assert bench_main(["sweep", "--checkpoint", ckpt, "--dataset", "darkzurich-val", "--root", str(root), "--scale",
                       "1", "--device", "cpu", "--stds", "0,0.16", "--json", str(tmp_path / "s.json"), "--plot",
                       str(tmp_path / "s.png")]) == 0
    result = json.loads((tmp_path / "s.json").read_text())
    seg, light, _, _ = load_networks(ckpt)
    dataset = build_dataset("darkzurich-val", root, transform=EvalTransform(scale=1.0))
    for std, weights in (("0.16", torch.from_numpy(class_weights(0.16))), ("0.0", torch.ones(19))):
        assert result["miou"][std] == pytest.approx(evaluate(seg, light, dataset, weights, progress=False).miou)
    assert result["best_std"] in (0.0, 0.16) and (tmp_path / "s.png").is_file()
    # a run that validated with the paper's probabilities is swept with them, unless --reweight says otherwise
    tiny = load_checkpoint(ckpt)
    run = save_checkpoint(tmp_path / "run.pth", dict(tiny.models), arch="pspnet",
                          config={**tiny.config, "eval": {"weights_std": 0.16, "reweight": "probs"}})
    expected = {reweight: evaluate(seg, light, dataset, torch.from_numpy(class_weights(0.3)), reweight,
                                   progress=False).miou for reweight in ("logits", "probs")}
    assert expected["probs"] != pytest.approx(expected["logits"])  # the two modes tell apart on these images
    for flags, reweight in (([], "probs"), (["--reweight", "logits"], "logits")):
        assert bench_main(["sweep", "--checkpoint", str(run), "--dataset", "darkzurich-val", "--root", str(root),
                           "--scale", "1", "--device", "cpu", "--stds", "0.3", "--json", str(tmp_path / "r.json"),
                           *flags]) == 0
        result = json.loads((tmp_path / "r.json").read_text())
        assert result["reweight"] == reweight and result["miou"]["0.3"] == pytest.approx(expected[reweight])


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


def test_submission_labels_as_eval_scores_the_checkpoint(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    """A run validated with ``eval.reweight: probs`` and ``eval.weights_std: 0.5``; the submission multiplied the
    logits with std 0.16 whatever the run had validated. Its labels are now the ones ``predict`` gives with the
    run's re-weighting, and differ from the old ones on these images."""
    import io
    import zipfile

    from runtime.classes import class_weights
    from train.checkpoint import load_checkpoint, save_checkpoint
    from train.data import EvalTransform, SegmentationDataset, darkzurich_samples
    from train.data.synth import generate
    from train.evaluate import networks_of, predict

    tiny = load_checkpoint(tiny_graphs["checkpoint"])
    run = save_checkpoint(tmp_path / "run.pth", dict(tiny.models), arch="pspnet",
                          config={**tiny.config, "eval": {"weights_std": 0.5, "reweight": "probs"}})
    root = generate(tmp_path / "dz", "darkzurich", 4, (64, 128), seed=5)
    assert bench_main(["submission", "--checkpoint", str(run), "--root", str(root), "--scale", "1",
                       "--out", str(tmp_path / "sub.zip")]) == 0
    segmenter, light, _, _ = networks_of(tiny)
    sample = darkzurich_samples(root, "test")[0]
    image = SegmentationDataset([sample], EvalTransform(scale=1.0))[0]["image"][None]
    weights = {std: torch.tensor(class_weights(std), dtype=torch.float32) for std in (0.5, 0.16)}
    with torch.no_grad():
        expected, old = (predict(segmenter, light, image, (64, 128), weights[std], reweight)[0].numpy()
                         for std, reweight in ((0.5, "probs"), (0.16, "logits")))
    with zipfile.ZipFile(tmp_path / "sub.zip") as z:
        labels = np.asarray(Image.open(io.BytesIO(z.read(f"labelTrainIds/{sample.image.name}"))))
    assert (labels == expected).mean() > 0.999 and (labels != old).mean() > 0.001


def test_backbone_flop_count_agrees_with_a_hand_count() -> None:
    from benchmarks.backbones import count_flops

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),      # 1x3x32x32 -> 1x8x16x16: 8*16*16 outputs x 3*3*3 MACs
        torch.nn.ReLU(),                                    # elementwise: not counted
        torch.nn.ConvTranspose2d(8, 4, 2, stride=2),        # 16*16 inputs x 8*4*2*2 MACs -> 1x4x32x32
        torch.nn.BatchNorm2d(4),                            # elementwise: not counted
        torch.nn.Linear(32, 10),                            # 4*32 rows x 32*10 MACs
    ).eval().to("meta")
    macs = 8 * 16 * 16 * 27 + 16 * 16 * 8 * 4 * 4 + 4 * 32 * 32 * 10
    assert count_flops(net, torch.zeros(1, 3, 32, 32, device="meta")) == 2 * macs


@pytest.fixture(scope="module")
def night_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.data.synth import generate

    return generate(tmp_path_factory.mktemp("night") / "dz", "darkzurich", 4, (64, 128), seed=6)


def used_parameters(model: torch.nn.Module, size: tuple[int, int]) -> int:
    """Parameters that get a gradient from an inference forward pass: an autograd count, independent of the
    command's forward hooks (on the meta device: shapes only, no compute)."""
    model = model.eval().to("meta")
    params = list(model.parameters())
    grads = torch.autograd.grad(model(torch.zeros(1, 3, *size, device="meta")).sum(), params, allow_unused=True)
    return sum(p.numel() for p, g in zip(params, grads) if g is not None)


def test_backbone_latencies_are_fair_on_a_machine_that_slows_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two identical models on a machine that gets slower as the run goes on (a shared CI machine): timed in
    turns, their medians agree; timed one after the other, the second would come out slower."""
    import benchmarks.backbones as backbones

    clock = {"now": 0.0}
    monkeypatch.setattr(backbones.time, "perf_counter", lambda: clock["now"])

    class Model:
        def __init__(self) -> None:
            self.calls = 0

        def infer(self, frames: np.ndarray) -> None:
            self.calls += 1
            clock["now"] += 100.0 if self.calls == 1 else 1.0 + clock["now"] / 10

    latencies = backbones.onnxruntime_latencies({"a": Model(), "b": Model()}, np.zeros((8, 8, 3), np.uint8), 1, 30)
    # in turns but always a then b: b 9% slower; one block after the other: far more
    assert latencies["a"]["median"] == pytest.approx(latencies["b"]["median"], rel=0.03)


def test_backbones_rows_parameters_miou_and_ratios(tiny_graphs: dict[str, Path], night_val: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    from runtime.classes import class_weights
    from train.data import EvalTransform, build_dataset
    from train.evaluate import evaluate, load_networks
    from train.models import RelightNet, build_segmenter

    ckpt = tiny_graphs["checkpoint"]  # PSPNet-ResNet18 with a 16-channel relighting net
    assert bench_main(["backbones", "--input-size", "64x128", "--output-size", "32x64", "--iters", "1", "--warmup",
                       "1", "--threads", "1", "--checkpoint", f"resnet18={ckpt}", "--night-root", str(night_val),
                       "--device", "cpu", "--json", str(tmp_path / "b.json")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    rows = {row["backbone"]: row for row in result["rows"]}
    assert list(rows) == ["resnet18", "efficientnet_lite0", "resnet101"] and result["baseline"] == "resnet18"
    assert result["miou_device"] == "cpu"
    assert result["output_size"] == [32, 64] and result["threads"] == 1

    # parameters: counted independently, by autograd on networks built here and from the checkpoint's state dict
    light = torch.load(ckpt, weights_only=True)["models"]["light"]
    light_params = sum(v.numel() for k, v in light.items() if not k.endswith(("running_mean", "running_var",
                                                                              "num_batches_tracked")))
    assert rows["resnet18"]["params"]["relight"] == light_params == used_parameters(RelightNet(channels=16), (64, 64))
    for name, row in rows.items():
        assert row["params"]["segmenter"] == used_parameters(build_segmenter("pspnet", backbone=name), (64, 64))
        relight = light_params if name == "resnet18" else used_parameters(RelightNet(), (64, 64))
        assert row["params"]["relight"] == relight and row["params"]["total"] == row["params"]["segmenter"] + relight
        assert row["gflops"]["total"] == pytest.approx(row["gflops"]["segmenter"] + row["gflops"]["relight"])
    assert rows["resnet101"]["gflops"]["segmenter"] > rows["resnet18"]["gflops"]["segmenter"] > 0

    # latency for the timed backbones only; mIoU for the checkpoint only, as the evaluation code scores it
    assert rows["resnet18"]["latency_ms"]["median"] > 0 and rows["efficientnet_lite0"]["latency_ms"]["median"] > 0
    assert rows["resnet101"]["latency_ms"] is None
    seg, relight, _, _ = load_networks(str(ckpt))
    dataset = build_dataset("synthetic", night_val, transform=EvalTransform(scale=1.0))
    expected = evaluate(seg, relight, dataset, torch.from_numpy(class_weights(0.16)), progress=False).miou
    assert rows["resnet18"]["miou"] == pytest.approx(expected)
    assert rows["efficientnet_lite0"]["miou"] is None and rows["resnet101"]["miou"] is None

    # ratios: each figure over the baseline's, None where either is missing
    base = rows["resnet18"]
    figures = {"params": lambda r: r["params"]["total"], "gflops": lambda r: r["gflops"]["total"],
               "latency": lambda r: r["latency_ms"] and r["latency_ms"]["median"], "miou": lambda r: r["miou"]}
    for row in rows.values():
        for key, figure in figures.items():
            if figure(row) is None:
                assert row["ratios"][key] is None
            else:
                assert row["ratios"][key] == pytest.approx(figure(row) / figure(base))
    out = capsys.readouterr().out
    assert set(rows) <= {line.split()[0] for line in out.splitlines() if line.strip()}  # a table row each
    # the checkpoint's 16-channel relighting net beside the others' default: said, since the totals count it
    default_light = used_parameters(RelightNet(), (64, 64))
    assert f"note: the relighting nets differ (resnet18 {light_params / 1e6:.2f}M, efficientnet_lite0 " \
           f"{default_light / 1e6:.2f}M" in out
    assert "FLOPs = 2 x multiply-accumulates" in out


@pytest.mark.parametrize("flags, message", [
    (["--backbones", "resnet18,vgg16", "--size-only", ""], "unknown backbone 'vgg16'"),
    (["--baseline", "resnet50"], "--baseline resnet50: not one of --backbones"),
    (["--size-only", "resnet50"], "--size-only resnet50: not one of --backbones"),
    (["--checkpoint", "resnet18"], "expected BACKBONE=PATH"),
    (["--checkpoint", "resnet18=r18.pth"], "--checkpoint and --night-root go together"),
    (["--checkpoint", "efficientnet_lite0={ckpt}", "--night-root", "{night}"],
     "holds a pspnet network on resnet18; expected a pspnet on efficientnet_lite0"),
    (["--backbones", "resnet18,vgg16", "--checkpoint", "vgg16={ckpt}", "--night-root", "{night}"],
     "--checkpoint vgg16={ckpt}: unknown backbone 'vgg16'"),  # named before the file is read
    (["--input-size", "66x130"], "divisible by 4"),
])
def test_backbones_bad_flags_are_one_line_errors(flags: list[str], message: str, tiny_graphs: dict[str, Path],
                                                 night_val: Path, capsys: pytest.CaptureFixture) -> None:
    paths = {"ckpt": tiny_graphs["checkpoint"], "night": night_val}
    flags, message = [f.format(**paths) for f in flags], message.format(**paths)
    try:
        code = bench_main(["backbones", *flags])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("dannet-bench backbones: error:")


def test_demo_trains_side_by_side_until_the_steps_or_the_same_minutes(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's fairness and reproducibility rest on this: each run stops at its steps (the same figures on any
    machine fast enough), and runs that reach the minutes first stop at the first step that ends past them (the
    checkpoint's own clock), whatever their speed; the summary reports the steps taken; a demo-output/ from other
    settings is started over."""
    from benchmarks import demo
    from train.checkpoint import load_checkpoint
    from train.data.synth import generate

    monkeypatch.setattr(demo, "OUT", tmp_path / "demo-output")
    data = tmp_path / "data"
    generate(data / "cityscapes", "cityscapes", 4, (64, 128), seed=0)
    generate(data / "darkzurich", "darkzurich", 4, (64, 128), seed=0)
    small = ["--set", "model.backbone=resnet18", "--set", "data.source.crop=[48, 48]", "--set", "data.target.crop=56",
             "--set", "data.target.resize_to=48", "--set", "data.workers=0", "--set", "run.log_every=1"]
    common = [*demo.training_args(data), *small]
    demo.start_over_if_settings_changed()
    minutes = 0.1
    demo.train_side_by_side({"source_only": ["pretrain", *common, "--set", "pretrain.iterations=100000"],
                             "dannet": ["adapt", *common, "--set", "optim.iterations=100000"],
                             "pretrain": ["pretrain", *common, "--set", "pretrain.iterations=2"]}, minutes)
    fast, slow, capped = (load_checkpoint(demo.OUT / name / "final.pth")
                          for name in ("source_only", "dannet", "pretrain"))
    for name, run in (("source_only", fast), ("dannet", slow)):
        trained_s = run.extra["trained_s"]
        assert trained_s >= 60 * minutes
        if run.iteration > 1:  # (a fresh run trains one step, however long) the step before the last ended in time
            last = last_step_s(demo.OUT / name)
            assert trained_s - last < 60 * minutes + 0.5, (name, trained_s, last)
    assert fast.iteration > slow.iteration > 0  # a DANNet step trains three images and two discriminators
    # the capped run stopped at its 2 steps, not its minutes: the same job alongside it, without a step budget,
    # had the time for more (its own clock is no proof on a loaded machine, where 2 steps can outlast the minutes)
    assert capped.iteration == 2 < fast.iteration
    steps = demo.steps_trained()
    assert steps == {"pretrain_from_imagenet": 2, "dannet": slow.iteration, "source_only": fast.iteration}
    assert f"2 / {slow.iteration} / {fast.iteration} steps" in demo.steps_short_of_budget(steps)
    assert demo.steps_short_of_budget({"pretrain_from_imagenet": demo.PRETRAIN_STEPS, "dannet": demo.DANNET_STEPS,
                                       "source_only": demo.SOURCE_ONLY_STEPS}) is None

    for setting, changed in (("ADAPT_MIN", demo.ADAPT_MIN + 1), ("DANNET_STEPS", demo.DANNET_STEPS + 1)):
        (demo.OUT / "pretrain").mkdir(exist_ok=True)  # a run of the recorded settings survives; others remove it
        demo.start_over_if_settings_changed()
        assert (demo.OUT / "pretrain").is_dir()
        monkeypatch.setattr(demo, setting, changed)
        demo.start_over_if_settings_changed()
        assert not (demo.OUT / "pretrain").exists(), setting


def test_demo_runs_get_their_steps_minutes_and_starting_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What each demo run resolves to through ``dannet-train``'s own parser and config: the pre-training from ImageNet
    with its steps and minutes; DANNet and source-only from the day model with their own steps and learning rate
    (``train_side_by_side`` adds their minutes), and in every other setting alike."""
    from benchmarks import demo
    from train.cli import build_parser
    from train.config import load_config

    monkeypatch.setattr(demo, "OUT", tmp_path / "demo-output")
    pretrain, side_by_side = demo.training_runs(tmp_path / "data")
    resolved = {}
    for name, argv in {"pretrain": pretrain, **side_by_side}.items():
        args = build_parser().parse_args([*argv, "--out", str(tmp_path / name)])
        resolved[name] = (args.command, args.init, load_config(args.config, args.set))
    day_model = str(demo.OUT / "pretrain" / "final.pth")
    (job, init, config), steps = resolved["pretrain"], demo.PRETRAIN_STEPS
    assert (job, init, config["pretrain"]["iterations"]) == ("pretrain", ["imagenet"], steps)
    assert (config["run"]["time_limit_min"], config["pretrain"]["lr"]) == (demo.PRETRAIN_MIN, demo.PRETRAIN_LR)
    job, init, config = resolved["dannet"]
    assert (job, init, config["optim"]["iterations"], config["optim"]["lr"]) == ("adapt", [day_model],
                                                                               demo.DANNET_STEPS, demo.ADAPT_LR)
    job, init, config = resolved["source_only"]
    assert (job, init, config["pretrain"]["iterations"], config["pretrain"]["lr"]) == ("pretrain", [day_model],
                                                                                     demo.SOURCE_ONLY_STEPS,
                                                                                     demo.ADAPT_LR)
    assert resolved["pretrain"][2]["optim"]["batch_size"] == config["optim"]["batch_size"] == demo.LABELLED_BATCH
    dannet, source_only = resolved["dannet"][2], resolved["source_only"][2]
    for section in ("model", "data"):  # the same networks and data: only the training differs
        assert dannet[section] == source_only[section], section
    assert dannet["run"]["time_limit_min"] is None and source_only["run"]["time_limit_min"] is None


def test_demo_explains_itself_and_refuses_options_before_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` says what the demo does instead of starting minutes of training; an option it does not have is a
    one-line error, and neither touches demo-output/."""
    from benchmarks import demo

    monkeypatch.setattr(demo, "OUT", tmp_path / "demo-output")
    with pytest.raises(SystemExit) as help_exit:
        demo.main(["--help"])
    assert help_exit.value.code == 0 and "DANNet adaptation" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        demo.main(["--minutes", "3"])
    err = capsys.readouterr().err.strip()
    assert bad.value.code == 2 and len(err.splitlines()) == 1 and "unrecognized arguments: --minutes 3" in err
    assert not demo.OUT.exists()


@pytest.fixture(scope="module")
def unweighted(tiny_graphs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported again without class weights: a second model whose labels differ."""
    from export import ExportSpec, to_onnx

    return to_onnx(tiny_graphs["checkpoint"], tmp_path_factory.mktemp("unweighted") / "std0.onnx",
                   ExportSpec(input_size=(64, 128), output_size=(96, 160), weights_std=0.0), say=lambda s: None)


def onnx_labels(path: Path, image: Path) -> np.ndarray:
    """Labels of a generated 96x160 image as a camera frame gets them: resized to the 64x128 input, bilinear."""
    import onnxruntime as ort

    frame = np.asarray(Image.open(image).convert("RGB").resize((128, 64), Image.BILINEAR))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["labels"], {"frame": frame[None]})[0][0]


def test_miou_shows_several_models_side_by_side(tiny_graphs: dict[str, Path], unweighted: Path,
                                                tmp_path: Path) -> None:
    from train.data.synth import generate
    from train.metrics import ConfusionMeter

    root = generate(tmp_path / "dz", "darkzurich", 4, (96, 160), seed=2)
    models = [tiny_graphs["portable"], unweighted]
    assert bench_main(["miou", "--model", str(models[0]), "--model", str(models[1]), "--dataset", "darkzurich-val",
                       "--root", str(root), "--compare-model", str(unweighted), "--json",
                       str(tmp_path / "m.json")]) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    rows = result["models"]
    assert [row["model"] for row in rows] == [str(m) for m in models]
    assert [row["precision"] for row in rows] == ["fp32", "fp32"]
    meters, same, total = [ConfusionMeter(), ConfusionMeter()], 0, 0
    for image in sorted((root / "rgb_anon" / "val" / "night").rglob("*_rgb_anon.png")):
        gt = root / "gt" / "val" / "night" / image.parent.name / image.name.replace("_rgb_anon", "_gt_labelTrainIds")
        preds = [onnx_labels(m, image) for m in models]
        for meter, pred in zip(meters, preds):
            meter.update(pred, np.asarray(Image.open(gt)))
        same, total = same + int((preds[0] == preds[1]).sum()), total + preds[0].size
    for row, meter in zip(rows, meters):
        assert row["miou"] == pytest.approx(meter.miou) and row["delta_miou"] == pytest.approx(meter.miou -
                                                                                                meters[0].miou)
    assert rows[0]["identical_pixels"] == 1.0 and rows[1]["identical_pixels"] == pytest.approx(same / total)
    assert same < total  # the two models differ: agreement measured something
    # --compare-model still works beside them: the same second model, the same numbers
    assert result["compare_miou"] == pytest.approx(meters[1].miou)
    assert result["identical_pixels"] == pytest.approx(same / total) and result["miou"] == pytest.approx(meters[0].miou)


def test_compare_re_weights_the_reference_as_the_model_does(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """A run of the paper preset validates with ``eval.reweight: probs``, and ``dannet-export`` now ships that by
    default: the reference loop multiplied the logits whatever the graph did, and reported the differences as
    the graph's. It follows the graph's ``dannet.reweight``, and its mIoU is that graph's."""
    from export import ExportSpec, to_onnx

    import benchmarks.reference_loop as reference_loop
    from benchmarks.compare import night_frames
    from train.evaluate import load_networks

    ckpt, _ = tiny
    probs = to_onnx(ckpt, tmp_path / "probs.onnx", ExportSpec(input_size=(64, 128), output_size=(96, 160),
                                                              weights_std=0.5, reweight="probs"), say=lambda s: None)
    assert bench_main(["compare", "--model", str(probs), "--checkpoint", str(ckpt), "--frames", "3", "--warmup", "0",
                       "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["identical_pixels"] >= 0.999
    # the two re-weightings label these frames differently: the check above could fail with the wrong one
    segmenter, relight, _, _ = load_networks(str(ckpt))
    from runtime.classes import class_weights

    frames = night_frames(3, (64, 128), (96, 160))
    differ = [reference_loop.reference_labels(segmenter, relight, frame, class_weights(0.5), (96, 160), None, mode)
              for frame in frames for mode in ("logits", "probs")]
    assert np.mean([(a != b).mean() for a, b in zip(differ[::2], differ[1::2])]) > 0.001


def test_compare_upsamples_the_reference_as_the_model_does(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """A graph exported with ``--half-pixel`` upsamples with align_corners=False; the reference loop aligned the
    corners whatever the graph did. It follows the graph's ``dannet.align_corners`` (and the runtime's ModelInfo
    reads it); an old graph without it is refused with one line rather than compared wrongly."""
    import onnx

    from export import ExportSpec, to_onnx
    from export.onnx_export import read_metadata

    import benchmarks.reference_loop as reference_loop
    from benchmarks.compare import night_frames
    from runtime.segmenter import Segmenter
    from train.evaluate import load_networks

    ckpt, _ = tiny
    half = to_onnx(ckpt, tmp_path / "half.onnx", ExportSpec(input_size=(64, 128), output_size=(96, 160),
                                                            align_corners=False), say=lambda s: None)
    assert Segmenter(half).info.align_corners is False
    assert bench_main(["compare", "--model", str(half), "--checkpoint", str(ckpt), "--frames", "3", "--warmup", "0",
                       "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["identical_pixels"] >= 0.999
    # the two upsamplings label these frames differently: the check above could fail with the wrong one
    segmenter, relight, _, _ = load_networks(str(ckpt))
    weights = np.asarray(json.loads(read_metadata(half)["dannet.weights"]), np.float32)
    frames = night_frames(3, (64, 128), (96, 160))
    differ = [reference_loop.reference_labels(segmenter, relight, frame, weights, (96, 160), None, "logits", aligned)
              for frame in frames for aligned in (True, False)]
    assert np.mean([(a != b).mean() for a, b in zip(differ[::2], differ[1::2])]) > 0.001
    # a graph from before dannet.align_corners was recorded
    old = onnx.load(half)
    kept = [entry for entry in old.metadata_props if entry.key != "dannet.align_corners"]
    del old.metadata_props[:]
    old.metadata_props.extend(kept)
    onnx.save(old, tmp_path / "old.onnx")
    assert Segmenter(tmp_path / "old.onnx").info.align_corners is None
    assert bench_main(["compare", "--model", str(tmp_path / "old.onnx"), "--checkpoint", str(ckpt), "--frames", "1",
                       "--warmup", "0"]) == 2


def test_compare_times_several_exports_in_one_run(tiny_graphs: dict[str, Path], unweighted: Path, night_val: Path,
                                                  tmp_path: Path) -> None:
    """The unweighted graph is compared with a weighted reference loop: its labels must be seen to differ."""
    ckpt, portable = tiny_graphs["checkpoint"], tiny_graphs["portable"]
    assert bench_main(["compare", "--model", str(portable), "--also-model", str(unweighted), "--checkpoint", str(ckpt),
                       "--frames", "2", "--warmup", "0", "--night-root", str(night_val), "--json",
                       str(tmp_path / "c.json")]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    rows = result["models"]
    assert [row["model"] for row in rows] == [str(portable), str(unweighted)]
    for row in rows:
        assert row["speedup_p50"] == pytest.approx(result["reference"]["p50_ms"] / row["p50_ms"], rel=1e-6)
    assert rows[0]["identical_to_reference"] >= 0.999 and rows[0]["identical_to_first"] == 1.0
    assert rows[1]["identical_to_reference"] == pytest.approx(rows[1]["identical_to_first"], abs=1e-3)
    assert rows[1]["identical_to_reference"] < 0.999
    # night mIoU of every path; the reference loop and the fp32 graph compute the same network
    assert result["night_miou"]["reference"] == pytest.approx(rows[0]["night_miou"], abs=5e-3)
    assert rows[1]["night_miou"] != pytest.approx(rows[0]["night_miou"], abs=1e-9)

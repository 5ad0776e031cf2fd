"""``dannet-export int8``: the Q/DQ graph ONNX Runtime runs and TensorRT's builder code takes, and the accuracy gate.

The gate is tested on a dataset whose ground truth *is* the FP32 graph's labels (computed here with ONNX
Runtime directly): FP32 mIoU is then exactly 100, and INT8 loses mIoU exactly where its labels differ, so a
gate of 0 points must refuse a model whose INT8 labels differ from FP32 anywhere.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from PIL import Image
from tensorrt_standin import StandIn

from export import ExportSpec, build_engine, read_metadata, to_onnx
from export.cli import main as export_main
from export.engine import EngineError
from export.onnx_export import ExportError
from export.quantize import fp32_nodes, night_sets
from runtime import backends
from runtime.cpu_int8 import int8_weights_saturate
from runtime.engine_sidecar import Sidecar, sidecar_path
from runtime.segmenter import Segmenter
from train.metrics import ConfusionMeter

SIZE = (64, 128)  # network input = label map: no resizing anywhere between an image and its labels


def run_onnx(path: Path, frame: np.ndarray,
             level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
             qdq_fusion: bool = True) -> np.ndarray:
    """``path``'s labels of ``frame`` from ONNX Runtime itself; ``level`` ORT_DISABLE_ALL runs every Q/DQ pair as
    the reference operators (the arithmetic the graph means, on any CPU), the default fuses them into integer
    convolutions where it can, unless ``qdq_fusion`` is False (ONNX Runtime's own session option)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    if not qdq_fusion:
        options.add_session_config_entry(backends.NO_QDQ_FUSION, "1")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["labels"], {"frame": frame[None]})[0][0]


def val_pairs(root: Path) -> list[tuple[Path, Path]]:
    images = sorted((root / "rgb_anon" / "val" / "night").rglob("*_rgb_anon.png"))
    return [(p, root / "gt" / "val" / "night" / p.parent.name / p.name.replace("_rgb_anon", "_gt_labelTrainIds"))
            for p in images]


def relabel(root: Path, graph: Path, dataset: str = "synthetic") -> Path:
    """``root``'s labelled evaluation images get ``graph``'s own FP32 labels as ground truth (FP32 mIoU 100: a gate
    that can fail, so that a model is written only where INT8 loses little)."""
    from train.data import dataset_samples

    for sample in dataset_samples(dataset, root):
        Image.fromarray(run_onnx(graph, np.asarray(Image.open(sample.image).convert("RGB")))).save(sample.label)
    return root


def relabelled_copy(root: Path, graph: Path, folder: Path) -> Path:
    import shutil

    return relabel(Path(shutil.copytree(root, folder / "dz")), graph)


@pytest.fixture(scope="module")
def fp32_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small PSPNet-ResNet18 + relighting net whose batch norms have non-trivial statistics, as a trained net's
    do: folded into the convs they give every conv a bias (a fresh net's fold to none)."""
    import torch

    from train.checkpoint import save_checkpoint
    from train.models import RelightNet, build_segmenter

    torch.manual_seed(0)
    nets = {"segmenter": build_segmenter("pspnet", backbone="resnet18"), "light": RelightNet(channels=16)}
    for net in nets.values():
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.1, 0.1)
        net.eval()
    folder = tmp_path_factory.mktemp("fp32")
    checkpoint = save_checkpoint(folder / "net.pth", nets, arch="pspnet", config={"model": {"backbone": "resnet18"}})
    return to_onnx(checkpoint, folder / "fp32.onnx", ExportSpec(input_size=SIZE, output_size=SIZE), say=lambda s: None)


@pytest.fixture(scope="module")
def night(fp32_graph: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated night images (4 unlabelled training images for calibration, 2 labelled val images), the val
    ground truth replaced by the FP32 graph's own labels."""
    from train.data.synth import generate

    return relabel(generate(tmp_path_factory.mktemp("night") / "dz", "darkzurich", 4, SIZE, seed=8), fp32_graph)


def int8_args(graph: Path, root: Path, out: Path, max_drop: str) -> list[str]:
    return ["int8", "--onnx", str(graph), "--dataset", "synthetic", "--root", str(root), "--calibration-images", "3",
            "--max-miou-drop", max_drop, "--out", str(out)]


@pytest.fixture(scope="module")
def int8_graph(fp32_graph: Path, night: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "int8.onnx"
    assert export_main(int8_args(fp32_graph, night, out, "50")) == 0
    return out


def test_a_passing_gate_writes_a_symmetric_qdq_model_that_onnx_runtime_runs(fp32_graph: Path, night: Path,
                                                                            int8_graph: Path) -> None:
    model = onnx.load(str(int8_graph))
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    qdq = [node for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert qdq and sum(node.op_type == "DequantizeLinear" for node in qdq) > len(convs)  # activations and weights
    biases = [conv.input[2] for conv in convs if len(conv.input) > 2]
    assert len(biases) > len(convs) / 2  # fp32 initializers: TensorRT has no int32 DequantizeLinear
    assert all(bias in constants and constants[bias].dtype == np.float32 for bias in biases)
    for node in qdq:  # TensorRT's scheme: signed int8, zero point 0, constant scales
        assert constants[node.input[2]].dtype == np.int8 and not constants[node.input[2]].any(), node.name
        assert node.input[1] in constants
    conv_weights = [node for node in qdq if node.output[0] in {conv.input[1] for conv in convs}]
    assert conv_weights and all(constants[node.input[1]].size == constants[node.input[0]].shape[0] > 1
                                for node in conv_weights)  # one scale per output channel
    tail = [node for node in graph.node if node.name.startswith("tail_")]
    tail_tensors = {name for node in tail for name in [*node.input, *node.output]}
    assert tail and not tail_tensors & {name for node in qdq for name in [*node.input, *node.output]}  # tail in fp32

    # ONNX Runtime runs it; the recorded mIoUs are what an independent scoring of its labels gives (the integer
    # convolutions where this CPU computes them without saturating, else the Q/DQ pairs in fp32, as the gate ran it)
    gate = json.loads(read_metadata(int8_graph)["dannet.accuracy_gate"])
    assert gate["qdq_in_fp32"] == int8_weights_saturate()
    meters = [ConfusionMeter(), ConfusionMeter()]
    differ = 0
    for image, label in val_pairs(night):
        frame, truth = np.asarray(Image.open(image).convert("RGB")), np.asarray(Image.open(label))
        fp32, int8 = run_onnx(fp32_graph, frame), run_onnx(int8_graph, frame, qdq_fusion=not gate["qdq_in_fp32"])
        assert int8.dtype == np.uint8 and int8.shape == SIZE
        meters[0].update(fp32, truth)
        meters[1].update(int8, truth)
        differ += int((fp32 != int8).sum())
    metadata, source = read_metadata(int8_graph), read_metadata(fp32_graph)
    assert {k: v for k, v in metadata.items() if k in source and k != "dannet.precision"} == \
        {k: v for k, v in source.items() if k != "dannet.precision"}  # every key the runtime reads is kept
    assert metadata["dannet.precision"] == "int8" and Segmenter(int8_graph).info.precision == "int8"
    assert gate["fp32_miou"] == pytest.approx(100 * meters[0].miou) == pytest.approx(100.0)
    assert gate["int8_miou"] == pytest.approx(100 * meters[1].miou)
    assert gate["drop_points"] == pytest.approx(gate["fp32_miou"] - gate["int8_miou"]) and gate["images"] == 2
    quantization = json.loads(metadata["dannet.quantization"])
    assert quantization["calibration"]["method"] == "minmax" and quantization["calibration"]["images"] == 3
    kept = set(quantization["fp32_nodes"])
    assert kept >= {node.name for node in tail}
    dequantized = {node.output[0]: node.input[0] for node in qdq if node.op_type == "DequantizeLinear"}
    for conv in convs:  # int8 weights exactly where the node was not kept in fp32
        weight = constants[dequantized.get(conv.input[1], conv.input[1])]
        assert (weight.dtype == np.float32) == (conv.name in kept), conv.name
    assert differ > 0, "INT8 labels equal FP32 everywhere: the refusal test below would test nothing"


def test_a_failing_gate_refuses_and_leaves_the_old_file(fp32_graph: Path, night: Path, int8_graph: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The same calibration as the passing run, whose INT8 labels differ from FP32 (asserted there): with the
    ground truth = FP32 labels, any difference is a drop above 0 points."""
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the model that was here before")
    assert export_main(int8_args(fp32_graph, night, out, "0")) == 1
    err = capsys.readouterr().err.strip()
    gate = json.loads(read_metadata(int8_graph)["dannet.accuracy_gate"])
    assert len(err.splitlines()) == 1 and f"INT8 night mIoU {gate['int8_miou']:.2f}" in err
    assert "below FP32 100.00" in err and "--max-miou-drop 0" in err and "not written" in err
    assert out.read_bytes() == b"the model that was here before" and sorted(tmp_path.iterdir()) == [out]


def test_a_gate_without_labelled_pixels_refuses_and_says_why(night: Path, fp32_graph: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    import shutil

    unlabelled = tmp_path / "dz"
    shutil.copytree(night, unlabelled)
    for _, label in val_pairs(unlabelled):
        Image.fromarray(np.full(SIZE, 255, np.uint8)).save(label)  # every pixel ignored
    assert export_main(int8_args(fp32_graph, unlabelled, tmp_path / "out.onnx", "100")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "have no labelled pixel" in err and "nan" not in err
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("ground_truth, max_drop", [("a class FP32 never predicts", "1"), ("FP32's own", "100")])
def test_a_gate_that_could_not_fail_refuses(ground_truth: str, max_drop: str, night: Path, fp32_graph: Path,
                                             tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """INT8 loses at most FP32's whole mIoU, so where that is not above --max-miou-drop every INT8 model would
    pass: FP32 scoring 0 (ground truth of a class it never predicts), or 100 under a drop of 100."""
    import shutil

    root = Path(shutil.copytree(night, tmp_path / "dz"))
    if ground_truth != "FP32's own":
        pairs = val_pairs(root)
        predicted = set(np.unique(np.concatenate([run_onnx(fp32_graph, np.asarray(Image.open(image).convert("RGB")))
                                                  for image, _ in pairs])).tolist())
        for _, label in pairs:
            Image.fromarray(np.full(SIZE, min(set(range(19)) - predicted), np.uint8)).save(label)
    assert export_main(int8_args(fp32_graph, root, tmp_path / "out.onnx", max_drop)) == 1
    err = capsys.readouterr().err.strip()
    fp32 = "0.00" if ground_truth != "FP32's own" else "100.00"
    assert len(err.splitlines()) == 1 and f"FP32 night mIoU {fp32} on the 2 synthetic evaluation images" in err
    assert f"is not above --max-miou-drop {max_drop}, so the gate could not refuse any INT8 model" in err
    assert not (tmp_path / "out.onnx").exists()


def test_calibration_and_evaluation_images_are_disjoint(night: Path) -> None:
    sets = night_sets("synthetic", night, 3, None)
    calibration, evaluation = {s.image for s in sets.calibration}, {s.image for s in sets.evaluation}
    assert len(calibration) == 3 and len(evaluation) == 2 and not calibration & evaluation
    assert all(path.parent.parent.name == "night" and path.parents[2].name == "train" for path in calibration)
    sets = night_sets("darkzurich-val", night, 2, 1)  # Dark Zurich's own layout: the same train split
    train = sorted((night / "rgb_anon" / "train" / "night").rglob("*_rgb_anon.png"))
    assert [s.image for s in sets.calibration] == [train[0], train[-1]] and len(sets.evaluation) == 1  # spread


def test_nightdriving_is_quantised_with_default_flags(fp32_graph: Path, tmp_path: Path) -> None:
    """Nighttime Driving has no unlabelled split: by default its labelled images are split in file order, the first
    half (rounded up) held out for the gate and calibration on the rest; with --eval-images M, the first M."""
    from train.data.synth import generate

    root = relabel(generate(tmp_path / "nd", "nightdriving", 20, SIZE, seed=3), fp32_graph, "nightdriving")
    files = sorted((root / "leftImg8bit" / "test" / "night").rglob("*_leftImg8bit.png"))
    assert len(files) == 5
    out = tmp_path / "int8.onnx"
    assert export_main(["int8", "--onnx", str(fp32_graph), "--dataset", "nightdriving", "--root", str(root),
                        "--max-miou-drop", "50", "--out", str(out)]) == 0
    metadata = read_metadata(out)
    assert json.loads(metadata["dannet.accuracy_gate"])["images"] == 3
    assert json.loads(metadata["dannet.quantization"])["calibration"]["images"] == 2
    sets = night_sets("nightdriving", root, 32, None)
    assert [s.image for s in sets.evaluation] == files[:3] and [s.image for s in sets.calibration] == files[3:]
    sets = night_sets("nightdriving", root, 32, 1)
    assert [s.image for s in sets.evaluation] == files[:1] and [s.image for s in sets.calibration] == files[1:]
    for image in files[1:]:
        image.unlink()
    with pytest.raises(ExportError, match="--dataset nightdriving: has 1 labelled image; .* need at least 2"):
        night_sets("nightdriving", root, 32, None)


@pytest.mark.parametrize("graph, message", [
    ("plugin", "precision fp32, plugin tail; expected the fp32 portable-tail graph"),
    ("int8", "is quantised already"),
    ("not-onnx", "not an ONNX graph"),
])
def test_only_the_fp32_portable_graph_is_quantised(graph: str, message: str, tiny_graphs: dict[str, Path],
                                                   int8_graph: Path, night: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    source = {"plugin": tiny_graphs["plugin"], "int8": int8_graph, "not-onnx": tiny_graphs["checkpoint"]}[graph]
    if graph == "int8":  # an int8 graph with its precision recorded as fp32 is still refused
        model = onnx.load(str(int8_graph))
        helper.set_model_props(model, {**read_metadata(int8_graph), "dannet.precision": "fp32"})
        source = tmp_path / "relabelled.onnx"
        onnx.save(model, str(source))
    assert export_main(int8_args(source, night, tmp_path / "out.onnx", "1")) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "out.onnx").exists()


def test_tensorrt_builder_code_takes_the_qdq_graph_and_records_int8(int8_graph: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.backends import TensorRTBackend

    standin = StandIn().install(monkeypatch)
    engine = build_engine(int8_graph, tmp_path / "int8.engine", say=lambda s: None)
    assert Sidecar.read(sidecar_path(engine)).precision == "int8" and not standin.log
    frame = np.random.default_rng(0).integers(0, 255, (1, *SIZE, 3), dtype=np.uint8)
    backend = TensorRTBackend(engine)
    labels = backend.infer(frame).labels
    assert backend.info.precision == "int8"
    assert np.array_equal(labels[0], run_onnx(int8_graph, frame[0]))


def test_tensorrt_builder_code_refuses_the_cpu_target_in_one_line(cpu_int8_graph: Path, tmp_path: Path) -> None:
    """uint8 activations with a zero point (``--target cpu``, ONNX Runtime's x86 scheme) are not TensorRT's:
    refused before minutes of building, naming a node and the flag that makes a graph TensorRT takes."""
    expected = r"TensorRT takes symmetric int8 Q/DQ only: \S+ \((Quantize|Dequantize)Linear\): not symmetric int8"
    with pytest.raises(EngineError, match=expected + r" \(zero point UINT8.*--target tensorrt") as error:
        build_engine(cpu_int8_graph, tmp_path / "cpu.engine", say=lambda s: None)
    assert len(str(error.value).splitlines()) == 1


@pytest.fixture(scope="module")
def cpu_int8_graph(fp32_graph: Path, night: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8_cpu") / "int8_cpu.onnx"
    assert export_main([*int8_args(fp32_graph, night, out, "50"), "--target", "cpu"]) == 0
    return out


def test_the_cpu_target_quantises_activations_to_uint8(cpu_int8_graph: Path, int8_graph: Path) -> None:
    def zero_point_types(path: Path) -> set[str]:
        model = onnx.load(str(path))
        constants = {init.name: init.data_type for init in model.graph.initializer}
        return {onnx.TensorProto.DataType.Name(constants[n.input[2]]) for n in model.graph.node
                if n.op_type == "QuantizeLinear"}

    targets = {path: json.loads(read_metadata(path)["dannet.quantization"])["target"]
               for path in (cpu_int8_graph, int8_graph)}
    assert targets == {cpu_int8_graph: "cpu", int8_graph: "tensorrt"}
    assert zero_point_types(cpu_int8_graph) == {"UINT8"} and zero_point_types(int8_graph) == {"INT8"}


def test_the_cpu_target_weights_fit_in_7_bits_and_the_tensorrt_target_uses_8(cpu_int8_graph: Path,
                                                                               int8_graph: Path) -> None:
    """``--target cpu``: every quantised weight within +-64, so that 2 x 255 x |w| fits the int16 sums of ONNX
    Runtime's x86 kernels without VNNI; ``--target tensorrt``: the full +-127 (TensorRT has no such sums)."""
    def largest_weight(path: Path) -> int:
        model = onnx.load(str(path))
        return max(int(np.abs(numpy_helper.to_array(init).astype(int)).max()) for init in model.graph.initializer
                   if init.data_type == onnx.TensorProto.INT8 and len(init.dims) == 4)

    assert 32 < largest_weight(cpu_int8_graph) <= 64 and largest_weight(int8_graph) == 127
    bits = {path: json.loads(read_metadata(path)["dannet.quantization"])["weight_bits"]
            for path in (cpu_int8_graph, int8_graph)}
    assert bits == {cpu_int8_graph: 7, int8_graph: 8}


@pytest.mark.parametrize("saturates", [True, False], ids=["x86-without-vnni", "vnni-or-arm"])
def test_the_runtime_runs_8_bit_weights_in_fp32_only_where_integer_kernels_saturate(
        saturates: bool, int8_graph: Path, cpu_int8_graph: Path, fp32_graph: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU whose integer kernels saturate, a ``tensorrt``-target graph (8-bit weights) runs with ONNX Runtime's
    Q/DQ fusion off (its session says so, and keeps the threads asked for) and says so in one line; a
    ``cpu``-target graph (7-bit) and the FP32 graph run as they are. Elsewhere nothing changes."""
    monkeypatch.setattr(backends, "int8_weights_saturate", lambda: saturates)
    notices: list[str] = []
    opened = {path: backends.OnnxRuntimeBackend(path, ["CPUExecutionProvider"], threads=1, say=notices.append)
              for path in (int8_graph, cpu_int8_graph, fp32_graph)}
    assert [opened[path].int8_in_fp32 for path in opened] == [saturates, False, False]
    for path, backend in opened.items():
        options = backend.session.get_session_options()
        try:
            fusion_off = options.get_session_config_entry(backends.NO_QDQ_FUSION) == "1"
        except RuntimeError:  # an option never set
            fusion_off = False
        assert fusion_off == backend.int8_in_fp32 and options.intra_op_num_threads == 1, path
    assert len(notices) == int(saturates)
    assert all(str(int8_graph) in notice and "VNNI" in notice for notice in notices)


@pytest.mark.parametrize("target", ["tensorrt", "cpu"], ids=["trt-target", "cpu-target"])
def test_the_runtimes_int8_labels_are_the_qdq_arithmetic_on_this_cpu(target: str, int8_graph: Path,
                                                                     cpu_int8_graph: Path, night: Path) -> None:
    """Whatever this CPU is, the runtime's INT8 labels are those of the Q/DQ graph's own arithmetic (ONNX Runtime's
    reference operators, no fusion) up to rounding: on an x86 CPU without VNNI, the tensorrt target's 8-bit
    weights in the integer kernels agreed on 9-10% of the pixels (measured), so this fails there without the fp32
    fallback. The cpu target's uint8 activations saturated less (94-95% with 8-bit weights on an earlier graph of
    this kind), so its 7-bit weights are held by the weight-range test above, not by this threshold."""
    graph = {"tensorrt": int8_graph, "cpu": cpu_int8_graph}[target]
    segmenter = Segmenter(graph, "onnxruntime", say=lambda notice: None)
    for image, _ in val_pairs(night):
        frame = np.asarray(Image.open(image).convert("RGB"))
        meant = run_onnx(graph, frame, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        assert (segmenter.process(frame) == meant).mean() > 0.9


def segmentation_only(folder: Path, arch: str = "pspnet", backbone: str = "resnet18", **model: int) -> Path:
    """The fp32 graph of an ``arch`` checkpoint without a relighting net (seed 0 weights)."""
    import torch

    from train.checkpoint import save_checkpoint
    from train.models import build_segmenter

    torch.manual_seed(0)
    segmenter = build_segmenter(arch, backbone=backbone, **model).eval()
    checkpoint = save_checkpoint(folder / "net.pth", {"segmenter": segmenter}, arch=arch,
                                 config={"model": {"backbone": backbone, **model}})
    return to_onnx(checkpoint, folder / "fp32.onnx", ExportSpec(input_size=SIZE, output_size=SIZE), say=lambda s: None)


@pytest.fixture(scope="module")
def segmentation_only_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return segmentation_only(tmp_path_factory.mktemp("segmentation_only"))


@pytest.mark.parametrize("group", ["relight", "relight-output"])
def test_keeping_a_relighting_net_the_graph_lacks_is_refused(group: str, segmentation_only_graph: Path, night: Path,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out.onnx"
    keep = ["--keep-fp32", f"classifier,{group}"]
    assert export_main([*int8_args(segmentation_only_graph, night, out, "100"), *keep]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--keep-fp32 {group}: the graph has no relighting net" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_the_default_keeps_only_what_the_graph_has(segmentation_only_graph: Path, int8_graph: Path, night: Path,
                                                  tmp_path: Path) -> None:
    """Without --keep-fp32: the relighting net's output stays FP32 where there is one; a segmentation-only graph
    is quantised with nothing but the tail kept, and its metadata says so."""
    out = tmp_path / "out.onnx"
    own_labels = relabelled_copy(night, segmentation_only_graph, tmp_path)
    assert export_main(int8_args(segmentation_only_graph, own_labels, out, "50")) == 0
    kept = {path: json.loads(read_metadata(path)["dannet.quantization"])["keep_fp32"] for path in (out, int8_graph)}
    assert kept == {out: [], int8_graph: ["relight-output"]}


@pytest.mark.parametrize("target", ["tensorrt", "cpu"], ids=["trt-target", "cpu-target"])  # "tensorrt" marks TRT tests
def test_onnx_runtime_runs_every_quantised_conv_as_an_integer_conv(target: str, int8_graph: Path,
                                                                  cpu_int8_graph: Path, tmp_path: Path) -> None:
    """ONNX Runtime's own optimiser is the judge: after it has fused the Q/DQ graph, the only convolutions left in
    floating point are those kept FP32 on purpose (the groups in the metadata, and the classifier, whose output the
    tail reads unquantised). A tensor read by two nodes (a residual block's input) used to leave its conv in fp32."""
    int8_graph = {"tensorrt": int8_graph, "cpu": cpu_int8_graph}[target]
    optimised = tmp_path / "optimised.onnx"
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimised)
    ort.InferenceSession(str(int8_graph), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(int8_graph))
    kept = set(json.loads(read_metadata(int8_graph)["dannet.quantization"])["fp32_nodes"])
    meant = [n for n in model.graph.node if n.op_type == "Conv" and (n.name in kept or "logits" in n.output)]
    ops = [n.op_type for n in onnx.load(str(optimised)).graph.node]
    assert ops.count("Conv") + ops.count("FusedConv") == len(meant) and ops.count("QLinearConv") >= 20


@pytest.fixture(scope="module")
def deeplab_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 graph of a DeepLab-v2 checkpoint: its logits are the sum (Add) of two ASPP branch convs."""
    return segmentation_only(tmp_path_factory.mktemp("deeplab"), "deeplab")


@pytest.fixture(scope="module")
def deeplab_night(night: Path, deeplab_graph: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return relabelled_copy(night, deeplab_graph, tmp_path_factory.mktemp("deeplab_night"))


@pytest.mark.parametrize("keep", [[], ["--keep-fp32", "classifier"]], ids=["default", "classifier"])
def test_deeplab_logits_reach_the_tail_unquantised(keep: list[str], deeplab_graph: Path, deeplab_night: Path,
                                                   tmp_path: Path) -> None:
    """DeepLab's logits are a sum of ASPP branches: no branch may be rounded to int8 on its way to the tail (the
    sum of int8-rounded branches makes the argmax ties the FP32 logits are kept for), and ``classifier`` keeps
    every branch conv FP32, not just the Add."""
    out = tmp_path / "int8.onnx"
    assert export_main([*int8_args(deeplab_graph, deeplab_night, out, "50"), *keep]) == 0
    graph = onnx.load(str(out)).graph
    producer = {name: node for node in graph.node for name in node.output}
    waiting, branches = ["logits"], []
    while waiting:  # back from the logits through the Adds: every input is a float tensor computed by a conv or Add
        node = producer[waiting.pop()]
        assert node.op_type in ("Add", "Conv"), f"{node.op_type} {node.name} on the way to the logits"
        if node.op_type == "Add":
            waiting += list(node.input)
        else:
            branches.append(node)
    assert len(branches) == 2
    if keep:
        kept = set(json.loads(read_metadata(out)["dannet.quantization"])["fp32_nodes"])
        assert {node.name for node in branches} <= kept
        dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
        assert not any(node.input[1] in dequantized for node in branches)  # fp32 weights


def test_logits_summed_from_a_tensor_no_node_computes_are_a_one_line_error() -> None:
    """A graph whose logits are an Add of graph inputs is no segmentation graph: an ExportError saying so, not a
    KeyError's traceback."""
    from onnx import TensorProto, helper

    from export.quantize import score_layers

    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 19, 4, 4]) for name in ("a", "b")]
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["logits"])], "g", inputs,
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 19, 4, 4])])
    with pytest.raises(ExportError, match="^the graph's logits are summed from '[ab]', which no node computes"):
        score_layers(graph)


def test_the_psp_bottleneck_is_the_one_kept(fp32_graph: Path) -> None:
    """``--keep-fp32 bottleneck`` on PSPNet names exactly one node: the 3x3 conv to 512 channels after the pyramid
    (the PSPNet paper's bottleneck), not the classifier or a backbone conv."""
    model = onnx.load(str(fp32_graph))
    weights = {init.name: init.dims for init in model.graph.initializer}
    tail = set(fp32_nodes(model, ()))
    kept = [node for node in model.graph.node if node.name in set(fp32_nodes(model, ("bottleneck",))) - tail]
    assert len(kept) == 1 and kept[0].op_type == "Conv"
    out_channels, _, kh, kw = weights[kept[0].input[1]]
    assert (out_channels, kh, kw) == (512, 3, 3)


@pytest.mark.parametrize("backbone, branches", [("resnet18", 2), ("resnet18", 1), ("efficientnet_lite0", 1)])
def test_keeping_a_bottleneck_deeplab_lacks_is_refused(backbone: str, branches: int, night: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """DeepLab's classifier (ASPP: one conv per branch, summed) reads the backbone: there is no bottleneck, with
    two branches or one, whose single conv looks like PSPNet's classifier but reads a residual block (ResNet) or
    a conv and its ReLU6 (Lite0's top conv)."""
    graph = segmentation_only(tmp_path, "deeplab", backbone, aspp_branches=branches)
    out = tmp_path / "out.onnx"
    assert export_main([*int8_args(graph, night, out, "50"), "--keep-fp32", "bottleneck"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--keep-fp32 bottleneck: the graph has no PSP bottleneck" in err
    assert len(err.splitlines()) == 1 and not out.exists()

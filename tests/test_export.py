"""Export: ONNX Runtime on the exported graphs against a plainly written PyTorch reference pipeline,
the plugin tail as an exact replacement of the portable one, fp16 structure, every architecture,
released-style files, dynamic shapes, the confidence output of both tails, and the engine cache logic
(which needs no TensorRT)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from confidence_checkpoint import unsure
from conftest import TINY_SIZES
from tensorrt_standin import onnx_problems

from export import ExportSpec, read_metadata, to_onnx
from export.cli import main as export_main
from export.engine import EngineError, Machine, Sidecar, decide, engine_problems, parse_shape, sidecar_path
from export.tails import append_plugin_tail
from runtime.classes import class_weights
from runtime.engine_sidecar import BuildOptions, sha256_of
from runtime.reweight_argmax import reweight_argmax_confidence
from runtime.segmenter import Segmenter
from train.checkpoint import save_checkpoint
from train.data.synth import generate
from train.models import RelightNet, build_segmenter

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random BN statistics so that eval-mode logits are far from degenerate."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return module.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "dannet.pth"
    return save_checkpoint(path, {"segmenter": randomised(build_segmenter("pspnet", backbone="resnet18"), 1),
                                  "light": randomised(RelightNet(channels=16), 2)}, arch="pspnet",
                           config={"model": {"backbone": "resnet18", "light_channels": 16}})


@pytest.fixture(scope="module")
def night_frames(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Generated 1080x1920 night images, resized to the 540x960 network input (as the reference does)."""
    root = generate(tmp_path_factory.mktemp("night"), "darkzurich", 1, (1080, 1920), seed=3)
    images = sorted((root / "rgb_anon" / "val").rglob("*.png"))
    return [np.asarray(Image.open(p).convert("RGB").resize((960, 540), Image.BILINEAR)) for p in images]


def reference_labels(checkpoint_path: Path, frame: np.ndarray, out_size: tuple[int, int], std: float = 0.16,
                     arch: str = "pspnet", light_path: Path | None = None) -> np.ndarray:
    """DANNet's inference written plainly: normalise, relight, segment, logits x w, upsample, argmax."""
    from train.evaluate import load_networks

    seg, light, _, _ = load_networks(str(checkpoint_path), str(light_path) if light_path else None, arch, "resnet18")
    x = torch.from_numpy(((frame / 255.0 - MEAN) / STD).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        if light is not None:
            x = x + light.residual(x)
        logits = seg(x) * torch.from_numpy(class_weights(std)).view(1, -1, 1, 1)
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=True).argmax(1)[0].numpy()


def run_onnx(path: Path, frame: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"frame": frame[None]})[0][0]


@pytest.fixture(scope="module")
def portable(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return to_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "portable.onnx", ExportSpec(), say=lambda s: None)


def test_portable_graph_matches_the_pytorch_reference_at_1080p(portable: Path, checkpoint: Path,
                                                               night_frames: list[np.ndarray]) -> None:
    model = onnx.load(str(portable))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 540, 960, 3]
    assert {n.op_type for n in model.graph.node} >= {"Resize", "ArgMax", "MatMul"}
    assert not any(n.op_type in ("Gather", "GatherND") for n in model.graph.node)  # PSP pooling as matrices
    assert not onnx_problems(model)  # TensorRT 10.3's ONNX parser takes all of it (tests/tensorrt_standin.py)
    for frame in night_frames:
        labels = run_onnx(portable, frame)
        assert labels.shape == (1080, 1920) and labels.dtype == np.uint8
        expected = reference_labels(checkpoint, frame, (1080, 1920))
        assert len(np.unique(expected)) >= 5  # the logits are not degenerate
        assert (labels == expected).mean() >= 0.999
    meta = read_metadata(portable)
    assert json.loads(meta["dannet.class_names"])[0] == "road" and meta["dannet.weights_std"] == "0.16"
    assert meta["dannet.checkpoint_sha256"] == sha256_of(checkpoint) and meta["dannet.tail"] == "portable"
    np.testing.assert_allclose(json.loads(meta["dannet.weights"]), class_weights(0.16), rtol=1e-6)


def test_plugin_graph_is_the_portable_graph_with_the_tail_replaced(portable: Path, checkpoint: Path,
                                                                  night_frames: list[np.ndarray],
                                                                  tmp_path: Path) -> None:
    plugin = to_onnx(checkpoint, tmp_path / "plugin.onnx", ExportSpec(tail="plugin"), say=lambda s: None)
    model = onnx.load(str(plugin))
    node = model.graph.node[-1]
    assert node.op_type == "ReweightArgmax" and node.domain == "dannet"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    np.testing.assert_allclose(attrs["weights"], class_weights(0.16), rtol=1e-6)
    assert (attrs["out_height"], attrs["out_width"], attrs["align_corners"], attrs["pack4"], attrs["mode"]) == \
           (1080, 1920, 1, 0, 0)
    assert attrs["plugin_namespace"] == b"dannet" and attrs["plugin_version"] == b"1"
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.INT32
    # put the standard ops back in place of the node, by hand, and ORT must agree exactly with the portable graph
    logits = node.input[0]
    model.graph.node.remove(node)
    w = numpy_helper.from_array(np.asarray(attrs["weights"], np.float32).reshape(1, -1, 1, 1), "w")
    sizes = numpy_helper.from_array(np.array([1, 19, 1080, 1920], np.int64), "sizes")
    model.graph.initializer.extend([w, sizes])
    model.graph.node.extend([
        helper.make_node("Mul", [logits, "w"], ["scored"]),
        helper.make_node("Resize", ["scored", "", "", "sizes"], ["up"], mode="linear",
                         coordinate_transformation_mode="align_corners"),
        helper.make_node("ArgMax", ["up"], ["idx"], axis=1, keepdims=0),
        helper.make_node("Cast", ["idx"], ["labels_u8"], to=TensorProto.UINT8)])
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("labels_u8", TensorProto.UINT8, [1, 1080, 1920]))
    del model.opset_import[1:]
    onnx.save(model, tmp_path / "replaced.onnx")
    frame = night_frames[0]
    np.testing.assert_array_equal(run_onnx(tmp_path / "replaced.onnx", frame), run_onnx(portable, frame))


def test_fp16_graph_structure_and_run(checkpoint: Path, night_frames: list[np.ndarray], tmp_path: Path) -> None:
    path = to_onnx(checkpoint, tmp_path / "fp16.onnx", ExportSpec(precision="fp16", input_size=(256, 512),
                                                                   output_size=(512, 1024)), say=lambda s: None)
    model = onnx.load(str(path))
    fp32_islands = {"tail_weights"}  # the tail compares re-weighted scores in fp32 (see export/tails.py)
    floats = [(i.name, i.data_type) for i in model.graph.initializer
              if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert floats and all(t == TensorProto.FLOAT16 for n, t in floats if n not in fp32_islands and "mean" not in n
                          and "std" not in n), [n for n, t in floats if t == TensorProto.FLOAT]
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    assert conv_weights and all(dict(floats)[w] == TensorProto.FLOAT16 for w in conv_weights if w in dict(floats))
    cast_fp32 = [n for n in model.graph.node if n.op_type == "Cast" and n.name == "tail_cast_fp32"]
    assert len(cast_fp32) == 1
    assert not onnx_problems(model)
    frame = np.asarray(Image.fromarray(night_frames[0]).resize((512, 256), Image.BILINEAR))
    try:
        labels = run_onnx(path, frame)
    except Exception as e:  # ORT's CPU provider lacks fp16 kernels for some ops on some CPUs
        warnings.warn(f"fp16 graph not run in ONNX Runtime on this CPU: {str(e).splitlines()[0][:200]}")
        return
    expected = reference_labels(checkpoint, frame, (512, 1024))
    assert (labels == expected).mean() >= 0.98  # fp16 network vs fp32 reference


@pytest.mark.parametrize("arch", ["deeplab", "refinenet"])
def test_other_architectures_from_released_style_files(arch: str, tmp_path: Path) -> None:
    """Plain state dicts with DataParallel's prefix, segmentation and relighting in separate files."""
    torch.manual_seed(1)
    seg = randomised(build_segmenter(arch, backbone="resnet18"), 3)
    light = randomised(RelightNet(), 4)
    torch.save({f"module.{k}": v for k, v in seg.state_dict().items()}, tmp_path / f"dannet_{arch}.pth")
    torch.save(light.state_dict(), tmp_path / f"dannet_{arch}_light.pth")
    path = to_onnx(tmp_path / f"dannet_{arch}.pth", tmp_path / f"{arch}.onnx",
                   ExportSpec(input_size=(96, 160), output_size=(192, 320)), light=tmp_path / f"dannet_{arch}_light.pth",
                   backbone="resnet18", say=lambda s: None)
    frame = np.random.default_rng(0).integers(0, 256, (96, 160, 3), dtype=np.uint8)
    expected = reference_labels(tmp_path / f"dannet_{arch}.pth", frame, (192, 320), arch=arch,
                                light_path=tmp_path / f"dannet_{arch}_light.pth")
    assert (run_onnx(path, frame) == expected).mean() >= 0.999


@pytest.fixture(scope="module")
def dynamic_graph(tiny_dynamic: Path) -> Path:
    """The tiny checkpoint's dynamic export (conftest: exported once per run, a dynamic export takes 30 s)."""
    return tiny_dynamic


def test_dynamic_shapes(dynamic_graph: Path, tiny_graphs: dict[str, Path]) -> None:
    dims = onnx.load(str(dynamic_graph)).graph.input[0].type.tensor_type.shape.dim
    assert not any(d.HasField("dim_value") for d in list(dims)[:3])
    rng = np.random.default_rng(1)
    for h, w in ((128, 256), (64, 128), (96, 160)):  # above, at and beside the size it was traced at
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = reference_labels(tiny_graphs["checkpoint"], frame, TINY_SIZES["output_size"])
        assert len(np.unique(expected)) > 3  # labels that vary across the frame, or agreeing would prove little
        assert (run_onnx(dynamic_graph, frame) == expected).mean() >= 0.999


def test_segmenter_gives_a_dynamic_graph_any_frame_at_the_nearest_size_it_takes(dynamic_graph: Path) -> None:
    """H and W rounded to multiples of 4 (halfway up) and brought within 32..4096 (the top, which costs seconds
    here, is checked on an engine profile's in test_tensorrt_backend.py): the labels are the graph's own for the
    frame resized (bilinear) to that size, at the graph's output size, which does not follow the input."""
    segmenter = Segmenter(dynamic_graph)
    graph = ort.InferenceSession(str(dynamic_graph), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    for frame_size, taken in (((66, 130), (68, 132)), ((63, 129), (64, 128)), ((20, 40), (32, 40))):
        frame = rng.integers(0, 256, (*frame_size, 3), dtype=np.uint8)
        resized = np.asarray(Image.fromarray(frame).resize(taken[::-1], Image.BILINEAR))
        labels = segmenter.process(frame)
        assert labels.shape == TINY_SIZES["output_size"], frame_size
        expected = graph.run(None, {"frame": resized[None]})[0][0]
        np.testing.assert_array_equal(labels, expected, err_msg=str(frame_size))
    with pytest.raises(ValueError, match=r"expected an H x W x 3 uint8 RGB frame, got \(0, 130, 3\)"):
        segmenter.process(np.zeros((0, 130, 3), np.uint8))


# --- the confidence output --------------------------------------------------------------------------

SMALL = dict(input_size=(64, 128), output_size=(96, 150))


@pytest.fixture(scope="module")
def unsure_checkpoint(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unsure(checkpoint, tmp_path_factory.mktemp("unsure") / "unsure.pth", weight_std=0.005)  # unsurer than most


@pytest.fixture(scope="module")
def confidence_graphs(unsure_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small portable export without confidence, and with it in both re-weighting modes."""
    root = tmp_path_factory.mktemp("confidence")
    return {name: to_onnx(unsure_checkpoint, root / f"{name}.onnx", ExportSpec(**SMALL, **spec), say=lambda s: None)
            for name, spec in (("labels", {}), ("logits", dict(confidence=True)),
                               ("probs", dict(confidence=True, reweight="probs")))}


def reference_confidence(checkpoint_path: Path, frame: np.ndarray, out_size: tuple[int, int],
                         reweight: str) -> np.ndarray:
    """The winning class's probability written plainly, as levels: torch's softmax of the upsampled logits x w
    (``logits``), or the paper's re-weighted probabilities p w / sum(p w) with p = softmax of the upsampled
    logits (``probs``)."""
    from train.evaluate import load_networks

    seg, light, _, _ = load_networks(str(checkpoint_path), None, "pspnet", "resnet18")
    x = torch.from_numpy(((frame / 255.0 - MEAN) / STD).astype(np.float32)).permute(2, 0, 1)[None]
    w = torch.from_numpy(class_weights(0.16)).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = seg(x + light.residual(x))
        if reweight == "logits":
            p = F.softmax(F.interpolate(logits * w, size=out_size, mode="bilinear", align_corners=True), dim=1)
        else:
            p = F.softmax(F.interpolate(logits, size=out_size, mode="bilinear", align_corners=True), dim=1) * w
            p = p / p.sum(dim=1, keepdim=True)
    return np.floor(p.amax(dim=1)[0].numpy().astype(np.float64) * 255 + 0.5)


def with_logits_output(path: Path) -> ort.InferenceSession:
    """The graph with its ``logits`` (the tail's input) as an extra output, in ONNX Runtime."""
    model = onnx.load(str(path))
    model.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, None))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("reweight", ["logits", "probs"])
def test_portable_confidence_is_the_definition_within_one_level(confidence_graphs: dict[str, Path],
                                                                 unsure_checkpoint: Path,
                                                                 night_frames: list[np.ndarray], reweight: str) -> None:
    frame = np.asarray(Image.fromarray(night_frames[0]).resize((128, 64), Image.BILINEAR))
    labels, confidence, logits = with_logits_output(confidence_graphs[reweight]).run(
        ["labels", "confidence", "logits"], {"frame": frame[None]})
    assert confidence.dtype == np.uint8 and confidence.shape == labels.shape == (1, 96, 150)
    # the op's NumPy definition on the graph's own logits: the same scores, so levels within one
    twin_labels, twin_confidence = reweight_argmax_confidence(logits, class_weights(0.16), (96, 150), True,
                                                              int(reweight == "probs"))
    assert np.abs(confidence.astype(int) - twin_confidence).max() <= 1
    assert (confidence == twin_confidence).mean() >= 0.99  # rounded as the spec says, not merely close
    assert (labels == twin_labels).mean() >= 0.999  # ONNX Runtime's Resize vs the kernel's arithmetic
    # torch from the checkpoint, written plainly (and for probs, the paper's formula, not softmax(z + log w))
    expected = reference_confidence(unsure_checkpoint, frame, (96, 150), reweight)
    assert np.abs(confidence[0] - expected).max() <= 1 and (confidence[0] == expected).mean() >= 0.99
    assert (expected < 250).mean() > 0.3 and np.ptp(expected) > 100  # spread levels: few saturated pixels
    output = json.loads(read_metadata(confidence_graphs[reweight])["dannet.output"])
    assert output["confidence"] == {"name": "confidence", "format": "uint8"}


def test_confidence_leaves_the_labels_and_the_graph_without_it_as_they_were(confidence_graphs: dict[str, Path],
                                                                           night_frames: list[np.ndarray]) -> None:
    plain, with_confidence = (onnx.load(str(confidence_graphs[k])) for k in ("labels", "logits"))
    assert [o.name for o in plain.graph.output] == ["labels"]
    assert [o.name for o in with_confidence.graph.output] == ["labels", "confidence"]
    assert "confidence" not in json.loads(read_metadata(confidence_graphs["labels"])["dannet.output"])
    # the labels path is node for node the graph without confidence; the confidence nodes only add to it
    producers = {out: n for n in with_confidence.graph.node for out in n.output}
    needed, stack = set(), ["labels"]
    while stack:
        node = producers.get(stack.pop())
        if node is not None and node.name not in needed:
            needed.add(node.name)
            stack.extend(node.input)
    labels_path = [n for n in with_confidence.graph.node if n.name in needed]
    assert [n.SerializeToString() for n in labels_path] == [n.SerializeToString() for n in plain.graph.node]
    assert not onnx_problems(with_confidence)  # TensorRT 10.3's parser takes the confidence ops too
    frame = np.asarray(Image.fromarray(night_frames[0]).resize((128, 64), Image.BILINEAR))
    np.testing.assert_array_equal(run_onnx(confidence_graphs["logits"], frame), run_onnx(confidence_graphs["labels"],
                                                                                          frame))


@pytest.mark.parametrize("pack4", [False, True])
def test_plugin_node_with_confidence_has_the_attribute_and_a_second_output(pack4: bool) -> None:
    def logits_graph() -> onnx.ModelProto:
        logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 19, 12, 20])
        nodes = [helper.make_node("Identity", ["x"], ["logits"])]
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 19, 12, 20])
        return helper.make_model(helper.make_graph(nodes, "body", [x], [logits]))

    weights = class_weights(0.16)
    plain = append_plugin_tail(logits_graph(), weights, (96, 150), pack4=pack4).graph
    model = append_plugin_tail(logits_graph(), weights, (96, 150), pack4=pack4, confidence=True).graph
    node = model.node[-1]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert list(node.output) == ["labels", "confidence"] and attrs["confidence"] == 1 and attrs["pack4"] == pack4
    width = 38 if pack4 else 150  # ceil(150 / 4) int32 elements of four levels each
    for output in model.output:
        assert output.type.tensor_type.elem_type == TensorProto.INT32
        assert [d.dim_value for d in output.type.tensor_type.shape.dim] == [1, 96, width]
    assert [o.name for o in model.output] == ["labels", "confidence"]
    # without confidence: the node plugins built before the attribute existed know, unchanged
    assert list(plain.node[-1].output) == ["labels"] and "confidence" not in {a.name for a in plain.node[-1].attribute}
    assert [a.name for a in plain.node[-1].attribute] == [a.name for a in node.attribute if a.name != "confidence"]


def test_export_cli_passes_confidence_to_the_spec() -> None:
    from export.cli import build_parser, spec_of

    for command in ("onnx", "pt2"):
        args = build_parser().parse_args([command, "--checkpoint", "c.pth", "--out", "m", "--confidence"])
        assert spec_of(args).confidence
        assert not spec_of(build_parser().parse_args([command, "--checkpoint", "c.pth", "--out", "m"])).confidence


def reweight_op(path: Path) -> str:
    return next(n.op_type for n in onnx.load(str(path)).graph.node if n.name == "tail_reweight")


def test_export_ships_the_test_time_reweighting_its_run_validated_with(checkpoint: Path, tmp_path: Path) -> None:
    """A run configured with ``eval.weights_std: 0.3`` and ``eval.reweight: probs`` validated (and `eval` scores)
    with them; ``dannet-export`` shipped the flags' defaults (0.16, logits) instead, a model that is not the one
    validated. The flags still win; a released file, which records nothing, keeps the reference's."""
    from train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    recorded = save_checkpoint(tmp_path / "run.pth", dict(ckpt.models), arch="pspnet",
                               config={**ckpt.config, "eval": {"weights_std": 0.3, "reweight": "probs"}})
    size = ["--input-size", "64x128", "--output-size", "64x128"]
    assert export_main(["onnx", "--checkpoint", str(recorded), "--out", str(tmp_path / "run.onnx"), *size]) == 0
    meta = read_metadata(tmp_path / "run.onnx")
    assert (meta["dannet.weights_std"], meta["dannet.reweight"]) == ("0.3", "probs")
    np.testing.assert_allclose(json.loads(meta["dannet.weights"]), class_weights(0.3), rtol=1e-6)
    assert reweight_op(tmp_path / "run.onnx") == "Add"  # probs: log weights added to the logits
    flags = ["--weights-std", "0.1", "--reweight", "logits"]
    assert export_main(["onnx", "--checkpoint", str(recorded), "--out", str(tmp_path / "flags.onnx"), *size,
                        *flags]) == 0
    meta = read_metadata(tmp_path / "flags.onnx")
    assert (meta["dannet.weights_std"], meta["dannet.reweight"]) == ("0.1", "logits")
    assert reweight_op(tmp_path / "flags.onnx") == "Mul"
    released = tmp_path / "released.pth"
    torch.save(ckpt.models["segmenter"], released)
    assert export_main(["onnx", "--checkpoint", str(released), "--backbone", "resnet18", "--out",
                        str(tmp_path / "released.onnx"), *size]) == 0
    meta = read_metadata(tmp_path / "released.onnx")
    assert (meta["dannet.weights_std"], meta["dannet.reweight"]) == ("0.16", "logits")


# --- engine cache logic (no TensorRT needed) ------------------------------------------------------

def test_engine_cache_decisions(portable: Path, tmp_path: Path) -> None:
    here = Machine("10.3.0", "Orin", "87")
    engine = tmp_path / "m.engine"
    assert engine_problems(engine, portable, here) == ["no engine file"]
    assert decide(engine, portable, here).action == "build"
    engine.write_bytes(b"engine")
    assert "no sidecar" in engine_problems(engine, portable, here)[0]
    Sidecar(onnx_sha256=sha256_of(portable), tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="87",
            precision="fp16", output_size=[1080, 1920], weights=[1.0] * 19).write(sidecar_path(engine))
    assert engine_problems(engine, portable, here) == [] and decide(engine, portable, here).action == "reuse"
    assert decide(engine, portable, here, rebuild="always").action == "build"
    other = Machine("11.1.0", "NVIDIA H100", "90")
    problems = engine_problems(engine, portable, other)
    assert len(problems) == 2 and "TensorRT 10.3.0" in problems[0] and "Orin (sm_87)" in problems[1]
    assert decide(engine, portable, other).action == "build"
    with pytest.raises(EngineError, match="refusing a foreign engine"):
        decide(engine, portable, other, rebuild="never")
    Sidecar(onnx_sha256=sha256_of(portable), tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="87",
            precision="fp16").write(sidecar_path(engine))  # from before sidecars recorded the label map size
    assert engine_problems(engine, portable, here) == [
        "its sidecar does not record the label map size (made by an older dannet-export)",
        "its sidecar does not record the class weights (made by an older dannet-export)"]
    assert decide(engine, portable, here).action == "build"
    Sidecar(onnx_sha256=sha256_of(portable), tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="87",
            precision="fp16", output_size=[1080, 1920]).write(sidecar_path(engine))  # the weights came later
    assert engine_problems(engine, portable, here) == [
        "its sidecar does not record the class weights (made by an older dannet-export)"]
    changed = tmp_path / "changed.onnx"
    changed.write_bytes(portable.read_bytes() + b"\0")
    assert "another ONNX file" in engine_problems(engine, changed, here)[0]
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EngineError, match="unreadable engine sidecar"):
        engine_problems(engine, portable, here)


def test_an_engine_built_with_other_options_is_rebuilt_and_says_why(portable: Path, tmp_path: Path) -> None:
    """Every option that changes the engine is compared with the sidecar's: profile shapes, DLA core, workspace.
    An old sidecar (without them) counts as built with none, so its engine is rebuilt where one is asked for; one
    without the profile of a dynamic engine says so."""
    here, engine = Machine("10.3.0", "Orin", "87"), tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    profile = {"min": [1, 32, 64, 3], "opt": [1, 64, 128, 3], "max": [1, 64, 128, 3]}
    Sidecar(onnx_sha256=sha256_of(portable), tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="87",
            precision="fp32", output_size=[96, 150], weights=[1.0] * 19, profile=profile, dla_core=0,
            workspace_gb=2.0).write(sidecar_path(engine))
    same = BuildOptions({"min": (1, 32, 64, 3), "opt": (1, 64, 128, 3), "max": (1, 64, 128, 3)}, 0, 2)
    assert engine_problems(engine, portable, here, same) == []
    assert decide(engine, portable, here, options=same).action == "reuse"
    asked = BuildOptions({**same.shapes, "max": (4, 128, 256, 3)}, None, 1.5)
    decision = decide(engine, portable, here, options=asked)
    assert decision.action == "build" and decision.reasons == (
        "built with --max-shape 1x64x128x3, asked for --max-shape 4x128x256x3",
        "built with --dla-core 0, asked for no --dla-core",
        "built with --workspace-gb 2, asked for --workspace-gb 1.5")
    with pytest.raises(EngineError, match="refusing a foreign engine: built with --max-shape 1x64x128x3"):
        decide(engine, portable, here, rebuild="never", options=asked)
    Sidecar(onnx_sha256=sha256_of(portable), tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="87",
            precision="fp32", output_size=[96, 150], weights=[1.0] * 19).write(sidecar_path(engine))  # no options
    assert engine_problems(engine, portable, here, BuildOptions(dla_core=1)) == [
        "built with no --dla-core, asked for --dla-core 1"]
    assert engine_problems(engine, portable, here) == []
    # a dynamic engine was built with a profile its old sidecar does not record: say that, not "no --min-shape"
    assert engine_problems(engine, portable, here, same) == [
        "its sidecar does not record the optimisation profile (made by an older dannet-export)",
        "built with no --dla-core, asked for --dla-core 0", "built with no --workspace-gb, asked for --workspace-gb 2"]


def test_engine_profile_errors_are_one_line_before_tensorrt_is_needed(portable: Path, dynamic_graph: Path,
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """--min/--opt/--max-shape for a static graph, or a profile a dynamic graph cannot take: exit 2, one line."""
    def engine_command(graph: Path, low: str, opt: str, high: str) -> tuple[int, str]:
        code = export_main(["engine", "--onnx", str(graph), "--out", str(tmp_path / "m.engine"), "--min-shape", low,
                            "--opt-shape", opt, "--max-shape", high])
        return code, capsys.readouterr().err

    code, err = engine_command(portable, "1x540x960x3", "1x540x960x3", "1x540x960x3")
    assert code == 2 and err.count("\n") == 1, err
    assert err == (f"dannet-export engine: error: --min-shape, --opt-shape and --max-shape: {portable} is a static "
                   "graph (its frames are 540x960); they are for graphs exported with --dynamic\n")
    for shapes, message in ((("1x64x128x3", "1x32x64x3", "1x96x160x3"), "each dimension needs min <= opt <= max"),
                            (("1x30x64x3", "1x64x128x3", "1x96x160x3"),
                             "--min-shape 1x30x64x3: .* takes frames with H and W multiples of 4 from 32x32 to "
                             r"4096x4096 \(e.g. 1x32x64x3\)"),
                            (("1x32x64x3", "1x64x128x3", "1x96x162x3"),
                             r"--max-shape 1x96x162x3: .*\(e.g. 1x96x164x3\)")):
        code, err = engine_command(dynamic_graph, *shapes)
        assert code == 2 and err.count("\n") == 1 and re.search(message, err), err


def test_engine_argument_checks(portable: Path, tmp_path: Path) -> None:
    assert parse_shape("1x540x960x3") == (1, 540, 960, 3)
    for bad in ("1x540x960", "axbxcx3", "1x540x960x4"):
        with pytest.raises(EngineError, match="NxHxWx3"):
            parse_shape(bad)
    run = [sys.executable, "-m", "export.cli"]
    out = subprocess.run([*run, "engine", "--onnx", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "e")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no such file" in out.stderr and out.stderr.count("\n") == 1
    out = subprocess.run([*run, "engine", "--onnx", str(portable), "--out", str(tmp_path / "e"), "--min-shape",
                          "1x64x64x3"], capture_output=True, text=True)
    assert out.returncode == 2 and "go together" in out.stderr
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        out = subprocess.run([*run, "engine", "--onnx", str(portable), "--out", str(tmp_path / "e")],
                             capture_output=True, text=True)
        assert out.returncode == 2 and "TensorRT is not installed" in out.stderr


def test_export_argument_errors(checkpoint: Path, tmp_path: Path) -> None:
    run = [sys.executable, "-m", "export.cli", "onnx", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x")]
    out = subprocess.run([*run, "--input-size", "130x256"], capture_output=True, text=True)
    assert out.returncode == 2 and "divisible by 4" in out.stderr and out.stderr.count("\n") == 1
    out = subprocess.run([*run, "--pack4"], capture_output=True, text=True)
    assert out.returncode == 2 and "--pack4 needs --tail plugin" in out.stderr
    out = subprocess.run([sys.executable, "-m", "export.cli", "onnx", "--checkpoint", str(tmp_path / "no.pth"),
                          "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert out.returncode == 2 and "no such checkpoint" in out.stderr


@pytest.mark.tensorrt
def test_build_a_real_engine(portable: Path, tmp_path: Path) -> None:
    from export import build_engine

    engine = build_engine(portable, tmp_path / "m.engine", say=lambda s: None)
    assert engine.stat().st_size > 0 and sidecar_path(engine).is_file()
    assert build_engine(portable, engine, rebuild="never", say=lambda s: None) == engine  # reused


def test_the_runtime_brings_dynamic_frames_to_sizes_the_relighting_net_takes() -> None:
    """runtime/ cannot import the networks, so its size rule is its own number: it must be the net's (or a multiple),
    or a dynamic graph would get frames it changes the size of."""
    from runtime.backends import DYNAMIC_EXPORT_SIZES
    from train.models.relight import SIDE_MULTIPLE

    assert DYNAMIC_EXPORT_SIZES.multiple % SIDE_MULTIPLE == 0
    assert all(side % SIDE_MULTIPLE == 0 for side in (*DYNAMIC_EXPORT_SIZES.low, *DYNAMIC_EXPORT_SIZES.high))

"""The TensorRT path against TensorRT's contract, on CPU, through the strict stand-in (tests/tensorrt_standin.py).

Every engine variant the exporter makes (portable and plugin tails, int32 and pack4 labels, static and dynamic
shapes, with and without the confidence output) is built by ``export.build_engine`` and run by
``TensorRTBackend``; the labels must be ONNX Runtime's, the confidence the op's definition on the graph's logits.
Also: input shapes that change on a dynamic engine, the frame sizes ``Segmenter`` gives one, the build options
that make a cached engine stale, a second backend in one process, a machine without a CUDA driver, and every
exported graph against what TensorRT 10.3's ONNX parser accepts.
"""
from __future__ import annotations

import ctypes
import functools
import gc
import json
import weakref
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from tensorrt_standin import GPU_NAME, PLAN_MAGIC, VERSION, ContractViolation, StandIn, cudaError_t, onnx_problems

from export import ExportSpec, build_engine, read_metadata, to_onnx
from export.onnx_export import onnx_weights
from export.tails import append_plugin_tail, append_portable_tail
from runtime.backends import BackendError, SizeRange, TensorRTBackend, uint8_from_engine
from runtime.errors import DannetError
from runtime.engine_sidecar import EngineError, Sidecar, current_machine, sidecar_path
from runtime.segmenter import Segmenter

SPEC = dict(input_size=(64, 128), output_size=(96, 150))  # 150 columns: pack4 rows end in a half-used int32
TAILS = ("portable", "int32", "pack4")  # the label formats: uint8, plugin int32, plugin pack4
PROFILE = {"min": (1, 32, 64, 3), "opt": (1, 64, 128, 3), "max": (2, 96, 160, 3)}
A, B = (1, 64, 128, 3), (2, 96, 160, 3)  # two frame shapes within PROFILE; B is the larger

Variant = Callable[..., Path]


def with_tail(exported: Path, out: Path, tail: str, confidence: bool = False) -> Path:
    """A plugin-tail export with the ``tail`` flavour instead (and the confidence output where asked), appended as
    ``to_onnx`` appends it: the body up to ``logits`` is the same in every flavour (export/tails.py), so only the
    tail and the output formats change."""
    model = onnx.load(str(exported))
    metadata = {p.key: p.value for p in model.metadata_props}
    plugin = model.graph.node[-1]
    assert plugin.op_type == "ReweightArgmax" and metadata["dannet.tail"] == "plugin"
    model.graph.node.remove(plugin)
    logits_type = TensorProto.FLOAT16 if metadata["dannet.precision"] == "fp16" else TensorProto.FLOAT
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(plugin.input[0], logits_type, None))
    weights, size = onnx_weights(metadata), tuple(json.loads(metadata["dannet.output"])["size"])
    align_corners, mode = metadata["dannet.align_corners"] == "1", int(metadata["dannet.reweight"] == "probs")
    if tail == "portable":
        append_portable_tail(model, weights, size, align_corners, mode, confidence)
        kept = [o for o in model.opset_import if o.domain != "dannet"]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    else:
        append_plugin_tail(model, weights, size, align_corners, mode, pack4=tail == "pack4", confidence=confidence)
    output = json.loads(metadata["dannet.output"])
    output["format"] = "uint8" if tail == "portable" else tail
    if confidence:
        output["confidence"] = {"name": "confidence", "format": output["format"]}
    helper.set_model_props(model, {**metadata, "dannet.tail": "portable" if tail == "portable" else "plugin",
                                   "dannet.output": json.dumps(output)})
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Variant:
    """``variant(precision, dynamic, tail, confidence=False)``: the tiny model exported so, on first use:
    ``to_onnx`` with the plugin tail (int32), the other tails and the confidence variants on the same body (one
    dynamo export per body: the slow step)."""
    from train.checkpoint import save_checkpoint
    from train.models import RelightNet, build_segmenter

    root = tmp_path_factory.mktemp("variants")
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    networks = {"segmenter": build_segmenter("pspnet", backbone="resnet18"), "light": RelightNet(channels=16)}
    for module in networks["segmenter"].modules():  # varied BN statistics: labels that vary across the image
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(0.5 * torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(0.1 + torch.rand(module.num_features, generator=generator))
    # a classifier of a trained net's scale: at the init's N(0, 0.01) every score is near-tied, and fp32
    # rounding (ONNX Runtime vs the stand-in's kernels) decides the argmax
    torch.nn.init.normal_(networks["segmenter"].head[1].weight, 0.0, 0.3, generator=generator)
    checkpoint = save_checkpoint(root / "tiny.pth", {k: v.eval() for k, v in networks.items()}, arch="pspnet",
                                 config={"model": {"backbone": "resnet18", "light_channels": 16}})
    exported: dict[tuple[str, bool, str, bool], Path] = {}

    def get(precision: str, dynamic: bool, tail: str, confidence: bool = False) -> Path:
        key = (precision, dynamic, tail, confidence)
        name = f"{precision}_{'dynamic' if dynamic else 'static'}_{tail}{'_confidence' if confidence else ''}"
        path = root / f"{name}.onnx"
        if key not in exported:
            exported[key] = to_onnx(checkpoint, path, ExportSpec(**SPEC, precision=precision, dynamic=dynamic,
                                                                 tail="plugin"), say=lambda s: None) \
                if (tail, confidence) == ("int32", False) else \
                with_tail(get(precision, dynamic, "int32"), path, tail, confidence)
        return exported[key]
    return get


@pytest.fixture(scope="module")
def plugin_lib(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file for the stand-in registry to "load" (any file registers the ReweightArgmax creator there)."""
    path = tmp_path_factory.mktemp("plugins") / "libdannet_trt_plugins.so"
    path.write_bytes(b"stand-in")
    return str(path)


@pytest.fixture(scope="module")
def engine(variant: Variant, plugin_lib: str) -> Callable[..., Path]:
    """``engine(dynamic, tail, confidence=False)``: the fp32 variant built by ``export.build_engine`` (with the
    profile PROFILE where dynamic), on first use, under the stand-in the calling test installed."""
    built: dict[tuple[bool, str, bool], Path] = {}

    def get(dynamic: bool, tail: str, confidence: bool = False) -> Path:
        if (dynamic, tail, confidence) not in built:
            onnx_path = variant("fp32", dynamic, tail, confidence)
            built[dynamic, tail, confidence] = build_engine(onnx_path, onnx_path.with_suffix(".engine"),
                                                            plugin_lib=plugin_lib, shapes=PROFILE if dynamic else None,
                                                            say=lambda s: None)
        return built[dynamic, tail, confidence]
    return get


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """A fresh stand-in "process" (TensorRT, CUDA), installed for this test; what TensorRT would have logged as
    errors must be expected by the test (it empties ``standin.log``)."""
    fresh = StandIn().install(monkeypatch)
    yield fresh
    assert not fresh.log, f"TensorRT would have logged errors: {fresh.log}"


def frames_of(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@functools.lru_cache(maxsize=4)
def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_runtime(path: Path, frames: np.ndarray) -> np.ndarray:
    return session(path).run(None, {"frame": frames})[0]


# --- every engine variant through TensorRTBackend --------------------------------------------------------------

Engine = Callable[..., Path]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_every_engine_variant_gives_onnx_runtime_labels(variant: Variant, engine: Engine, standin: StandIn,
                                                       plugin_lib: str, dynamic: bool) -> None:
    frames = frames_of(B if dynamic else A, seed=1)
    reference = onnx_runtime(variant("fp32", dynamic, "portable"), frames)
    assert len(np.unique(reference)) >= 5  # varied labels: a misread layout cannot pass by chance
    labels, agreement, sizes = {}, {}, {}
    for tail in TAILS:
        backend = TensorRTBackend(engine(dynamic, tail), plugin_lib)
        result = backend.infer(frames)
        assert result.confidence is None and not backend.info.confidence
        labels[tail] = result.labels
        same_shape = labels[tail].dtype == np.uint8 and labels[tail].shape == reference.shape
        agreement[tail] = float((labels[tail] == reference).mean()) if same_shape else labels[tail].shape
        sizes[tail] = (backend.info.input_size, backend.info.output_size)
    # portable: the same graph, run by the "engine"; plugin: the kernel's arithmetic vs ONNX Runtime's Resize
    assert agreement["portable"] == 1 and agreement["int32"] >= 0.999 and agreement["pack4"] >= 0.999, agreement
    np.testing.assert_array_equal(labels["int32"], labels["pack4"])  # the plugin, two label formats
    assert set(sizes.values()) == {(None if dynamic else (64, 128), (96, 150))}, sizes


def body(exported: Path) -> ort.InferenceSession:
    """A plugin-tail export cut before its ReweightArgmax node, in ONNX Runtime: frames -> the tail's logits."""
    model = onnx.load(str(exported))
    plugin = model.graph.node[-1]
    assert plugin.op_type == "ReweightArgmax"
    model.graph.node.remove(plugin)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(plugin.input[0], TensorProto.FLOAT, None))
    kept = [o for o in model.opset_import if o.domain != "dannet"]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


SOFTENING = 2.0 ** -14


def softened(exported: Path, out: Path) -> Path:
    """A plugin-tail export with its logits scaled by 2^-14 before the tail. This random network's logits are
    ~1e5, where every softmax saturates (all levels 255); a power of two scales each product and sum of the tail
    exactly, so the labels stay those of the export."""
    model = onnx.load(str(exported))
    producer = next(n for n in model.graph.node if "logits" in n.output)
    producer.output[list(producer.output).index("logits")] = "raw_logits"
    model.graph.initializer.append(numpy_helper.from_array(np.array(SOFTENING, np.float32), "softening"))
    position = list(model.graph.node).index(producer) + 1
    model.graph.node.insert(position, helper.make_node("Mul", ["raw_logits", "softening"], ["logits"]))
    onnx.save(model, str(out))
    return out


def confidence_by_definition(logits: np.ndarray, weights: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """The op's confidence levels written from its spec (plugins/reweightArgmax/README.md; mode 0, align_corners=1),
    in float64 and without the kernel's one-pass running sum: s_c = bilinear(z_c) * w_c, p = 1 / sum_c exp(s_c -
    max s), level floor(255 p + 0.5)."""
    z = logits.astype(np.float64)

    def taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """align_corners: output i samples input i (size_in - 1) / (size_out - 1) between two neighbours."""
        x = np.arange(size_out) * (size_in - 1) / (size_out - 1)
        low = np.floor(x).astype(int)
        return low, np.minimum(low + 1, size_in - 1), x - low

    top, bottom, dy = taps(z.shape[2], out_size[0])
    left, right, dx = taps(z.shape[3], out_size[1])
    rows = z[:, :, top] * (1 - dy)[:, None] + z[:, :, bottom] * dy[:, None]
    scores = (rows[..., left] * (1 - dx) + rows[..., right] * dx) * weights.reshape(1, -1, 1, 1)
    p = 1 / np.exp(scores - scores.max(axis=1, keepdims=True)).sum(axis=1)
    return np.floor(255 * p + 0.5).astype(np.uint8)


@pytest.mark.parametrize("dynamic, tails", [(False, TAILS), (True, ("pack4",))], ids=["static", "dynamic"])
def test_every_confidence_engine_gives_the_definition_on_the_graph_logits(variant: Variant, engine: Engine,
                                                                          standin: StandIn, plugin_lib: str,
                                                                          dynamic: bool, tails: tuple[str, ...],
                                                                          tmp_path: Path) -> None:
    """Each tail with --confidence: a second output read like the labels (uint8, int32, pack4), within one level
    of the op's definition (written here, not the stand-in's kernel twin) on the logits of the same graph; the
    labels as without it. Dynamic shapes: the format whose shape differs most from the labels' map (pack4),
    batch 2."""
    frames = frames_of(B if dynamic else A, seed=6)
    exported = softened(variant("fp32", dynamic, "int32"), tmp_path / "softened.onnx")
    logits, metadata = body(exported).run(None, {"frame": frames})[0], read_metadata(exported)
    assert (metadata["dannet.reweight"], metadata["dannet.align_corners"]) == ("logits", "1")  # the definition's
    expected = confidence_by_definition(logits, onnx_weights(metadata), (96, 150))
    assert (expected < 250).mean() > 0.3 and np.ptp(expected) > 100  # spread levels: a misread layout fails
    confidence = {}
    for tail in tails:
        graph = with_tail(exported, tmp_path / f"{tail}.onnx", tail, confidence=True)
        path = build_engine(graph, graph.with_suffix(".engine"), plugin_lib=plugin_lib,
                            shapes=PROFILE if dynamic else None, say=lambda s: None)
        backend = TensorRTBackend(path, plugin_lib)
        result = backend.infer(frames)
        assert backend.info.confidence and result.confidence.dtype == np.uint8
        assert result.confidence.shape == expected.shape, (tail, result.confidence.shape)
        assert np.abs(result.confidence.astype(int) - expected).max() <= 1, tail
        assert (result.confidence == expected).mean() >= 0.99, tail  # rounded as the spec says
        np.testing.assert_array_equal(result.labels, TensorRTBackend(engine(dynamic, tail), plugin_lib).infer(
            frames).labels)
        assert [o["name"] for o in Sidecar.read(sidecar_path(path)).outputs] == ["labels", "confidence"]
        confidence[tail] = result.confidence
    if len(tails) == len(TAILS):
        np.testing.assert_array_equal(confidence["int32"], confidence["pack4"])  # the plugin, two formats
    # one buffer pair per tensor: frame, labels and confidence for each engine with it, frame and labels without
    assert len(standin.memory.live["device"]) == len(standin.memory.live["host"]) == (3 + 2) * len(tails)


def test_an_engine_with_other_outputs_is_refused(variant: Variant, standin: StandIn, tmp_path: Path) -> None:
    model = onnx.load(str(variant("fp32", False, "portable", True)))
    for tensor in (*model.graph.output, *model.graph.node):
        names = tensor.output if isinstance(tensor, onnx.NodeProto) else None
        if names is not None and "confidence" in names:
            names[list(names).index("confidence")] = "certainty"
        elif names is None and tensor.name == "confidence":
            tensor.name = "certainty"
    onnx.save(model, str(tmp_path / "other.onnx"))
    path = build_engine(tmp_path / "other.onnx", tmp_path / "other.engine", say=lambda s: None)
    with pytest.raises(BackendError, match=r"expected the tensors frame \(input\), labels and optionally confidence "
                                           r"\(outputs\), the engine has certainty, frame, labels"):
        TensorRTBackend(path)


def test_labels_are_read_in_each_format_the_engine_declares() -> None:
    labels = np.random.default_rng(0).integers(0, 19, (2, 3, 7), dtype=np.uint8)
    packed = np.zeros((2, 3, 2), np.uint32)  # pack4 by hand: label of column c in byte c % 4 of element c // 4
    for column in range(7):
        packed[..., column // 4] |= labels[..., column].astype(np.uint32) << np.uint32(8 * (column % 4))
    for values in (labels, labels.astype(np.int32), packed.view(np.int32)):
        decoded = uint8_from_engine(values, 7)
        np.testing.assert_array_equal(decoded, labels)
        assert decoded.dtype == np.uint8 and not np.shares_memory(decoded, values)  # the host buffer is reused
    with pytest.raises(BackendError, match="int32 with 5 columns: not labels 7 wide"):
        uint8_from_engine(np.zeros((1, 3, 5), np.int32), 7)
    with pytest.raises(BackendError, match="the engine's confidence are int32 with 5 columns"):
        uint8_from_engine(np.zeros((1, 3, 5), np.int32), 7, "confidence")


def test_dynamic_engine_takes_shapes_a_then_b_then_a(variant: Variant, engine: Engine, standin: StandIn,
                                                     plugin_lib: str) -> None:
    """The context's input shape follows the frames, and one set of buffers grows to the largest."""
    backend = TensorRTBackend(engine(True, "int32"), plugin_lib)
    for seed, shape in enumerate((A, B, A, B)):
        frames = frames_of(shape, seed)
        reference = onnx_runtime(variant("fp32", True, "portable"), frames)
        assert (backend.infer(frames).labels == reference).mean() >= 0.999, shape
    assert len(standin.memory.live["device"]) == len(standin.memory.live["host"]) == 2  # frames and labels
    with pytest.raises(BackendError, match=r"^frames of shape 3x64x128x3: the engine takes 1x32x64x3 to 2x96x160x3$"):
        backend.infer(frames_of((3, 64, 128, 3), 0))
    assert len(standin.log) == 1 and "outside" in standin.log.pop()  # TensorRT's own complaint
    frames = frames_of(A, 5)
    assert (backend.infer(frames).labels == onnx_runtime(variant("fp32", True, "portable"), frames)).mean() >= 0.999


def test_segmenter_gives_a_dynamic_engine_any_frame_at_the_nearest_size_its_profile_takes(variant: Variant,
                                                                                         engine: Engine,
                                                                                         standin: StandIn) -> None:
    """H and W rounded to multiples of 4 (halfway up) and brought within the profile (PROFILE: 32x64 to 96x160):
    labels and confidence are the graph's own (ONNX Runtime) for the frame resized (bilinear) to that size."""
    graph = variant("fp32", True, "portable", True)
    segmenter = Segmenter(engine(True, "portable", True))
    for seed, (frame_size, taken) in enumerate((((66, 130), (68, 132)), ((200, 301), (96, 160)),
                                                ((20, 30), (32, 64)))):
        frame = frames_of((*frame_size, 3), seed)
        resized = np.asarray(Image.fromarray(frame).resize(taken[::-1], Image.BILINEAR))
        labels, confidence = segmenter.process(frame)
        expected_labels, expected_confidence = session(graph).run(None, {"frame": resized[None]})
        np.testing.assert_array_equal(labels, expected_labels[0], err_msg=str(frame_size))
        np.testing.assert_array_equal(confidence, expected_confidence[0], err_msg=str(frame_size))


def test_a_dynamic_engine_whose_profile_holds_no_size_its_graph_takes_is_refused(engine: Engine, standin: StandIn,
                                                                                 tmp_path: Path) -> None:
    """An engine built elsewhere (an older dannet-export did not check profiles) with H and W never multiples of 4."""
    built = engine(True, "portable")
    plan = json.loads(built.read_bytes()[len(PLAN_MAGIC):])
    plan["profile"] = {"min": [1, 33, 65, 3], "opt": [1, 34, 66, 3], "max": [1, 35, 67, 3]}
    path = tmp_path / built.name
    path.write_bytes(PLAN_MAGIC + json.dumps(plan).encode())
    sidecar_path(path).write_bytes(sidecar_path(built).read_bytes())
    with pytest.raises(BackendError, match=r"its profile's frames \(1x33x65x3 to 1x35x67x3\) include no size its "
                                           r"graph takes \(H and W multiples of 4 from 32x32 to 4096x4096\); rebuild"):
        TensorRTBackend(path)


def test_static_engine_refuses_other_frame_sizes(engine: Engine, standin: StandIn) -> None:
    backend = TensorRTBackend(engine(False, "portable"))
    for shape, error in (((1, 96, 160, 3), "^frames of shape 1x96x160x3: the engine takes 1x64x128x3$"),
                         ((1, 64, 128), "N x H x W x 3")):
        with pytest.raises(BackendError, match=error):
            backend.infer(np.zeros(shape, np.uint8))
    assert len(standin.log) == 1 and "outside" in standin.log.pop()


def test_an_engine_says_how_many_frames_one_call_takes(engine: Engine, standin: StandIn) -> None:
    """``max_batch``: an engine with a batch profile takes up to the profile's largest batch (PROFILE: 2, and 3
    frames are refused); a fixed-shape engine (a graph exported without --dynamic) takes 1 (2 are refused)."""
    dynamic, static = TensorRTBackend(engine(True, "portable")), TensorRTBackend(engine(False, "portable"))
    assert dynamic.max_batch == 2
    assert dynamic.infer(frames_of((2, 64, 128, 3), 0)).labels.shape == (2, 96, 150)
    with pytest.raises(BackendError, match="^frames of shape 3x64x128x3: the engine takes"):
        dynamic.infer(frames_of((3, 64, 128, 3), 0))
    assert "outside" in standin.log.pop()
    assert static.max_batch == 1
    with pytest.raises(BackendError, match="^frames of shape 2x64x128x3: the engine takes 1x64x128x3$"):
        static.infer(frames_of((2, 64, 128, 3), 0))
    assert "outside" in standin.log.pop() and not standin.log


def test_a_second_backend_in_the_same_process_loads_the_plugin_once(engine: Engine, standin: StandIn,
                                                                     plugin_lib: str) -> None:
    path = engine(False, "int32")
    frames = frames_of(A, 2)
    first, second = TensorRTBackend(path, plugin_lib), TensorRTBackend(path, plugin_lib)
    np.testing.assert_array_equal(first.infer(frames).labels, second.infer(frames).labels)
    assert standin.library_loads == [str(Path(plugin_lib).resolve())]  # by build_engine or by the first backend


# --- releasing an engine: close() ----------------------------------------------------------------------------

def assert_nothing_held(standin: StandIn) -> None:
    """No live device or pinned allocation and no stream: every one was freed (a second free of one would have
    raised ContractViolation in the stand-in, so each was freed exactly once)."""
    assert not standin.memory.live["device"] and not standin.memory.live["host"], standin.memory.live
    assert not standin.cuda.streams, standin.cuda.streams


def test_close_frees_every_buffer_and_the_stream_once_and_drops_the_engine(engine: Engine, standin: StandIn,
                                                                            plugin_lib: str) -> None:
    """Engines opened one after another (dannet-bench miou --model A --model B) must not hold each other's GPU
    memory: after close (here at the end of a ``with Segmenter``) nothing is left, the buffers that growing
    replaced included, and the context and engine are gone; a second close frees nothing again."""
    for path in (engine(True, "int32"), engine(False, "portable", True)):  # grown buffers; a second output
        with Segmenter(path, plugin_lib=plugin_lib) as segmenter:
            backend = segmenter.backend
            for shape in ((A, B) if backend.info.input_size is None else (A,)):
                backend.infer(frames_of(shape, 0))
            assert standin.memory.live["device"] and standin.cuda.streams
            engine_alive, context_alive = weakref.ref(backend.engine), weakref.ref(backend.context)
        assert_nothing_held(standin)
        gc.collect()
        assert engine_alive() is None and context_alive() is None
        segmenter.close()
        with pytest.raises(BackendError, match="^the tensorrt backend was closed"):
            backend.infer(frames_of(A, 0))
    # a device and a pinned buffer per tensor: frame and labels at A, then at B; frame, labels, confidence once
    assert len(standin.memory.freed) == 2 * (2 + 2) + 2 * 3


def test_close_after_a_cuda_fault_still_frees_everything_and_says_what_failed(engine: Engine, standin: StandIn,
                                                                             monkeypatch) -> None:
    """After a kernel fault CUDA returns the error again from later calls (here the stream synchronisation and
    the first free): close still frees every other buffer and the stream, drops the engine, raises the first
    failure, and a second close does nothing."""
    backend = TensorRTBackend(engine(False, "portable"))
    backend.infer(frames_of(A, 0))
    fault = (cudaError_t.cudaErrorIllegalAddress,)
    monkeypatch.setattr(backend.cudart, "cudaStreamSynchronize", lambda stream: fault)
    free, frees = backend.cudart.cudaFree, []
    monkeypatch.setattr(backend.cudart, "cudaFree", lambda ptr: fault if not frees and not frees.append(ptr)
                        else free(ptr))
    with pytest.raises(BackendError, match="^cudaStreamSynchronize failed: cudaErrorIllegalAddress"):
        backend.close()
    assert backend.context is None and backend.engine is None
    assert len(standin.memory.live["device"]) == 1 and not standin.memory.live["host"] and not standin.cuda.streams
    backend.close()


def test_dannet_run_releases_the_engine_at_the_end_of_a_run(engine: Engine, standin: StandIn,
                                                           tmp_path: Path) -> None:
    """One camera and several: the runtime frees the engine when the run ends (and when it is refused after the
    model was opened)."""
    from runtime.multicam import run_cameras
    from runtime.pipeline import run

    path = engine(False, "portable")
    image = tmp_path / "frame.png"
    Image.fromarray(frames_of((48, 96, 3), 0)).save(image)
    quiet = dict(say=lambda s: None, stats_interval_s=0)
    assert run(str(path), str(image), "null://", **quiet)["written"] == 1
    assert_nothing_held(standin)
    assert run_cameras(str(path), [str(image), str(image)], ["null://"], **quiet)["written"] == 2
    assert_nothing_held(standin)
    with pytest.raises(DannetError, match="no confidence output"):
        run(str(path), str(image), "null://", visualize="confidence", **quiet)
    assert_nothing_held(standin)


def test_dannet_bench_compare_releases_every_engine(variant: Variant, engine: Engine, standin: StandIn,
                                                    tmp_path: Path) -> None:
    """The engines compare opens, after a run and after a refusal (a graph not exported from --checkpoint)."""
    from benchmarks.compare import main as compare

    path = engine(False, "portable")
    checkpoint = variant("fp32", False, "int32").parent / "tiny.pth"
    compare(["--model", str(path), "--also-model", str(path), "--checkpoint", str(checkpoint), "--frames", "1",
             "--warmup", "0"])
    assert_nothing_held(standin)
    other = tmp_path / "other.pth"
    other.write_bytes(b"not the checkpoint")
    with pytest.raises(DannetError, match="is not the checkpoint"):
        compare(["--model", str(path), "--checkpoint", str(other)])
    assert_nothing_held(standin)


def test_a_creator_registered_by_another_library_is_not_loaded_again(engine: Engine, standin: StandIn,
                                                                      plugin_lib: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = engine(False, "pack4")
    process = StandIn().install(monkeypatch)  # a process where trtexec-like code registered the creator first
    other = tmp_path / "libother_plugins.so"
    other.write_bytes(b"stand-in")
    assert process.registry.load_library(str(other)) is not None
    TensorRTBackend(path, plugin_lib).infer(frames_of(A, 3))
    assert process.library_loads == [str(other)] and not process.log


def test_an_engine_built_with_other_options_is_rebuilt(variant: Variant, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """build_engine twice: the same options reuse the engine; another profile, DLA core or workspace rebuilds it,
    with a line saying why, and the engine then has the new profile."""
    standin = StandIn(dla_cores=2).install(monkeypatch)  # a Jetson Orin
    graph, out = variant("fp32", True, "portable"), tmp_path / "m.engine"

    def build(**options) -> list[str]:
        said: list[str] = []
        build_engine(graph, out, say=said.append, **options)
        return said

    one = {"min": (1, 64, 128, 3), "opt": (1, 64, 128, 3), "max": (1, 64, 128, 3)}
    four = {**one, "max": (4, 128, 256, 3)}
    assert not any("rebuilding" in line for line in build(shapes=one))  # there was nothing to rebuild
    assert TensorRTBackend(out).max_batch == 1
    assert build(shapes=one) == [f"{out}: up to date for {GPU_NAME} / TensorRT {VERSION}; reusing it"]
    assert build(shapes=four)[0] == (f"{out}: rebuilding it: built with --max-shape 1x64x128x3, asked for "
                                     "--max-shape 4x128x256x3")
    backend = TensorRTBackend(out)
    assert backend.max_batch == 4 and backend.info.dynamic_sizes == SizeRange((64, 128), (128, 256))
    assert build(shapes=four, dla_core=1)[0] == (f"{out}: rebuilding it: built with no --dla-core, asked for "
                                                 "--dla-core 1")
    assert build(shapes=four, dla_core=1, workspace_gb=0.5)[0] == (
        f"{out}: rebuilding it: built with no --workspace-gb, asked for --workspace-gb 0.5")
    assert "reusing it" in build(shapes=four, dla_core=1, workspace_gb=0.5)[-1]
    assert Sidecar.read(sidecar_path(out)).profile == {key: list(shape) for key, shape in four.items()}
    assert not standin.log


# --- a machine with TensorRT but no usable CUDA driver ---------------------------------------------------------

@pytest.mark.parametrize("driver", ["missing", "unloadable"])
def test_no_cuda_driver_is_one_line(engine: Engine, standin: StandIn, driver: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = engine(False, "portable")
    StandIn(driver=driver).install(monkeypatch)
    for make in (lambda: TensorRTBackend(path), current_machine):
        with pytest.raises((BackendError, EngineError)) as e:
            make()
        message = str(e.value)
        assert message.startswith("no usable CUDA driver/GPU: ") and message.endswith(", use --backend onnxruntime")
        assert "\n" not in message and ("cudaErrorInsufficientDriver" in message or driver == "unloadable")


def test_no_cuda_driver_with_the_real_cuda_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What cuda-python itself does on this machine, with only TensorRT standing in."""
    runtime = pytest.importorskip("cuda.bindings.runtime")
    if int(runtime.cudaGetDeviceCount()[0]) == 0:
        pytest.skip("this machine has a CUDA driver and a GPU")
    StandIn().install(monkeypatch, cuda=False)
    path = tmp_path / "m.engine"
    path.write_bytes(b"engine")
    Sidecar(onnx_sha256="0", tensorrt_version=VERSION, gpu_name="any", compute_capability="87",
            precision="fp32", output_size=[96, 150]).write(sidecar_path(path))
    with pytest.raises(BackendError, match=r"^no usable CUDA driver/GPU: cuda\w+, use --backend onnxruntime$"):
        TensorRTBackend(path)


# --- the engine's sidecar, and the stand-in's own strictness ----------------------------------------------------

def test_an_engine_whose_sidecar_lacks_the_label_size_is_refused(engine: Engine, standin: StandIn, plugin_lib: str,
                                                                  tmp_path: Path) -> None:
    built = engine(False, "pack4")
    path = tmp_path / built.name
    path.write_bytes(built.read_bytes())
    sidecar = Sidecar.read(sidecar_path(built))
    assert sidecar.output_size == [96, 150]  # what build_engine records: a pack4 engine cannot show it
    # and the checkpoint the graph was exported from, which dannet-bench compare checks through ModelInfo
    exported_from = read_metadata(built.with_suffix(".onnx"))["dannet.checkpoint_sha256"]
    assert sidecar.checkpoint_sha256 == exported_from
    assert TensorRTBackend(built, plugin_lib).info.checkpoint_sha256 == exported_from
    # and the relighting file it was exported with: none ("", not None: recorded as none), its checkpoint's own
    assert sidecar.light_sha256 == read_metadata(built.with_suffix(".onnx"))["dannet.light_sha256"] == ""
    assert TensorRTBackend(built, plugin_lib).info.light_sha256 == ""
    # and how its tail re-weights, which dannet-bench compare's reference loop follows
    assert sidecar.reweight == read_metadata(built.with_suffix(".onnx"))["dannet.reweight"] == "logits"
    assert TensorRTBackend(built, plugin_lib).info.reweight == "logits"
    # and how it upsamples, which the reference loop follows too
    assert read_metadata(built.with_suffix(".onnx"))["dannet.align_corners"] == "1" and sidecar.align_corners is True
    assert TensorRTBackend(built, plugin_lib).info.align_corners is True
    sidecar.output_size = None
    sidecar.write(sidecar_path(path))
    with pytest.raises(BackendError, match="does not record the label map size; rebuild it"):
        TensorRTBackend(path, plugin_lib)


def test_the_stand_in_catches_what_tensorrt_and_cuda_would_not_forgive(engine: Engine, standin: StandIn) -> None:
    """The stand-in must fail misuse, or the backend tests above could not fail."""
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    cuda_engine = runtime.deserialize_cuda_engine(engine(True, "portable").read_bytes())
    context = cuda_engine.create_execution_context()
    _, stream = cudart.cudaStreamCreate()
    _, small = cudart.cudaMalloc(int(np.prod(A)))
    _, labels = cudart.cudaMalloc(2 * 96 * 150)
    assert context.set_input_shape("frame", B) and context.set_tensor_address("frame", small)
    assert context.set_tensor_address("labels", labels)
    with pytest.raises(ContractViolation, match="overrun"):  # a buffer sized for A while the context has B
        context.execute_async_v3(int(stream))
    assert not context.set_input_shape("frame", (4, 64, 128, 3))  # outside the profile: TensorRT says no
    assert len(standin.log) == 1 and standin.log.pop()
    assert context.set_input_shape("frame", A)
    cudart.cudaFree(small)
    with pytest.raises(ContractViolation, match="not in any live device allocation"):  # freed
        context.execute_async_v3(int(stream))
    with pytest.raises(ContractViolation, match="TensorRT takes an int"):
        context.execute_async_v3(float(int(stream)))
    with pytest.raises(ContractViolation, match="not in any live host allocation"):  # pageable memory
        cudart.cudaMemcpyAsync(np.zeros(4, np.uint8).ctypes.data, labels, 4,
                               cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    with pytest.raises(AttributeError, match="not in tests/tensorrt_api.py"):
        cuda_engine.get_binding_shape(0)  # the bindings API, gone since TensorRT 10
    assert runtime.deserialize_cuda_engine(b"not an engine") is None and standin.log.pop()
    fresh = cuda_engine.create_execution_context()
    assert fresh.set_input_shape("frame", A) and not fresh.execute_async_v3(int(stream))  # no addresses set
    assert "no address for ['frame', 'labels']" in standin.log.pop()
    kinds, (_, host), (_, device) = cudart.cudaMemcpyKind, cudart.cudaMallocHost(4), cudart.cudaMalloc(4)
    pinned = np.ctypeslib.as_array((ctypes.c_uint8 * 4).from_address(host))
    pinned[:] = 7
    cudart.cudaMemcpyAsync(device, host, 4, kinds.cudaMemcpyHostToDevice, stream)
    cudart.cudaStreamSynchronize(stream)
    pinned[:] = 0
    cudart.cudaMemcpyAsync(host, device, 4, kinds.cudaMemcpyDeviceToHost, stream)
    assert (pinned == 0).all()  # queued, not done: a result read before synchronising is stale
    cudart.cudaStreamSynchronize(stream)
    assert (pinned == 7).all()


# --- every exported graph against TensorRT 10.3's ONNX parser --------------------------------------------------

@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_every_exported_graph_uses_only_what_tensorrt_parses(variant: Variant, precision: str, dynamic: bool) -> None:
    # with --confidence, the portable tail has ops of its own; the plugin node only gains an output
    for tail, confidence in [*((tail, False) for tail in TAILS), ("portable", True)]:
        model = onnx.load(str(variant(precision, dynamic, tail, confidence)), load_external_data=False)
        problems = onnx_problems(model)
        assert not problems, f"{precision} {'dynamic' if dynamic else 'static'} {tail} confidence {confidence}: " + \
            "; ".join(str(p) for p in problems)


def test_build_engine_reports_the_node_the_parser_refuses(variant: Variant, standin: StandIn, tmp_path: Path) -> None:
    model = onnx.load(str(variant("fp32", False, "portable")))
    labels_cast = next(n for n in model.graph.node if n.output[0] == "labels")
    labels_cast.input[0] = "tail_argmax"  # the old tail: int64 straight to uint8
    onnx.save(model, str(tmp_path / "old_tail.onnx"))
    with pytest.raises(EngineError, match=r"parser failed at node 'tail_cast_uint8' \(Cast\): INT64 -> UINT8"):
        build_engine(tmp_path / "old_tail.onnx", tmp_path / "old_tail.engine", say=lambda s: None)


def test_the_parser_table_refuses_a_uint8_cast_from_int64_and_uint8_inside_the_network() -> None:
    """The rules that caught the old portable tail (ArgMax -> Cast uint8) and the old body (Transpose of the
    uint8 frame), on graphs made for the purpose."""
    frame = helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, 4, 4, 3])
    labels = helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, 4, 4])
    nodes = [helper.make_node("Transpose", ["frame"], ["nchw"], perm=[0, 3, 1, 2], name="transpose"),
             helper.make_node("Cast", ["nchw"], ["x"], to=TensorProto.FLOAT, name="to_float"),
             helper.make_node("ArgMax", ["x"], ["idx"], axis=1, keepdims=0, name="argmax"),
             helper.make_node("Cast", ["idx"], ["labels"], to=TensorProto.UINT8, name="to_uint8")]
    model = helper.make_model(helper.make_graph(nodes, "old", [frame], [labels]),
                              opset_imports=[helper.make_opsetid("", 18)])
    found = onnx_problems(model)
    assert {(p.node, p.op) for p in found} == {("transpose", "Transpose"), ("to_uint8", "Cast")}
    problems = {p.node: p.reason for p in found}
    assert "INT64 -> UINT8" in problems["to_uint8"] and "UINT8" in problems["transpose"]

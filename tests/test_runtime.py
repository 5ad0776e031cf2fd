"""Runtime core: backends, Segmenter and overlay (ONNX Runtime here; TensorRT marked), the confidence output
of the ONNX Runtime and PyTorch backends against a plainly written PyTorch computation."""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import TINY_SIZES
from PIL import Image

from runtime.backends import BackendError, Inference, OnnxRuntimeBackend, TensorRTBackend, open_backend
from runtime.classes import IMAGENET_MEAN, IMAGENET_STD, PALETTE, class_weights
from runtime.overlay import mask, overlay, visualize
from runtime.segmenter import Segmenter


@pytest.fixture(scope="module")
def graphs(tiny_graphs: dict[str, Path]) -> dict[str, Path]:
    return tiny_graphs


@pytest.fixture(scope="module")
def program(tiny_program: Path) -> Path:
    return tiny_program


def test_segmenter_resizes_frames_and_runs_the_graph(graphs: dict[str, Path]) -> None:
    seg = Segmenter(graphs["portable"])
    assert seg.backend.name == "onnxruntime" and seg.info.input_size == (64, 128)
    assert seg.info.output_size == (96, 160) and seg.info.class_names[0] == "road"
    frame = np.random.default_rng(0).integers(0, 256, (128, 256, 3), dtype=np.uint8)
    labels = seg.process(frame)
    assert labels.shape == (96, 160) and labels.dtype == np.uint8
    resized = np.asarray(Image.fromarray(frame).resize((128, 64), Image.BILINEAR))
    session = ort.InferenceSession(str(graphs["portable"]), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(labels, session.run(None, {"frame": resized[None]})[0][0])
    with pytest.raises(ValueError, match="uint8 RGB"):
        seg.process(frame.astype(np.float32))


def test_a_closed_onnx_runtime_model_is_released_and_refuses_to_run(graphs: dict[str, Path]) -> None:
    with Segmenter(graphs["portable"]) as seg:
        backend = seg.backend
        assert seg.process(np.zeros((64, 128, 3), np.uint8)).shape == (96, 160)
    assert backend.session is None  # ONNX Runtime frees a session with its last reference
    seg.close()  # again: nothing to do
    with pytest.raises(BackendError, match="^the onnxruntime backend was closed"):
        seg.process(np.zeros((64, 128, 3), np.uint8))


def test_compare_gives_threads_to_onnx_runtime_whatever_the_model_file_is_called(
        graphs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dannet-bench compare --backend onnxruntime --threads 2 with a graph not named .onnx: the session it opens
    has 2 intra-op threads (read back from the session itself), as with a .onnx name."""
    from benchmarks.compare import main as compare
    from runtime import segmenter as segmenter_module
    from runtime.errors import DannetError

    threads: dict[str, int] = {}

    class Recording(Segmenter):
        def __init__(self, model: str, *args, **kwargs) -> None:
            super().__init__(model, *args, **kwargs)
            threads[Path(model).name] = self.backend.session.get_session_options().intra_op_num_threads

    monkeypatch.setattr(segmenter_module, "Segmenter", Recording)
    renamed = tmp_path / "dannet.model"
    renamed.write_bytes(graphs["portable"].read_bytes())
    for model in (graphs["portable"], renamed):
        with pytest.raises(DannetError, match="--checkpoint"):  # refused once the model is open: nothing is run
            compare(["--model", str(model), "--backend", "onnxruntime", "--threads", "2",
                     "--checkpoint", str(tmp_path / "missing.pth")])
    assert threads == {graphs["portable"].name: 2, "dannet.model": 2}


def test_overlay_colours_are_the_palette_where_labels_are_known() -> None:
    frame = np.full((4, 6, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 13, 10], [255, 2, 18]], dtype=np.uint8)  # 2 x 3, upsampled to 4 x 6 (nearest)
    full = overlay(frame, labels, alpha=1.0)
    np.testing.assert_array_equal(full[0, 0], PALETTE[0])
    np.testing.assert_array_equal(full[0, 2], PALETTE[13])
    np.testing.assert_array_equal(full[3, 5], PALETTE[18])
    np.testing.assert_array_equal(full[2, 0], [0, 0, 0])  # ignore: black
    half = overlay(frame, labels, alpha=0.5)
    assert np.abs(half[0, 2].astype(int) - (100 + PALETTE[13].astype(int)) / 2).max() <= 1
    np.testing.assert_array_equal(overlay(frame, labels, alpha=0.0), frame)
    assert visualize(frame, labels, "both").shape == (4, 12, 3)
    np.testing.assert_array_equal(visualize(frame, labels, "mask")[1, 2], mask(labels)[0, 1])
    with pytest.raises(ValueError, match="alpha"):
        overlay(frame, labels, alpha=2)


def test_backend_errors_are_one_line(graphs: dict[str, Path], tmp_path: Path) -> None:
    cases = [
        (lambda: open_backend(tmp_path / "model.pth"), "cannot tell the backend"),
        (lambda: open_backend(graphs["portable"], "tensorrt"), "build an engine first"),
        (lambda: open_backend(tmp_path / "m.engine", "onnxruntime"), "cannot run in ONNX Runtime"),
        (lambda: open_backend(graphs["portable"], "magic"), "unknown backend"),
        (lambda: OnnxRuntimeBackend(tmp_path / "none.onnx"), "no such model file"),
        (lambda: OnnxRuntimeBackend(graphs["plugin"]), "TensorRT plugin tail"),
    ]
    (tmp_path / "garbage.onnx").write_bytes(b"not onnx")
    cases.append((lambda: OnnxRuntimeBackend(tmp_path / "garbage.onnx"), "cannot load"))
    for make, fragment in cases:
        with pytest.raises(BackendError) as e:
            make()
        assert fragment in str(e.value) and "\n" not in str(e.value)


def test_tensorrt_backend_refuses_cleanly_without_tensorrt(tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed")
    except ImportError:
        pass
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    with pytest.raises(BackendError, match="TensorRT is not installed"):
        TensorRTBackend(engine)


def test_runtime_core_imports_without_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "import runtime.backends, runtime.segmenter, runtime.overlay, runtime.engine_sidecar, "
            "runtime.reweight_argmax, runtime.plugin_library, runtime.pipeline, runtime.cli, runtime.sources, "
            "runtime.sinks, runtime.stats, runtime.uris\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.tensorrt
def test_tensorrt_backend_matches_onnx_runtime(graphs: dict[str, Path], tmp_path: Path) -> None:
    from export import build_engine

    engine = build_engine(graphs["plugin"], tmp_path / "p.engine", say=lambda s: None)
    frame = np.random.default_rng(1).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    ours = Segmenter(engine).process(frame)
    reference = Segmenter(graphs["portable"]).process(frame)
    assert ours.shape == reference.shape and (ours == reference).mean() >= 0.999


def test_torch_backend_runs_the_pt2_program_like_onnx_runtime(graphs: dict[str, Path], program: Path,
                                                              tmp_path: Path) -> None:
    torch_seg, ort_seg = Segmenter(program), Segmenter(graphs["portable"])
    assert torch_seg.backend.name == "torch" and torch_seg.info.class_names == ort_seg.info.class_names
    assert (torch_seg.info.input_size, torch_seg.info.output_size) == ((64, 128), (96, 160))
    assert torch_seg.info.weights_std == ort_seg.info.weights_std == 0.16
    assert torch_seg.info.precision == ort_seg.info.precision == "fp32"  # dannet-bench miou's precision column
    np.testing.assert_array_equal(torch_seg.info.palette, PALETTE)
    frames = np.random.default_rng(1).integers(0, 256, (3, 64, 128, 3), dtype=np.uint8)
    labels = torch_seg.backend.infer(frames).labels
    assert labels.dtype == np.uint8 and labels.shape == (3, 96, 160)
    reference = np.concatenate([ort_seg.backend.infer(frame[None]).labels for frame in frames])  # ONNX: batch 1
    assert (labels == reference).mean() > 0.999
    with pytest.raises(BackendError, match="dannet-export pt2"):
        open_backend(graphs["portable"], "torch")
    with pytest.raises(BackendError, match="not a dannet-export pt2 program"):
        (tmp_path / "junk.pt2").write_bytes(b"PK\x03\x04junk")
        open_backend(tmp_path / "junk.pt2")
    with pytest.raises(BackendError, match="export it first"):
        open_backend(graphs["checkpoint"])


def test_legend_names_the_classes_in_view_largest_first() -> None:
    from runtime.overlay import LEGEND_ROW, LEGEND_WIDTH, legend

    picture = np.zeros((60, 40, 3), dtype=np.uint8)
    labels = np.full((10, 10), 13, dtype=np.uint8)  # mostly car, some road, one ignored pixel
    labels[:3] = 0
    labels[0, 0] = 255
    out = legend(picture, labels)
    assert out.shape == (60, 40 + LEGEND_WIDTH, 3)
    np.testing.assert_array_equal(out[:, :40], picture)
    swatch = lambda row: out[row * LEGEND_ROW + 6, 40 + 8]  # noqa: E731  the middle of a row's colour box
    np.testing.assert_array_equal(swatch(0), PALETTE[13])
    np.testing.assert_array_equal(swatch(1), PALETTE[0])
    assert (out[2 * LEGEND_ROW + 6, 40 + 8] == 32).all()  # nothing else listed


def test_torch_backend_moves_the_whole_program_to_its_device(program: Path) -> None:
    """A program traced on the CPU names that device in its nodes; on another device (here the
    shape-only "meta" device, standing in for CUDA) every one of them must follow the weights."""
    import torch

    from runtime.backends import TorchBackend

    backend = TorchBackend(program, device="meta")
    labels = backend.module(torch.zeros(2, 64, 128, 3, dtype=torch.uint8, device="meta"))
    assert labels.device.type == "meta" and tuple(labels.shape) == (2, 96, 160) and labels.dtype == torch.uint8


def test_a_pt2_program_takes_up_to_its_batch_bound(program: Path) -> None:
    """``max_batch`` of the torch backend is where the program's own guards start refusing frames: that many
    run, one more does not (on the shape-only "meta" device, so 64 frames cost nothing)."""
    import torch

    from runtime.backends import TorchBackend

    backend = TorchBackend(program, device="meta")
    assert backend.max_batch is not None and backend.max_batch > 4  # several cameras fit in one call

    def frames(count: int) -> torch.Tensor:
        return torch.zeros(count, 64, 128, 3, dtype=torch.uint8, device="meta")

    assert tuple(backend.module(frames(backend.max_batch)).shape) == (backend.max_batch, 96, 160)
    with pytest.raises(Exception, match=f"<= {backend.max_batch}"):
        backend.module(frames(backend.max_batch + 1))


@pytest.mark.gpu
def test_torch_backend_on_cuda_matches_cpu(program: Path) -> None:
    from runtime.backends import TorchBackend

    frames = np.random.default_rng(2).integers(0, 256, (2, 64, 128, 3), dtype=np.uint8)
    cuda, cpu = TorchBackend(program, device="cuda"), TorchBackend(program, device="cpu")
    assert str(cuda.device).startswith("cuda")
    assert (cuda.infer(frames).labels == cpu.infer(frames).labels).mean() > 0.999


def test_latency_histogram_percentiles_match_numpy() -> None:
    from runtime.stats import LatencyHistogram

    samples = np.random.default_rng(3).lognormal(mean=np.log(0.05), sigma=0.6, size=20_000)
    histogram = LatencyHistogram()
    for s in samples:
        histogram.add(float(s))
    assert histogram.count == samples.size and histogram.summary()["mean_ms"] == pytest.approx(1e3 * samples.mean(), abs=1e-3)
    for q in (50, 90, 99):
        assert histogram.percentile(q) == pytest.approx(np.percentile(samples, q), rel=0.015)


def test_uris_name_what_they_are(tmp_path: Path) -> None:
    from runtime.gst import MediaError
    from runtime.uris import parse_input, parse_output

    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "clip.mkv").write_bytes(b"")
    assert (parse_input("csi://1").kind, parse_input("csi://1").location) == ("csi", "1")
    assert parse_input("test://ball").location == "ball" and parse_input("test://").live
    assert parse_input(f"file://{tmp_path}/clip.mkv").kind == "video" and not parse_input(str(tmp_path)).live
    assert parse_input(str(tmp_path)).images == (tmp_path / "a.png",)
    assert parse_input(f"{tmp_path}/*.png").kind == "images"
    assert parse_input("rtsp://cam.local:554/stream").kind == "rtsp"
    out = parse_output("rtsp://@:8600/seg")
    assert (out.kind, out.port, out.location) == ("rtsp", 8600, "/seg")
    assert parse_output("rtsp://@/seg").port == 8554
    assert parse_output("out.mp4").kind == "video" and parse_output("masks/").kind == "images"
    assert parse_output("out/%05d.png").kind == "images" and parse_output("null://").kind == "null"
    for bad in ("csi://x", "v4l2://camera", "rtsp:///nohost", "gopher://x"):
        with pytest.raises(MediaError, match=bad.split(":")[0]):
            parse_input(bad)
    for bad in ("rtsp://10.0.0.1:8554/x", "display://left", "out.wmv"):
        with pytest.raises(MediaError):
            parse_output(bad)


def test_display_takes_only_the_screen_display_names() -> None:
    """autovideosink cannot be sent to a monitor: display://1 would silently show on DISPLAY's screen, so it is
    refused in one line that names the URI and says how to reach another screen."""
    from runtime.gst import MediaError
    from runtime.uris import parse_output

    assert parse_output("display://").kind == parse_output("display://0").kind == "display"
    for other in ("display://1", "display://00", "display://left"):
        with pytest.raises(MediaError, match=rf"^{other}: expected display:// or display://0, .*set DISPLAY"):
            parse_output(other)


def test_image_patterns_number_frames_with_one_d_conversion_only(tmp_path: Path) -> None:
    """An image output pattern is ``%d`` or ``%0Nd`` once in the file name: ``%s``/``%i`` would also format the
    index, but the check that no output writes over an input reads only %d, so they are refused; and the check
    names the input a %d pattern would overwrite."""
    from runtime.gst import MediaError
    from runtime.pipeline import check_inputs_kept
    from runtime.uris import parse_input, parse_output

    for good in ("out/%d.png", "out/%05d.png", "out/night_%06d_labels.png"):
        assert parse_output(good).kind == "images"
    for bad in ("out/%s.png", "out/%i.png", "out/%05d_%d.png", "out/%%.png", "o%1/a%d.png"):
        with pytest.raises(MediaError, match=r"one %d or %0Nd in the file name"):
            parse_output(bad)
    frames = tmp_path / "in"
    frames.mkdir()
    for name in ("0.png", "1.png"):
        Image.new("RGB", (8, 8)).save(frames / name)
    source = parse_input(str(frames))
    with pytest.raises(Exception, match=r"would write over \S*in/0\.png"):
        check_inputs_kept([(source, [("--output", parse_output(f"{frames}/%d.png"))])])


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG of ``array`` (H x W grey or H x W x 3 RGB, uint16), written here from the PNG specification
    (signature, IHDR, one IDAT of unfiltered big-endian rows, IEND), not by the Pillow that reads it back."""
    height, width = array.shape[:2]
    colour_type = 2 if array.ndim == 3 else 0
    rows = array.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_16_bit_images_are_read_by_their_high_byte_not_clipped(tmp_path: Path) -> None:
    """A ramp across the 16-bit range, grey and RGB: each level v comes in as v >> 8 (grey on all three
    channels), not clipped to white above 255."""
    from runtime.sources import open_source
    from runtime.uris import parse_input

    ramp = np.linspace(0, 65535, 512).round().astype(np.uint16)[None].repeat(2, axis=0)
    colour = np.stack([ramp, 65535 - ramp, ramp // 3], axis=-1)
    (tmp_path / "grey.png").write_bytes(png16(ramp))
    (tmp_path / "rgb.png").write_bytes(png16(colour))
    grey = open_source(parse_input(str(tmp_path / "grey.png"))).read(timeout=0).image
    np.testing.assert_array_equal(grey, np.repeat((ramp >> 8).astype(np.uint8)[..., None], 3, axis=-1))
    rgb = open_source(parse_input(str(tmp_path / "rgb.png"))).read(timeout=0).image
    np.testing.assert_array_equal(rgb, (colour >> 8).astype(np.uint8))


# --- confidence ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def confidence_models(tiny_confidence: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny checkpoint, made unsure (tests/confidence_checkpoint.py), exported with --confidence: ``onnx``
    (portable, logits), ``pt2`` and ``pt2-probs``; and the ``checkpoint`` itself."""
    from export import ExportSpec, to_torch_program

    root, checkpoint = tmp_path_factory.mktemp("confidence"), tiny_confidence["checkpoint"]
    return {**tiny_confidence,
            "pt2": to_torch_program(checkpoint, root / "c.pt2", ExportSpec(**TINY_SIZES, confidence=True),
                                    say=lambda s: None),
            "pt2-probs": to_torch_program(checkpoint, root / "p.pt2",
                                          ExportSpec(**TINY_SIZES, confidence=True, reweight="probs"),
                                          say=lambda s: None)}


def reference(checkpoint: Path, frames: np.ndarray, reweight: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and confidence levels written plainly from the checkpoint's networks: torch's softmax of the
    upsampled re-weighted logits (``logits``), or the paper's p w / sum(p w) of the upsampled logits' softmax
    (``probs``); the level of the winning class's probability, rounded half up."""
    import torch
    import torch.nn.functional as F

    from train.evaluate import load_networks

    seg, light, _, _ = load_networks(str(checkpoint), None, "pspnet", "resnet18")
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    x = torch.from_numpy(((frames / 255.0 - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
    w = torch.from_numpy(class_weights(0.16)).view(1, -1, 1, 1)
    up = lambda z: F.interpolate(z, size=TINY_SIZES["output_size"], mode="bilinear", align_corners=True)  # noqa: E731
    with torch.no_grad():
        logits = seg(x + light.residual(x))
        p = F.softmax(up(logits * w), dim=1) if reweight == "logits" else F.softmax(up(logits), dim=1) * w
        p = p / p.sum(dim=1, keepdim=True)
    best, labels = p.max(dim=1)
    return labels.numpy(), np.floor(best.numpy().astype(np.float64) * 255 + 0.5)


@pytest.mark.parametrize("model, reweight", [("onnx", "logits"), ("pt2", "logits"), ("pt2-probs", "probs")])
def test_backends_give_the_confidence_of_the_definition(confidence_models: dict[str, Path], graphs: dict[str, Path],
                                                        model: str, reweight: str) -> None:
    frames = np.random.default_rng(4).integers(0, 256, (2, 64, 128, 3), dtype=np.uint8)
    seg = Segmenter(confidence_models[model])
    assert seg.info.confidence and not Segmenter(graphs["portable"]).info.confidence
    results = [seg.backend.infer(frame[None]) for frame in frames]  # ONNX graphs: batch 1
    labels = np.concatenate([r.labels for r in results])
    confidence = np.concatenate([r.confidence for r in results])
    assert confidence.dtype == labels.dtype == np.uint8 and confidence.shape == labels.shape == (2, 96, 160)
    expected_labels, expected = reference(confidence_models["checkpoint"], frames, reweight)
    assert np.abs(confidence - expected).max() <= 1 and (confidence == expected).mean() >= 0.99
    assert (expected < 250).mean() > 0.3 and np.ptp(expected) > 100  # spread levels: few saturated pixels
    assert (labels == expected_labels).mean() >= 0.999
    # Segmenter.process: the pair, for one frame of any size
    frame = np.asarray(Image.fromarray(frames[0]).resize((256, 128), Image.BILINEAR))
    pair = seg.process(frame)
    assert isinstance(pair, tuple) and len(pair) == 2
    one = seg.backend.infer(seg.prepare(frame)[None])
    np.testing.assert_array_equal(pair[0], one.labels[0])
    np.testing.assert_array_equal(pair[1], one.confidence[0])


def test_a_model_without_confidence_gives_labels_alone(graphs: dict[str, Path]) -> None:
    seg = Segmenter(graphs["portable"])
    result = seg.backend.infer(np.zeros((1, 64, 128, 3), np.uint8))
    assert isinstance(result, Inference) and result.confidence is None and result.labels.shape == (1, 96, 160)
    assert isinstance(seg.process(np.zeros((64, 128, 3), np.uint8)), np.ndarray)
    with pytest.raises(TypeError):  # code written for an array of labels fails loudly, not silently
        result[0]


def test_confidence_pictures() -> None:
    frame = np.random.default_rng(5).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    labels = np.array([[0, 13, 10], [2, 2, 18]], dtype=np.uint8)
    levels = np.array([[0, 255, 128], [13, 200, 64]], dtype=np.uint8)  # 2 x 3, shown at 4 x 6 (nearest)
    at_frame = levels.repeat(2, axis=0).repeat(2, axis=1)
    grey = visualize(frame, labels, "confidence", confidence=levels)
    assert grey.shape == (4, 6, 3) and (grey == at_frame[..., None]).all()
    darkened = visualize(frame, labels, "overlay-confidence", alpha=0.5, confidence=levels)
    expected = overlay(frame, labels, 0.5).astype(float) * at_frame[..., None] / 255
    assert darkened.dtype == np.uint8 and np.abs(darkened - expected).max() <= 0.5
    assert (darkened[:2, :2] == 0).all()  # no confidence: black; full confidence: the overlay itself
    np.testing.assert_array_equal(darkened[:2, 2:4], overlay(frame, labels, 0.5)[:2, 2:4])
    for mode in ("confidence", "overlay-confidence"):
        with pytest.raises(ValueError, match="--confidence"):
            visualize(frame, labels, mode)

"""dannet-run with real GStreamer: sources and outputs by URI, the queue policy, signals and every error, and
the confidence output (--visualize confidence, --confidence-out).

Videos are made by GStreamer in the tests and decoded back by a plain GStreamer pipeline written here,
independent of the runtime's own source code.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx  # noqa: F401  loaded before GStreamer initialises (see runtime/gst.py)
import onnxruntime  # noqa: F401
import pytest
from conftest import TINY_SIZES
from PIL import Image

from runtime.classes import PALETTE
from runtime.gst import MediaError, gst, has_element
from runtime.pipeline import Aborted, FrameQueue, Pipeline, PipelineOptions, run
from runtime.segmenter import Segmenter
from runtime.sinks import NullSink
from runtime.sources import CaptureOptions, open_source
from runtime.uris import parse_input

try:
    Gst = gst()
except MediaError:
    pytest.skip("GStreamer/PyGObject not installed (scripts/setup.sh installs them)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
FRAME_H, FRAME_W = TINY_SIZES["output_size"]  # the tiny graph's output size: labels land on frames without resizing


@pytest.fixture(scope="module")
def model(tiny_graphs: dict[str, Path]) -> Path:
    return tiny_graphs["portable"]


def gst_run(description: str) -> None:
    """Run a gst-launch description to its end (videos for the tests)."""
    pipeline = Gst.parse_launch(description)
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert message is not None and message.type == Gst.MessageType.EOS, description


def make_video(path: Path, frames: int, pattern: str = "ball", muxer: str = "matroskamux") -> Path:
    gst_run(f"videotestsrc num-buffers={frames} pattern={pattern} ! video/x-raw,width={FRAME_W},height={FRAME_H},"
            f"framerate=30/1 ! videoconvert ! video/x-raw,format=I420 ! x264enc ! {muxer} ! "
            f"filesink location={path}")
    return path


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video file as RGB arrays, through decodebin."""
    pipeline = Gst.parse_launch(f"filesrc location={path} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! "
                                "appsink name=out sync=false")
    sink, frames = pipeline.get_by_name("out"), []
    pipeline.set_state(Gst.State.PLAYING)
    while (sample := sink.try_pull_sample(10 * Gst.SECOND)) is not None:
        s = sample.get_caps().get_structure(0)
        w, h = s.get_value("width"), s.get_value("height")
        buffer = sample.get_buffer()
        data = np.frombuffer(buffer.extract_dup(0, buffer.get_size()), np.uint8)
        frames.append(data.reshape(h, -1)[:, : 3 * w].reshape(h, w, 3))
    error = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert error is None, f"{path} does not decode: {error.parse_error()[0].message}"
    return frames


def dannet_run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def summary_of(stats_json: Path) -> dict:
    reports = [json.loads(line) for line in stats_json.read_text().splitlines()]
    assert reports[-1]["summary"] is True
    return reports[-1]


def written_so_far(stats_json: Path) -> int:
    """Pictures written up to the last periodic report (each report counts its own window)."""
    lines = stats_json.read_text().splitlines() if stats_json.exists() else []
    return sum(json.loads(line)["written"] for line in lines)


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition`` every 0.2 s for up to ``seconds``; its last value."""
    deadline = time.time() + seconds
    while time.time() < deadline and not condition():
        time.sleep(0.2)
    return condition()


def rtsp_camera(model: Path, port: int) -> subprocess.Popen:
    """A live RTSP camera for the tests: dannet-run serving test:// at rtsp://127.0.0.1:``port``/cam, returned once
    it says it is serving (however long a loaded machine takes to get there). Kill it to lose the camera; call
    again to bring it back."""
    server = subprocess.Popen([sys.executable, "-m", "runtime.cli", "--model", str(model), "--input", "test://",
                               "--input-size", f"{FRAME_H}x{FRAME_W}", "--output", f"rtsp://@:{port}/cam",
                               "--stats-interval", "0"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    serving = threading.Event()

    def read_stdout() -> None:  # to its end, so that the server never blocks on a full pipe
        for line in server.stdout:
            if line.startswith("dannet-run: serving rtsp://"):
                serving.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    if not serving.wait(60):
        server.kill()  # not left running behind the failed test
        pytest.fail(f"the RTSP camera on port {port} did not start serving (exit {server.wait()})")
    return server


def interrupted_run(args: list[str], stats: Path, after: int, sig: int = signal.SIGINT) -> tuple[int, str, str]:
    """dannet-run ``args`` reporting to ``stats`` every 0.2 s, sent ``sig`` once more than ``after`` pictures are
    written (or after 90 s): ``(exit code, stdout, stderr)``."""
    process = subprocess.Popen([sys.executable, "-m", "runtime.cli", *args, "--stats-interval", "0.2", "--stats-json",
                                str(stats)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: written_so_far(stats) > after, 90)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


def night_frames(folder: Path, count: int) -> list[np.ndarray]:
    """Dark noisy frames with a lit patch, written as PNGs (an image-folder input)."""
    rng, frames = np.random.default_rng(0), []
    folder.mkdir()
    for i in range(count):
        frame = rng.integers(0, 60, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
        frame[20:50, 30 + 10 * i: 90 + 10 * i] = 220
        Image.fromarray(frame).save(folder / f"night_{i:02d}.png")
        frames.append(frame)
    return frames


def test_test_source_to_mp4_decodes_back_with_every_frame(model: Path, tmp_path: Path) -> None:
    out, stats = tmp_path / "out.mp4", tmp_path / "stats.jsonl"
    result = dannet_run("--model", str(model), "--input", "test://ball", "--input-size", f"{FRAME_H}x{FRAME_W}",
                        "--frames", "12", "--queue-size", "16", "--output", f"file://{out}", "--visualize", "both",
                        "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    summary = summary_of(stats)
    frames = decode(out)
    assert summary["captured"] == 12 and len(frames) == summary["written"] == 12 - summary["dropped"]
    assert frames[0].shape == (FRAME_H, 2 * FRAME_W, 3)  # overlay | mask
    assert set(summary["stages"]) >= {"capture", "inference", "overlay", "output", "end_to_end"}
    assert "temporal" not in summary["stages"]  # no --temporal: no stabiliser stage
    assert "frames: 12 captured" in result.stdout


def test_mkv_file_keeps_every_frame_and_size(model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mkv", 15)
    out, stats = tmp_path / "out.mkv", tmp_path / "stats.jsonl"
    result = dannet_run("--model", str(model), "--input", str(clip), "--output", str(out), "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    frames = decode(out)
    assert len(frames) == 15 and frames[0].shape == (FRAME_H, FRAME_W, 3)
    assert summary_of(stats)["dropped"] == 0


def test_mp4_mask_colours_are_the_palette(model: Path, tmp_path: Path) -> None:
    """A still test pattern: the labels of that frame, coloured by the palette, is what the video shows."""
    clip = make_video(tmp_path / "smpte.mp4", 6, pattern="smpte", muxer="mp4mux")
    out = tmp_path / "mask.mp4"
    result = dannet_run("--model", str(model), "--input", f"file://{clip}", "--output", f"file://{out}",
                        "--visualize", "mask", "--bitrate", "8000")
    assert result.returncode == 0, result.stderr
    labels = Segmenter(model).process(decode(clip)[0])
    frames = decode(out)
    assert len(frames) == 6
    # H.264 and the RGB <-> YUV round trip move colours by a few levels: read each pixel back as the
    # nearest palette colour, which must be the label's colour nearly everywhere (edges blur)
    distance = ((frames[-1][:, :, None].astype(int) - PALETTE[None, None].astype(int)) ** 2).sum(-1)
    assert (distance.argmin(-1) == labels).mean() > 0.95


def test_image_folder_to_png_folder_is_exactly_the_palette(model: Path, tmp_path: Path) -> None:
    frames = night_frames(tmp_path / "in", 3)
    seg = Segmenter(model)
    for mode, alpha in (("mask", "0.5"), ("overlay", "1.0"), ("overlay", "0.5")):
        out = tmp_path / f"out_{mode}_{alpha}"
        result = dannet_run("--model", str(model), "--input", str(tmp_path / "in"), "--output", f"{out}/",
                            "--visualize", mode, "--alpha", alpha)
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in out.iterdir()) == [f"night_{i:02d}.png" for i in range(3)]
        for i, frame in enumerate(frames):
            picture = np.asarray(Image.open(out / f"night_{i:02d}.png")).astype(int)
            colours = PALETTE[seg.process(frame)].astype(int)
            if alpha == "1.0" or mode == "mask":
                np.testing.assert_array_equal(picture, colours)
            else:  # half frame, half palette, rounded
                assert np.abs(picture - (frame.astype(int) + colours) / 2).max() <= 1


def test_glob_input_null_output_and_loop(model: Path, tmp_path: Path) -> None:
    night_frames(tmp_path / "in", 2)
    stats = tmp_path / "stats.jsonl"
    result = dannet_run("--model", str(model), "--input", str(tmp_path / "in" / "*.png"), "--output", "null://",
                        "--loop", "2", "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    summary = summary_of(stats)
    assert summary["captured"] == summary["processed"] == summary["written"] == 6


class SlowBackend:
    """A real backend made slow: inference falls behind a live camera."""

    def __init__(self, backend, seconds: float) -> None:
        self.backend, self.seconds, self.name, self.info = backend, seconds, "slow", backend.info

    def infer(self, frames: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return self.backend.infer(frames)


def slow_segmenter(model: Path, seconds: float) -> Segmenter:
    seg = Segmenter(model)
    seg.backend = SlowBackend(seg.backend, seconds)
    return seg


def test_live_source_drops_oldest_frames_with_bounded_queues(model: Path) -> None:
    source = open_source(parse_input("test://"), CaptureOptions(size=(48, 64), rate=100))
    pipeline = Pipeline(slow_segmenter(model, 0.05), source, NullSink(),
                        PipelineOptions(max_frames=150, queue_size=3, stats_interval_s=0), say=lambda s: None)
    summary = pipeline.run()
    assert summary["captured"] == 150
    assert summary["dropped"] > 60  # 100 fps in, at most 20 fps through inference
    assert summary["processed"] == summary["written"] == summary["captured"] - summary["dropped"]
    assert summary["queue_high_water"] <= 3


@pytest.mark.parametrize("camera", ["videotestsrc is-live=true name=camera",
                                    "videotestsrc is-live=true ! jpegenc name=camera"], ids=["raw", "mjpeg"])
def test_a_v4l2_camera_is_asked_for_the_input_size_and_rate(camera: str) -> None:
    """--input-size/--input-rate reach the camera (caps right after v4l2src), raw or MJPEG, not only a scaler after
    decodebin: the description, with v4l2src replaced by a test source that offers every mode (videotestsrc, and
    jpegenc for an MJPEG camera), must have the camera itself send 48x64 at 25 fps, not its default 240x320."""
    from fractions import Fraction

    from runtime.sources import source_description
    from runtime.uris import InputSpec

    spec = InputSpec("v4l2:///dev/video0", "v4l2", "/dev/video0")
    description = source_description(spec, CaptureOptions(size=(48, 64), rate=25))
    assert description.startswith('v4l2src device="/dev/video0" ! ')
    pipeline = Gst.parse_launch(description.replace('v4l2src device="/dev/video0"', camera, 1))
    try:
        pipeline.set_state(Gst.State.PLAYING)
        sample = pipeline.get_by_name("frames").try_pull_sample(5 * Gst.SECOND)
        assert sample is not None, "no frame: the description did not negotiate"
        sent = pipeline.get_by_name("camera").get_static_pad("src").get_current_caps().get_structure(0)
        rate = sent.get_fraction("framerate")
        assert (sent.get_value("width"), sent.get_value("height"), Fraction(rate[1], rate[2])) == (64, 48, 25)
        assert sent.get_name() == ("image/jpeg" if "jpegenc" in camera else "video/x-raw")
    finally:
        pipeline.set_state(Gst.State.NULL)


def test_files_keep_every_frame_when_inference_is_slow(model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mkv", 12)
    source = open_source(parse_input(str(clip)))
    summary = Pipeline(slow_segmenter(model, 0.05), source, NullSink(),
                       PipelineOptions(queue_size=2, stats_interval_s=0), say=lambda s: None).run()
    assert summary["captured"] == summary["written"] == 12 and summary["dropped"] == 0


def test_frame_queue_policies() -> None:
    dropped = []
    live = FrameQueue(2, drop_oldest=True, on_drop=lambda: dropped.append(1))
    for i in range(5):
        live.put(i)
    live.close()
    assert [live.get(), live.get(), live.get()] == [3, 4, None] and len(dropped) == 3
    files = FrameQueue(1, drop_oldest=False)
    files.put(0)
    files.abort()  # a put waiting for room gives up when the pipeline aborts
    with pytest.raises(Aborted):
        files.put(1)


@pytest.mark.parametrize("sig, suffix", [(signal.SIGINT, "mp4"), (signal.SIGTERM, "mkv")])
def test_signal_finishes_a_playable_file_and_exits_0(model: Path, tmp_path: Path, sig: int, suffix: str) -> None:
    out, stats = tmp_path / f"out.{suffix}", tmp_path / "stats.jsonl"
    code, stdout, stderr = interrupted_run(["--model", str(model), "--input", "test://", "--input-size",
                                            f"{FRAME_H}x{FRAME_W}", "--output", str(out)], stats, after=2, sig=sig)
    assert code == 0, stderr
    summary = summary_of(stats)
    assert summary["written"] >= 3 and len(decode(out)) == summary["written"]
    assert f"{signal.Signals(sig).name}: stopping" in stdout


def test_truncated_file_ends_cleanly_at_the_last_readable_frame(model: Path, tmp_path: Path) -> None:
    data = make_video(tmp_path / "clip.mkv", 30).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    stats = tmp_path / "stats.jsonl"
    result = dannet_run("--model", str(model), "--input", str(cut), "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    assert 5 < summary_of(stats)["written"] < 30


def test_rtsp_output_serves_clients_and_rtsp_input_reconnects(model: Path, tmp_path: Path) -> None:
    """One dannet-run serves rtsp://; a second reads it, loses it (server killed), reconnects when it returns, and
    its --temporal stabiliser starts afresh then (test:// is a still picture: no scene cut could do it instead)."""
    port = 18554 + os.getpid() % 1000
    stats = tmp_path / "client.jsonl"
    server = rtsp_camera(model, port)
    client = subprocess.Popen([sys.executable, "-m", "runtime.cli", "--model", str(model), "--input",
                               f"rtsp://127.0.0.1:{port}/cam", "--reconnect", "8", "--temporal", "hysteresis",
                               "--stats-interval", "0.5", "--stats-json", str(stats)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def counted(name: str) -> int:
        lines = stats.read_text().splitlines() if stats.exists() else []
        return sum(json.loads(line)[name] for line in lines)

    def captured() -> int:
        return counted("captured")

    try:
        assert wait_for(lambda: captured() > 3, 60), "no frames over RTSP"
        resets_before_the_loss = counted("temporal_resets")
        server.kill()  # the camera goes away
        server.wait()
        before = captured()
        server = rtsp_camera(model, port)
        assert wait_for(lambda: captured() > before + 3, 90), "no frames after the server came back"
    finally:
        client.send_signal(signal.SIGINT)
        stdout, stderr = client.communicate(timeout=60)
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert client.returncode == 0, stderr
    assert "reconnecting in" in stdout and summary_of(stats)["reconnects"] >= 1
    assert resets_before_the_loss == 0 and summary_of(stats)["temporal_resets"] >= 1


def _one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dannet-run: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_every_error_is_one_line_and_non_zero(model: Path, tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", 5, muxer="mp4mux")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    notes = tmp_path / "notes.txt"
    notes.write_text("a text file given as a video\n")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 64)
    m = ["--model", str(model)]
    cases = [
        ([*m, "--input", "http://example.com/x.mp4"], ["unsupported input http://"]),
        ([*m, "--input", str(tmp_path / "missing.mp4")], ["no such file"]),
        ([*m, "--input", "v4l2:///dev/video97"], ["no camera at /dev/video97"]),
        ([*m, "--input", "csi://0"], ["nvarguscamerasrc"]),
        ([*m, "--input", "rtsp://127.0.0.1:9/none"], ["rtsp://127.0.0.1:9/none"]),
        ([*m, "--input", str(junk)], ["junk.mp4"]),
        ([*m, "--input", str(notes)], ["notes.txt: not a video GStreamer can read"]),
        ([*m, "--input", "test://", "--output", str(tmp_path / "out.wmv")], ["unsupported output file type"]),
        ([*m, "--input", "test://", "--output", str(tmp_path / "out.mp4"), "--codec", "mjpeg"], ["cannot hold mjpeg"]),
        ([*m, "--input", "test://", "--output", str(tmp_path / "nofolder" / "out.mp4")], ["does not exist"]),
        ([*m, "--input", "test://", "--output", "display://0"], ["no display"]),
        ([*m, "--input", "test://", "--output", "ftp://x"], ["unsupported output ftp://"]),
        (["--model", str(tmp_path / "none.onnx"), "--input", "test://"], ["no such model file"]),
        (["--model", str(engine), "--input", "test://", "--backend", "onnxruntime"], ["cannot run in ONNX Runtime"]),
        (["--model", str(model), "--input", "test://", "--backend", "tensorrt"], ["build an engine first"]),
        (["--model", str(tiny_graphs["plugin"]), "--input", "test://"], ["plugin tail"]),
        (["--model", str(tiny_graphs["checkpoint"]), "--input", "test://"], ["dannet-export"]),
    ]
    if not has_element("x265enc") and not has_element("nvh265enc") and not has_element("nvv4l2h265enc"):
        cases.append(([*m, "--input", "test://", "--output", str(tmp_path / "o.mkv"), "--codec", "h265"],
                      ["no h265 encoder"]))
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    for argv, words in cases:
        _one_line_error(dannet_run(*argv, "--frames", "3", env=env), *words)
    # a codec this GStreamer cannot decode: H.264 with every H.264 decoder ranked out of decodebin's reach
    h264 = Gst.Caps.from_string("video/x-h264")
    decoders = [f.get_name() for f in Gst.ElementFactory.list_get_elements(
        Gst.ELEMENT_FACTORY_TYPE_DECODER | Gst.ELEMENT_FACTORY_TYPE_MEDIA_VIDEO, Gst.Rank.NONE)
        if f.can_sink_any_caps(h264)]
    assert decoders, "no H.264 decoder at all: the mp4 tests above could not have passed"
    ranks = ",".join(f"{name}:NONE" for name in decoders)
    _one_line_error(dannet_run(*m, "--input", str(clip), env={"GST_PLUGIN_FEATURE_RANK": ranks}),
                    "no GStreamer decoder")
    usage = dannet_run(*m, "--input", "test://", "--alpha", "1.5")
    assert usage.returncode == 2 and "--alpha" in usage.stderr


def test_help_explains_uris() -> None:
    result = dannet_run("--help")
    assert result.returncode == 0
    for word in ("csi://0", "v4l2:///dev/video0", "rtsp://@:8554", "null://", "--stats-json", "--visualize"):
        assert word in result.stdout


def test_torch_backend_through_the_pipeline(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    from export import ExportSpec, to_torch_program

    program = to_torch_program(tiny_graphs["checkpoint"], tmp_path / "tiny.pt2",
                               ExportSpec(input_size=(64, 128), output_size=(FRAME_H, FRAME_W)), say=lambda s: None)
    frames = night_frames(tmp_path / "in", 2)
    result = dannet_run("--model", str(program), "--input", str(tmp_path / "in"), "--output", f"{tmp_path}/out/",
                        "--visualize", "mask")
    assert result.returncode == 0, result.stderr
    assert "-> torch ->" in result.stdout
    ort = Segmenter(tiny_graphs["portable"])
    for i, frame in enumerate(frames):
        picture = np.asarray(Image.open(tmp_path / "out" / f"night_{i:02d}.png"))
        assert (picture == PALETTE[ort.process(frame)]).all(-1).mean() > 0.999


def test_a_folder_of_mixed_sizes_makes_a_video_at_the_first_pictures_size(model: Path, tmp_path: Path) -> None:
    """Images of two sizes into one video: every frame comes out at the first picture's size, the smaller
    pictures stretched to it (not pushed under the first one's caps, which garbles them), said once. With
    --alpha 0 the overlay is the image itself."""
    (tmp_path / "in").mkdir()
    large = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    large[:, : FRAME_W // 2] = (200, 40, 40)  # left half red
    small = np.zeros((FRAME_H // 2, FRAME_W // 2, 3), np.uint8)
    small[: FRAME_H // 4] = (40, 200, 40)  # top half green
    for name, image in (("0", large), ("1", small), ("2", small)):
        Image.fromarray(image).save(tmp_path / "in" / f"{name}.png")
    said: list[str] = []
    out = tmp_path / "mixed.mkv"
    run(str(model), str(tmp_path / "in"), str(out), alpha=0.0, stats_interval_s=0, say=said.append)
    frames = decode(out)
    assert [frame.shape for frame in frames] == [(FRAME_H, FRAME_W, 3)] * 3
    stretched = small.repeat(2, axis=0).repeat(2, axis=1).astype(int)  # twice each way
    assert np.abs(frames[0].astype(int) - large).mean() < 6
    for frame in frames[1:]:
        assert np.abs(frame.astype(int) - stretched).mean() < 6
    assert sum("stretched" in line for line in said) == 1


def test_odd_sized_pictures_are_encoded_at_the_next_even_size(model: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for i in range(3):
        Image.fromarray(np.full((97, 161, 3), 40 * i, dtype=np.uint8)).save(tmp_path / "in" / f"{i}.png")
    out = tmp_path / "odd.mp4"
    result = dannet_run("--model", str(model), "--input", str(tmp_path / "in"), "--output", str(out))
    assert result.returncode == 0, result.stderr
    frames = decode(out)
    assert len(frames) == 3 and frames[0].shape == (98, 162, 3)  # x264 encodes 4:2:0: even sizes only


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (scripts/setup.sh installs it)")
def test_display_output_on_a_virtual_screen(model: Path, tmp_path: Path) -> None:
    display = f":{90 + os.getpid() % 100}"
    screen = subprocess.Popen(["Xvfb", display, "-screen", "0", "640x480x24"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        stats = tmp_path / "stats.jsonl"
        result = dannet_run("--model", str(model), "--input", "test://", "--input-size", f"{FRAME_H}x{FRAME_W}",
                            "--frames", "15", "--output", "display://0", "--stats-json", str(stats),
                            env={"DISPLAY": display, "WAYLAND_DISPLAY": ""})
    finally:
        screen.terminate()
        screen.wait()
    assert result.returncode == 0, result.stderr
    summary = summary_of(stats)
    assert summary["captured"] == 15 and summary["written"] == 15 - summary["dropped"] > 0


def test_lost_live_source_stops_cleanly_or_gives_up(model: Path, tmp_path: Path) -> None:
    """``--reconnect 0``: a lost camera ends the run (exit 0, output finished); ``--reconnect 1``: one
    attempt, then a one-line error (exit 1) with the output still finished."""
    port = 19554 + os.getpid() % 1000
    server = rtsp_camera(model, port)
    clients = {n: subprocess.Popen([sys.executable, "-m", "runtime.cli", "--model", str(model), "--input",
                                    f"rtsp://127.0.0.1:{port}/cam", "--reconnect", str(n), "--output",
                                    str(tmp_path / f"out{n}.mkv"), "--stats-interval", "0.5", "--stats-json",
                                    str(tmp_path / f"stats{n}.jsonl")], cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for n in (0, 1)}
    try:
        wait_for(lambda: all(written_so_far(tmp_path / f"stats{n}.jsonl") > 0 for n in (0, 1)), 60)
    finally:
        server.kill()
        server.wait()
    (out0, err0), (out1, err1) = (clients[n].communicate(timeout=90) for n in (0, 1))
    assert clients[0].returncode == 0, err0
    assert "stopping (--reconnect 0)" in out0
    _one_line_error(subprocess.CompletedProcess([], clients[1].returncode, out1, err1), "gave up after 1")
    for n in (0, 1):
        assert len(decode(tmp_path / f"out{n}.mkv")) == summary_of(tmp_path / f"stats{n}.jsonl")["written"] > 0


# --- confidence ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def confidence_model(tiny_confidence: dict[str, Path]) -> Path:
    """The tiny checkpoint, made unsure (tests/confidence_checkpoint.py), exported with --confidence."""
    return tiny_confidence["onnx"]


def test_confidence_png_output_is_exactly_the_levels_and_the_overlay_darkened_by_them(confidence_model: Path,
                                                                                     tmp_path: Path) -> None:
    frames = night_frames(tmp_path / "in", 3)
    result = dannet_run("--model", str(confidence_model), "--input", str(tmp_path / "in"), "--output",
                        f"{tmp_path}/shown/", "--visualize", "overlay-confidence", "--confidence-out",
                        f"{tmp_path}/levels/")
    assert result.returncode == 0, result.stderr
    assert "+ confidence ->" in result.stdout
    seg = Segmenter(confidence_model)
    for i, frame in enumerate(frames):
        labels, levels = seg.process(frame)
        assert (levels < 250).mean() > 0.3 and np.ptp(levels) > 100  # spread: few saturated pixels
        written = Image.open(tmp_path / "levels" / f"night_{i:02d}.png")
        assert written.mode == "L"  # 8-bit grey
        np.testing.assert_array_equal(np.asarray(written), levels)
        shown = np.asarray(Image.open(tmp_path / "shown" / f"night_{i:02d}.png")).astype(float)
        # half frame, half palette (rounded), then scaled by the confidence (rounded)
        expected = (frame.astype(float) + PALETTE[labels]) / 2 * levels[..., None] / 255
        assert np.abs(shown - expected).max() <= 1.5


def test_confidence_videos_show_the_levels(confidence_model: Path, tmp_path: Path) -> None:
    """A still test pattern: every frame of the grey videos (--visualize confidence, at the frame size, and
    --confidence-out, at the model's output size) is that frame's levels, within H.264's loss."""
    clip = make_video(tmp_path / "smpte.mkv", 6, pattern="smpte")
    shown_video, levels_video = tmp_path / "shown.mp4", tmp_path / "levels.mkv"
    result = dannet_run("--model", str(confidence_model), "--input", str(clip), "--output", str(shown_video),
                        "--visualize", "confidence", "--confidence-out", f"file://{levels_video}", "--bitrate", "8000")
    assert result.returncode == 0, result.stderr
    _, levels = Segmenter(confidence_model).process(decode(clip)[0])
    assert (levels < 250).mean() > 0.3 and np.ptp(levels) > 100
    for video in (shown_video, levels_video):
        frames = decode(video)
        assert len(frames) == 6 and frames[-1].shape == (FRAME_H, FRAME_W, 3)
        error = np.abs(frames[-1].astype(int) - levels[..., None])
        assert np.median(error) <= 4 and (error <= 12).mean() > 0.95, (video.name, np.median(error),
                                                                        (error <= 12).mean())


def test_sigint_finishes_the_confidence_video_too(confidence_model: Path, tmp_path: Path) -> None:
    out, levels, stats = tmp_path / "out.mp4", tmp_path / "levels.mp4", tmp_path / "stats.jsonl"
    code, _, stderr = interrupted_run(["--model", str(confidence_model), "--input", "test://", "--input-size",
                                       f"{FRAME_H}x{FRAME_W}", "--output", str(out), "--confidence-out", str(levels)],
                                      stats, after=2)
    assert code == 0, stderr
    written = summary_of(stats)["written"]
    assert written >= 3 and len(decode(out)) == len(decode(levels)) == written


def in_process(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    """``dannet-run`` in this process (its exit code and stderr): cheaper than a process for refusals."""
    from runtime.cli import main

    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_confidence_errors_are_one_line(model: Path, confidence_model: Path, tmp_path: Path, capsys) -> None:
    """Asked of a model exported without --confidence, the confidence is refused (exit 2); --confidence-out fails
    as --output does: a bad URI, a missing folder (2), a folder where the file should be (4)."""
    (tmp_path / "folder.mp4").mkdir()
    run = ["--input", "test://", "--frames", "3"]
    cases = [
        ([*run, "--model", str(model), "--visualize", "confidence"], 2,
         ["--visualize confidence", "has no confidence output", "--confidence"]),
        ([*run, "--model", str(model), "--visualize", "overlay-confidence", "--confidence-out", f"{tmp_path}/c/"], 2,
         ["--visualize overlay-confidence and --confidence-out", str(model)]),
        ([*run, "--model", str(confidence_model), "--confidence-out", "ftp://x"], 2, ["unsupported output ftp://"]),
        ([*run, "--model", str(confidence_model), "--confidence-out", str(tmp_path / "none" / "c.mp4")], 2,
         ["does not exist"]),
        ([*run, "--model", str(confidence_model), "--confidence-out", str(tmp_path / "folder.mp4")], 4,
         ["--confidence-out", "folder.mp4"]),
        ([*run, "--model", str(confidence_model), "--output", str(tmp_path / "o.mp4"), "--confidence-out",
          f"file://{tmp_path}/o.mp4"], 2, ["--confidence-out", "the same destination as --output"]),
        ([*run, "--model", str(confidence_model), "--output", f"{tmp_path}/pictures/", "--confidence-out",
          f"{tmp_path}/pictures/%05d.png"], 2, ["the same destination as --output"]),
    ]
    for argv, code, words in cases:
        returned, stderr = in_process(capsys, *argv)
        _one_line_error(subprocess.CompletedProcess(argv, returned, "", stderr), *words)
        assert returned == code, (argv, returned, stderr)
    assert not (tmp_path / "c").exists()  # refused before any output was opened
    usage = dannet_run("--help")
    assert "--confidence-out" in usage.stdout and "overlay-confidence" in usage.stdout

"""Several cameras (dannet-run --input A --input B ...) through real GStreamer: each output shows its own
camera's labels and each --confidence-out its own camera's confidence levels, per-camera statistics, the
batching policy, a slow output holding back its own camera only, cameras at different rates taking turns,
SIGINT finishing every output, one-line errors (no two outputs sharing a destination).

Expected labels come from ``Segmenter.process`` on frames decoded by the tests' own GStreamer pipeline
(tests/test_pipeline.py's ``decode``), one frame at a time, independent of the multi-camera runner. Tests of
scheduling (rates, who goes first) use ``FixedCostModel``, a model of known cost whose labels they do not read.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from test_pipeline import (FRAME_H, FRAME_W, REPO, confidence_model, dannet_run, decode, in_process,  # noqa: F401
                           interrupted_run, make_video, rtsp_camera, summary_of, wait_for)

from runtime.backends import Inference, ModelInfo
from runtime.classes import PALETTE
from runtime.errors import EXIT_FAILED
from runtime.gst import MediaError
from runtime.multicam import Intake, MultiCamera
from runtime.pipeline import PipelineOptions
from runtime.segmenter import Segmenter
from runtime.sinks import NullSink
from runtime.sources import CaptureOptions, Frame, SourceLost, open_source
from runtime.uris import parse_input


@pytest.fixture(scope="module")
def model(tiny_graphs: dict[str, Path]) -> Path:
    return tiny_graphs["portable"]


@pytest.fixture(scope="module")
def dynamic_model(tiny_dynamic: Path) -> Path:
    """The tiny checkpoint exported with a dynamic batch (and size): frames of several cameras in one call."""
    return tiny_dynamic


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def frame(index: int) -> Frame:
    return Frame(np.zeros((2, 2, 3), np.uint8), index, time.perf_counter(), time.perf_counter())


#: outputs that always have room for another picture
ROOM = [lambda: True, lambda: True]


class FixedCostModel:
    """What ``MultiCamera`` uses of a ``Segmenter``, around a batch-1 model that takes ``seconds`` a call and
    labels every pixel 0; ``seen`` is given each call's frames. The tests of scheduling need inference of a
    known small cost: the tiny graph takes about 0.1 s a frame on this machine's 2 shared cores."""

    def __init__(self, seconds: float, seen: Callable[[np.ndarray], None] = lambda frames: None) -> None:
        self.seconds, self.seen = seconds, seen
        self.info = ModelInfo(input_size=None, output_size=(FRAME_H, FRAME_W))
        self.backend = SimpleNamespace(name="fixed cost", max_batch=1, infer=self.infer)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return image

    def infer(self, frames: np.ndarray) -> Inference:
        time.sleep(self.seconds)
        self.seen(frames)
        return Inference(np.zeros(frames.shape[:3], np.uint8))


class SlowSink(NullSink):
    """An output that takes ``seconds`` a picture: a PNG folder, a software encoder or a disk that is slow."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def write(self, picture: np.ndarray, frame: Frame, timestamp: float) -> bool:
        time.sleep(self.seconds)
        return True


class BehindSink(NullSink):
    """A live output whose consumer is behind for every third picture (as an RTSP stream's encoder can be): it
    lets those go."""

    def write(self, picture: np.ndarray, frame: Frame, timestamp: float) -> bool:
        return frame.index % 3 != 0


# --- the batching policy -----------------------------------------------------------------------------------

def test_intake_takes_the_newest_live_frame_and_every_file_frame() -> None:
    drops = [0, 0]
    counters = [lambda: drops.__setitem__(0, drops[0] + 1), lambda: drops.__setitem__(1, drops[1] + 1)]
    intake = Intake([True, False], capacity=3, on_drop=counters, has_room=ROOM)
    for i in range(5):  # the live camera overflows its queue of 3: two dropped on the way in
        intake.put(0, frame(i))
    intake.put(1, frame(0))
    intake.put(1, frame(1))
    step, _ = intake.take(0.0)
    assert [(camera, f.index) for camera, f in step] == [(0, 4), (1, 0)]  # newest live, oldest file frame
    assert drops == [4, 0]  # 2 on the way in + 2 older ones skipped at the take
    assert [(camera, f.index) for camera, f in intake.take(0.0)[0]] == [(1, 1)]  # nothing new live: skipped


def test_intake_waits_for_a_silent_camera_only_until_the_deadline() -> None:
    intake = Intake([True, True], capacity=2, on_drop=[lambda: None, lambda: None], has_room=ROOM)
    intake.put(0, frame(0))
    start = time.perf_counter()
    step, _ = intake.take(0.2)
    waited = time.perf_counter() - start
    assert [camera for camera, _ in step] == [0] and 0.15 < waited < 1.0
    # a frame from the other camera within the deadline ends the wait at once, in one step
    intake.put(0, frame(1))
    threading.Timer(0.05, intake.put, (1, frame(0))).start()
    start = time.perf_counter()
    step, _ = intake.take(5.0)
    assert [camera for camera, _ in step] == [0, 1] and time.perf_counter() - start < 2.0


def test_intake_ends_once_every_camera_is_closed_and_drained() -> None:
    """Each camera's end is reported once, in the step that takes its last frame or at once when nothing is
    left; then an empty step: inference ends."""
    intake = Intake([False, False], capacity=2, on_drop=[lambda: None, lambda: None], has_room=ROOM)
    intake.put(1, frame(0))
    intake.close(0)
    intake.close(1)
    taken, ended = intake.take(1.0)
    assert [camera for camera, _ in taken] == [1] and ended == [0, 1]
    assert intake.take(1.0) == ([], [])


def test_a_camera_that_ends_is_reported_while_the_others_are_silent() -> None:
    """Camera 0 (a file) ends while live camera 1 sends nothing: the waiting step returns its end at once, so its
    output finishes now, not when camera 1 next sends a frame."""
    intake = Intake([False, True], capacity=2, on_drop=[lambda: None, lambda: None], has_room=ROOM)
    intake.put(0, frame(0))
    assert [(camera, f.index) for camera, f in intake.take(0.0)[0]] == [(0, 0)]
    steps: list[tuple[list, list[int]]] = []
    taker = threading.Thread(target=lambda: steps.append(intake.take(5.0)), daemon=True)
    taker.start()
    taker.join(0.3)
    assert taker.is_alive() and not steps  # nothing to take, nothing ended: waiting
    intake.close(0)
    start = time.perf_counter()
    taker.join(2.0)
    assert steps == [([], [0])] and time.perf_counter() - start < 1.0  # no wait for camera 1's deadline


def test_intake_serves_a_camera_only_while_its_output_has_room() -> None:
    """Camera 0's output is full: the step takes camera 1's frame at once (no wait for camera 0), camera 0's
    live frames age out in its own queue and are counted as its own drops; with nothing else to take, the next
    step waits (an empty step would end inference) until camera 0's output makes room (``wake``), then takes its
    newest frame."""
    drops, room = [0, 0], [False, True]
    intake = Intake([True, True], capacity=2, on_drop=[lambda: drops.__setitem__(0, drops[0] + 1), lambda: None],
                    has_room=[lambda: room[0], lambda: room[1]])
    for i in range(3):
        intake.put(0, frame(i))
    intake.put(1, frame(0))
    start = time.perf_counter()
    assert [(camera, f.index) for camera, f in intake.take(5.0)[0]] == [(1, 0)]
    assert time.perf_counter() - start < 2.0 and drops == [1, 0]  # frame 0 dropped on the way in, 1 and 2 wait
    steps: list[list[tuple[int, Frame]]] = []
    taker = threading.Thread(target=lambda: steps.append(intake.take(0.0)[0]), daemon=True)
    taker.start()
    taker.join(0.3)
    assert taker.is_alive() and not steps  # waiting, not an empty step
    room[0] = True
    intake.wake()
    taker.join(2.0)
    assert [[(camera, f.index) for camera, f in step] for step in steps] == [[(0, 2)]] and drops == [2, 0]


@pytest.mark.parametrize("slow_input", ["live", "file"])
def test_a_slow_output_holds_back_its_own_camera_only(slow_input: str, tmp_path: Path) -> None:
    """Camera 0's output takes 0.3 s a picture; camera 1 (test://, 30 fps) writes to null://. Camera 1 keeps
    its rate (it fell to camera 0's, 3 pictures/s, its frames counted as dropped); a slow live camera's losses are
    counted as its own ``dropped``, a slow file keeps every frame; each camera's counters add up."""
    size = CaptureOptions((FRAME_H, FRAME_W))
    slow = "test://" if slow_input == "live" else str(make_video(tmp_path / "clip.mkv", 10))
    sources = [open_source(parse_input(uri), size) for uri in (slow, "test://ball")]
    runner = MultiCamera(FixedCostModel(0.002), sources, [SlowSink(0.3), NullSink()],
                         PipelineOptions(max_frames=60, stats_interval_s=0), say=lambda s: None)
    summary = runner.run()
    slowed, other = summary["cameras"]
    assert other["captured"] == 60 and other["written"] >= 0.7 * 60, other
    for camera in (slowed, other):
        assert camera["processed"] == camera["written"] == camera["captured"] - camera["dropped"], camera
    assert summary["dropped"] == slowed["dropped"] + other["dropped"]
    if slow_input == "live":
        assert slowed["captured"] == 60 and slowed["dropped"] >= 30, slowed
    else:
        assert slowed["written"] == 10 and slowed["dropped"] == 0, slowed


def test_pictures_an_output_let_go_are_counted_for_its_camera_and_said(tmp_path: Path) -> None:
    """Two 10-frame files; camera 0's output lets frames 0, 3, 6 and 9 go: they are still written (they went
    through the output stage) and counted as that camera's ``output_skipped``, in the totals and in its table;
    camera 1's table does not mention any."""
    clip = str(make_video(tmp_path / "clip.mkv", 10))
    lines: list[str] = []
    sources = [open_source(parse_input(clip), CaptureOptions((FRAME_H, FRAME_W))) for _ in range(2)]
    summary = MultiCamera(FixedCostModel(0.002), sources, [BehindSink(), NullSink()],
                          PipelineOptions(stats_interval_s=0), say=lines.append).run()
    behind, other = summary["cameras"]
    assert (behind["written"], behind["output_skipped"], other["written"], other["output_skipped"]) == (10, 4, 10, 0)
    assert summary["output_skipped"] == 4
    tables = [line for line in lines if line.startswith("camera ")]
    assert "4 skipped by an output behind" in tables[0] and "skipped by an output" not in tables[1]


def test_cameras_at_different_rates_take_turns_at_being_inferred_first() -> None:
    """A batch-1 model, two live cameras at 30 and 15 fps (test://black and test://white, told apart by their
    pictures): of the steps that infer a frame of each, each camera goes first in about half (the 15 fps camera
    went first in none: the turns rotated through whichever cameras had a frame, counted in steps). The run stops
    once 30 such steps were taken (about 2 s), however slowly a loaded machine gets there; 30 s is the backstop."""
    log: list[tuple[str, int]] = []  # ("step", frames taken), ("call", camera), as the inference thread did them
    both_steps = 30
    model = FixedCostModel(0.012, seen=lambda frames: log.append(("call", int(frames[0].mean() > 127))))
    sources = [open_source(parse_input(f"test://{pattern}"), CaptureOptions((48, 64), rate))
               for pattern, rate in (("black", 30), ("white", 15))]
    runner = MultiCamera(model, sources, [NullSink(), NullSink()], PipelineOptions(stats_interval_s=0),
                         say=lambda s: None)
    take = runner.intake.take

    def logged_take(wait_s: float) -> tuple[list[tuple[int, Frame]], list[int]]:
        taken, ended = take(wait_s)
        log.append(("step", len(taken)))
        if log.count(("step", 2)) == both_steps:
            runner.stop()
        return taken, ended

    runner.intake.take = logged_take
    backstop = threading.Timer(30, runner.stop)
    backstop.start()
    captured = [camera["captured"] for camera in runner.run()["cameras"]]
    backstop.cancel()
    assert captured[0] > 1.5 * captured[1]  # the rates are as meant
    firsts = [log[i + 1][1] for i, (what, frames) in enumerate(log) if what == "step" and frames == 2]
    assert len(firsts) >= both_steps and min(firsts.count(0), firsts.count(1)) >= 0.4 * len(firsts), firsts


def test_onnx_graphs_say_how_many_frames_one_call_takes(model: Path, dynamic_model: Path) -> None:
    """``max_batch``: 1 for a graph exported without --dynamic (ONNX Runtime refuses 2 frames), None for one
    exported with it (any number: 3 frames give 3 label maps)."""
    static, dynamic = Segmenter(model).backend, Segmenter(dynamic_model).backend
    frames = np.zeros((3, 64, 128, 3), np.uint8)
    assert static.max_batch == 1
    with pytest.raises(Exception, match="(?i)dimension"):
        static.infer(frames[:2])
    assert dynamic.max_batch is None
    assert dynamic.infer(frames).labels.shape == (3, FRAME_H, FRAME_W)


# --- through dannet-run --------------------------------------------------------------------------------------

def test_two_files_each_output_shows_its_own_camera(model: Path, tmp_path: Path) -> None:
    """Two different clips -> two PNG folders: output i holds exactly camera i's labels, every frame kept."""
    clips = [make_video(tmp_path / "smpte.mkv", 6, pattern="smpte"), make_video(tmp_path / "ball.mkv", 8)]
    outs, stats = [tmp_path / "out0", tmp_path / "out1"], tmp_path / "stats.jsonl"
    result = dannet_run("--model", str(model), "--input", str(clips[0]), "--input", f"file://{clips[1]}",
                        "--output", f"{outs[0]}/", "--output", f"{outs[1]}/", "--visualize", "mask",
                        "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    assert "one at a time" in result.stdout
    seg = Segmenter(model)
    for clip, out in zip(clips, outs):
        frames = decode(clip)
        pictures = sorted(out.iterdir())
        assert len(pictures) == len(frames)
        for source, picture in zip(frames, pictures):
            shown = np.asarray(Image.open(picture))
            assert (shown == PALETTE[seg.process(source)]).all(-1).mean() > 0.999, picture
    first = [np.asarray(Image.open(sorted(out.iterdir())[0])) for out in outs]
    # the cameras' labels differ on far more pixels than the 0.1% the comparison above forgives: a swap would fail
    assert (first[0] != first[1]).any(-1).mean() > 0.01
    summary = summary_of(stats)
    assert [c["written"] for c in summary["cameras"]] == [6, 8] and summary["written"] == 14
    assert [c["input"] for c in summary["cameras"]] == [str(clips[0]), f"file://{clips[1]}"]
    for camera in summary["cameras"]:
        assert camera["dropped"] == 0 and {"p50_ms", "p99_ms"} <= set(camera["stages"]["end_to_end"])


def test_dynamic_batch_graph_infers_the_cameras_in_one_call(dynamic_model: Path, tmp_path: Path) -> None:
    """Two clips (the graph keeps their size) through a dynamic-batch graph: fewer calls than frames, and each
    output still shows exactly its own camera's labels (inferred here one frame at a time)."""
    clips = [make_video(tmp_path / f"{pattern}.mkv", 6, pattern=pattern) for pattern in ("smpte", "ball")]
    outs, stats = [tmp_path / "out0", tmp_path / "out1"], tmp_path / "stats.jsonl"
    result = dannet_run("--model", str(dynamic_model), "--input", str(clips[0]), "--input", str(clips[1]),
                        "--output", f"{outs[0]}/", "--output", f"{outs[1]}/", "--visualize", "mask",
                        "--batch-wait-ms", "200", "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    assert "cameras are batched" in result.stdout
    summary = summary_of(stats)
    assert summary["written"] == 12 and summary["inference_calls"] < 12 and summary["mean_batch"] > 1
    seg = Segmenter(dynamic_model)
    for clip, out in zip(clips, outs):
        pictures = sorted(out.iterdir())
        assert len(pictures) == 6
        for source, picture in zip(decode(clip), pictures):
            expected = PALETTE[seg.process(source)]
            assert (np.asarray(Image.open(picture)) == expected).all(-1).mean() > 0.999, picture


def test_sigint_finishes_both_outputs(model: Path, tmp_path: Path) -> None:
    outs, stats = [tmp_path / "a.mp4", tmp_path / "b.mkv"], tmp_path / "stats.jsonl"
    code, stdout, stderr = interrupted_run(["--model", str(model), "--input", "test://", "--input", "test://ball",
                                            "--input-size", f"{FRAME_H}x{FRAME_W}", "--output", str(outs[0]),
                                            "--output", str(outs[1])], stats, after=6)
    assert code == 0, stderr
    assert "SIGINT: stopping" in stdout
    cameras = summary_of(stats)["cameras"]
    for out, camera in zip(outs, cameras):
        assert camera["written"] >= 1 and len(decode(out)) == camera["written"]
        assert camera["captured"] == camera["written"] + camera["dropped"]


def test_a_lost_camera_reconnects_while_the_other_keeps_running(model: Path, tmp_path: Path) -> None:
    """Camera 1 is an RTSP stream served by another dannet-run; it is killed and restarted. Camera 0
    (test://) keeps being written while camera 1 is away; camera 1 reconnects on its own."""
    port = 20554 + os.getpid() % 1000
    stats = tmp_path / "client.jsonl"
    server = rtsp_camera(model, port)
    client = subprocess.Popen([sys.executable, "-m", "runtime.cli", "--model", str(model), "--input", "test://",
                               "--input-size", f"{FRAME_H}x{FRAME_W}", "--input", f"rtsp://127.0.0.1:{port}/cam",
                               "--reconnect", "8", "--stats-interval", "0.5", "--stats-json", str(stats)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def reports() -> list[dict]:
        return [json.loads(line) for line in stats.read_text().splitlines()] if stats.exists() else []

    def windows() -> list[list[int]]:
        """Pictures written per camera in each periodic report so far."""
        return [[camera["written"] for camera in report["cameras"]] for report in reports()]

    try:
        assert wait_for(lambda: sum(w[1] for w in windows()) > 3, 60), "no frames over RTSP"
        server.kill()  # camera 1 goes away
        server.wait()
        lost_at = len(windows())
        assert wait_for(lambda: len(windows()) > lost_at + 4, 30)
        back = len(windows())  # before the camera returns: every report up to here is from while it was away
        server = rtsp_camera(model, port)
        assert wait_for(lambda: sum(w[1] for w in windows()[back:]) > 3, 90), "camera 1 did not come back"
    finally:
        client.send_signal(signal.SIGINT)
        stdout, stderr = client.communicate(timeout=60)
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert client.returncode == 0, stderr
    # reports while camera 1 was gone (its last frames may straggle in); a window cut short behind a stalled
    # report (a loaded machine) can be too narrow to hold one of camera 0's pictures, so those are left out
    every = reports()
    away = [[camera["written"] for camera in report["cameras"]]
            for before, report in zip(every[lost_at + 1: back - 1], every[lost_at + 2: back])
            if report["cameras"][0]["elapsed_s"] - before["cameras"][0]["elapsed_s"] >= 0.3]
    assert away and all(w[1] == 0 for w in away) and all(w[0] > 0 for w in away)
    cameras = summary_of(stats)["cameras"]
    assert "reconnecting in" in stdout and cameras[1]["reconnects"] >= 1 and cameras[0]["reconnects"] == 0


class LostCamera:
    """A live camera that gives ``frames`` frames at 30 fps, is then lost, and never opens again."""

    def __init__(self, frames: int) -> None:
        self.spec, self.ended, self.rate, self.left = parse_input("test://snow"), False, None, frames

    def open(self) -> None:
        raise MediaError(f"{self.spec.uri}: no camera there")

    def read(self, timeout: float) -> Frame:
        if self.left == 0:
            raise SourceLost(f"{self.spec.uri}: the stream ended")
        self.left -= 1
        time.sleep(1 / 30)
        return frame(0)

    def close(self) -> None:
        pass


class ClockedSink(NullSink):
    """When each picture was written, and when the output was finished."""

    def __init__(self) -> None:
        self.written: list[float] = []
        self.closed: float | None = None
        self.finished = threading.Event()

    def write(self, picture: np.ndarray, frame: Frame, timestamp: float) -> bool:
        self.written.append(time.perf_counter())
        return True

    def close(self) -> None:
        self.closed = time.perf_counter()
        self.finished.set()


def test_a_camera_that_gives_up_ends_alone_and_the_run_then_fails() -> None:
    """Camera 0 is lost and never comes back (2 attempts); camera 1 goes on until the stop 2.5 s after that, its
    output written all along; camera 0's output is finished when it gives up; the run then ends with its error
    (exit 1), as one camera's run would, with every output finished."""
    sinks, said = [ClockedSink(), ClockedSink()], []
    sources = [LostCamera(5), open_source(parse_input("test://ball"), CaptureOptions((FRAME_H, FRAME_W)))]
    runner = MultiCamera(FixedCostModel(0.002), sources, sinks,
                         PipelineOptions(reconnect=2, reconnect_delay_s=0.05, stats_interval_s=0), say=said.append)

    def stop_after_the_loss() -> None:
        sinks[0].finished.wait(30)  # the backstop: a run whose camera 0 never gives up is stopped too
        time.sleep(2.5)
        runner.stop()

    threading.Thread(target=stop_after_the_loss, daemon=True).start()
    with pytest.raises(MediaError, match="test://snow: no camera there; gave up after 2 reconnect attempts") as e:
        runner.run()
    assert e.value.exit_code == EXIT_FAILED
    lost, other = sinks
    assert len(lost.written) == 5 and lost.closed is not None and other.closed is not None
    assert sum(t > lost.closed + 1.0 for t in other.written) > 20  # camera 1 went on for the 1.5 s and more after
    assert any("this camera ends (its output is finished), the others go on" in line for line in said)


class FullDisk(ClockedSink):
    """An output whose disk is full after ``pictures`` pictures."""

    def __init__(self, pictures: int) -> None:
        super().__init__()
        self.pictures = pictures

    def write(self, picture: np.ndarray, frame: Frame, timestamp: float) -> bool:
        if len(self.written) == self.pictures:
            raise OSError(28, "No space left on device")
        return super().write(picture, frame, timestamp)


def test_an_error_that_ends_the_run_is_the_one_reported_after_a_camera_gave_up() -> None:
    """Camera 0 gives up at once; 1.5 s later camera 1's disk is full, which ends the run: that error is the one
    raised (its own message and exit status), not camera 0's, which it came after."""
    sources = [LostCamera(1), open_source(parse_input("test://ball"), CaptureOptions((FRAME_H, FRAME_W)))]
    runner = MultiCamera(FixedCostModel(0.002), sources, [ClockedSink(), FullDisk(45)],
                         PipelineOptions(reconnect=1, reconnect_delay_s=0.05, stats_interval_s=0), say=lambda s: None)
    stop = threading.Timer(20.0, runner.stop)
    stop.start()
    try:
        with pytest.raises(OSError, match="No space left on device"):
            runner.run()
    finally:
        stop.cancel()


def test_live_cameras_share_inference_fairly(model: Path) -> None:
    """Two live cameras, inference slower than both together: both get frames through (the rest dropped).
    Their latencies are measured by dannet-bench multicam, not asserted here."""
    sources = [open_source(parse_input(uri)) for uri in ("test://", "test://ball")]
    runner = MultiCamera(Segmenter(model), sources, [NullSink(), NullSink()],
                         PipelineOptions(max_frames=40, stats_interval_s=0), say=lambda s: None)
    summary = runner.run()
    written = [camera["written"] for camera in summary["cameras"]]
    assert all(camera["captured"] == 40 for camera in summary["cameras"])
    assert min(written) >= 0.5 * max(written) and min(written) > 0
    assert summary["processed"] == summary["written"] == 80 - summary["dropped"]


class ClosingSink(NullSink):
    """``null://`` that records being finished, or fails to finish like a video file on a full disk."""

    def __init__(self, error: OSError | None = None) -> None:
        self.error, self.closed = error, False

    def close(self) -> None:
        self.closed = True
        if self.error is not None:
            raise self.error


def test_an_output_that_cannot_be_finished_fails_the_run(model: Path) -> None:
    """As with one camera: the error of finishing camera 1's output is the run's error, and camera 0's output is
    finished all the same."""
    sources = [open_source(parse_input(uri)) for uri in ("test://", "test://ball")]
    sinks = [ClosingSink(), ClosingSink(OSError(28, "No space left on device"))]
    runner = MultiCamera(Segmenter(model), sources, sinks, PipelineOptions(max_frames=3, stats_interval_s=0),
                         say=lambda s: None)
    with pytest.raises(OSError, match="No space left on device"):
        runner.run()
    assert sinks[0].closed and sinks[1].closed


def test_errors_are_one_line(model: Path, tmp_path: Path) -> None:
    m = ["--model", str(model), "--frames", "3"]
    one_line_error(dannet_run(*m, "--input", "test://", "--input", "test://", "--output", str(tmp_path / "a.mkv")),
                   "--output given 1 times for 2 --input")
    one_line_error(dannet_run(*m, "--input", "test://", "--output", "null://", "--output", "null://"),
                   "--output given 2 times for one --input")
    one_line_error(dannet_run(*m, "--input", "test://", "--input", "v4l2:///dev/video97"), "/dev/video97")
    one_line_error(dannet_run(*m, "--input", "test://", "--input", "http://example.com/x.mp4"),
                   "unsupported input http://")


def test_each_camera_writes_its_own_confidence_levels(confidence_model: Path, tmp_path: Path) -> None:
    """Two clips with --confidence-out each (tests/test_pipeline.py's confidence model): folder i holds exactly
    the levels the model gives for camera i's frames, inferred here one frame at a time, every frame kept."""
    clips = [make_video(tmp_path / f"{pattern}.mkv", 4, pattern=pattern) for pattern in ("smpte", "ball")]
    levels_out = [tmp_path / "levels0", tmp_path / "levels1"]
    result = dannet_run("--model", str(confidence_model), "--input", str(clips[0]), "--input", str(clips[1]),
                        "--confidence-out", f"{levels_out[0]}/", "--confidence-out", f"file://{levels_out[1]}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("+ confidence -> ") == 2
    seg = Segmenter(confidence_model)
    expected = [[seg.process(frame)[1] for frame in decode(clip)] for clip in clips]
    # each camera's levels are spread (few saturated), and the two cameras' differ: a swap would fail
    assert all((levels[0] < 250).mean() > 0.3 and np.ptp(levels[0]) > 100 for levels in expected)
    assert (expected[0][0] != expected[1][0]).mean() > 0.1
    for levels, out in zip(expected, levels_out):
        pictures = sorted(out.iterdir())
        assert len(pictures) == len(levels) == 4
        for level, picture in zip(levels, pictures):
            written = Image.open(picture)
            assert written.mode == "L", picture  # 8-bit grey
            np.testing.assert_array_equal(np.asarray(written), level, err_msg=str(picture))


def test_no_two_outputs_share_a_destination(confidence_model: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """--output and --confidence-out of every camera: one of each per input, each its own file, folder or port;
    refused (exit 2, one line) before any output is opened."""
    one = ["--model", str(confidence_model), "--frames", "3", "--input", "test://"]
    two = [*one, "--input", "test://ball"]
    folders = [tmp_path / name for name in ("p0", "p1", "c0", "c1")]
    p0, p1, c0, c1 = (f"{folder}/" for folder in folders)
    cases = [
        ([*two, "--confidence-out", c0], ["--confidence-out given 1 times for 2 --input", "in the same order"]),
        ([*two, "--confidence-out", c0, "--confidence-out", c1, "--confidence-out", f"{tmp_path}/c2/"],
         ["--confidence-out given 3 times for 2 --input"]),
        ([*one, "--confidence-out", c0, "--confidence-out", c1],
         ["--confidence-out given 2 times for one --input"]),
        ([*two, "--output", str(tmp_path / "a.mkv"), "--output", f"file://{tmp_path}/a.mkv"],
         [f"--output file://{tmp_path}/a.mkv: the same destination as --output {tmp_path / 'a.mkv'}"]),
        ([*two, "--output", p0, "--output", p1, "--confidence-out", c0, "--confidence-out", f"{folders[1]}/%05d.png"],
         [f"--confidence-out {folders[1]}/%05d.png: the same destination as --output {p1}"]),
        ([*two, "--output", p0, "--output", p1, "--confidence-out", c0, "--confidence-out", c0],
         [f"--confidence-out {c0}: the same destination as --confidence-out {c0}"]),
        ([*two, "--output", "rtsp://@:8601/front", "--output", "rtsp://@:8601/rear"],
         ["--output rtsp://@:8601/rear: the same destination as --output rtsp://@:8601/front"]),
    ]
    for argv, words in cases:
        code, stderr = in_process(capsys, *argv)
        one_line_error(subprocess.CompletedProcess(argv, code, "", stderr), *words)
    assert not any(folder.exists() for folder in folders)  # nothing opened


def test_help_explains_the_batching_policy_and_one_output_per_input() -> None:
    result = dannet_run("--help")
    assert result.returncode == 0
    for words in ("--batch-wait-ms", "newest frame of every live input", "one per input",
                  "--output and --confidence-out are given once per input, in the same order",
                  "no two outputs may share a file, folder or port"):
        assert words in " ".join(result.stdout.split()), words


def test_multicam_benchmark_warms_every_batch_size_and_alternates_which_mode_goes_first(
        dynamic_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dannet-bench multicam: no batch size's first (allocating) call falls inside a measured run, and batched and
    one-at-a-time runs take turns going first (a fixed order would hand one of them the machine's drift)."""
    import benchmarks.multicam as bench
    from runtime.backends import OnnxRuntimeBackend

    calls, measuring, order = [], [], []
    infer, measure = OnnxRuntimeBackend.infer, bench.measure

    def recorded_infer(self, frames, *args, **kwargs):
        calls.append((len(frames), bool(measuring)))
        return infer(self, frames, *args, **kwargs)

    def recorded_measure(segmenter, cameras, batched, *args):
        measuring.append(1)
        order.append((cameras, batched))
        return measure(segmenter, cameras, batched, *args)

    monkeypatch.setattr(OnnxRuntimeBackend, "infer", recorded_infer)
    monkeypatch.setattr(bench, "measure", recorded_measure)
    assert bench.main(["--model", str(dynamic_model), "--cameras", "1,3", "--seconds", "0.4", "--rate", "15",
                       "--size", "64x128", "--json", str(tmp_path / "m.json")]) == 0
    warmed = {size for size, during in calls if not during}
    assert warmed == {1, 2, 3} and {size for size, during in calls if during} <= warmed
    assert order == [(1, True), (1, False), (3, False), (3, True)]
    result = json.loads((tmp_path / "m.json").read_text())
    assert [(r["cameras"], r["batched"]) for r in result["results"]] == [(1, True), (1, False), (3, True), (3, False)]
    assert set(result["batched_vs_one_at_a_time"]) == {"1", "3"}


def test_multicam_benchmark_runs_at_least_one_frame_and_stops_on_a_signal() -> None:
    """``--seconds`` x ``--rate`` under one frame still ends (0 frames would be the pipeline's "no limit", and
    test:// cameras never end); a SIGINT during a measured run ends the benchmark instead of handing on a cut
    run's figures as the configuration's."""
    import benchmarks.multicam as bench
    from runtime.errors import Interrupted

    done: list[dict] = []
    measuring = threading.Thread(target=lambda: done.append(bench.measure(FixedCostModel(0.002), 2, True, 0.01, 30,
                                                                           (FRAME_H, FRAME_W))), daemon=True)
    measuring.start()
    measuring.join(30)
    assert done and [camera["written"] for camera in done[0]["per_camera"]] == [1, 1]
    unhandled = signal.getsignal(signal.SIGINT)

    def interrupt_once_handled() -> None:
        """SIGINT once the measurement's handler is in place (before it, Python's own would raise
        KeyboardInterrupt in this test), and 0.3 s into the run."""
        wait_for(lambda: signal.getsignal(signal.SIGINT) is not unhandled, 20)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_handled, daemon=True).start()
    start = time.perf_counter()
    with pytest.raises(Interrupted, match="SIGINT"):
        bench.measure(FixedCostModel(0.002), 1, True, 30.0, 30, (FRAME_H, FRAME_W))
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("size, nearest", [("16x16", "32x32"), ("66x130", "68x132")])
def test_multicam_benchmark_refuses_a_size_the_default_model_cannot_take(size: str, nearest: str, capsys) -> None:
    import benchmarks.multicam as bench

    with pytest.raises(SystemExit) as exited:  # argparse's error, before any model is made
        bench.main(["--size", size])
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("dannet-bench multicam: error:")
    assert f"--size {size}: the default model takes H and W multiples of 4 from 32x32" in err and nearest in err


def test_multicam_benchmark_refuses_a_model_that_takes_one_frame_per_call(model: Path, capsys) -> None:
    """Its batched rows would run one camera at a time and report the noise between two equal runs as a gain."""
    from benchmarks.cli import main as bench_main

    capsys.readouterr()
    assert bench_main(["multicam", "--model", str(model), "--cameras", "2", "--seconds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"dannet-bench multicam: error: --model {model}: takes one "
                                                         "frame per call (batch 1)") and "--dynamic" in err


@pytest.mark.parametrize("source", ["file", "images"])
def test_multicam_benchmark_reads_every_frame_of_each_cameras_own_file_or_folder(source: str, dynamic_model: Path,
                                                                                  tmp_path: Path) -> None:
    """``--source file|images``: each camera's H.264 clip or PNG folder holds ``--seconds`` x ``--rate`` frames of
    its own moving picture, read back here by the tests' own GStreamer pipeline or by Pillow; every run writes all
    of them (files and folders drop nothing)."""
    import benchmarks.multicam as bench

    def read_back(path: Path) -> list[np.ndarray]:
        return decode(path) if source == "file" else [np.asarray(Image.open(f)) for f in sorted(path.iterdir())]

    cameras = [read_back(Path(uri)) for uri in bench.make_inputs(source, tmp_path, 2, 10, (64, 128), 20.0)]
    assert [len(frames) for frames in cameras] == [10, 10] and cameras[0][0].shape == (64, 128, 3)
    assert np.abs(cameras[0][0].astype(int) - cameras[1][0]).mean() > 20  # each camera its own picture
    assert np.abs(cameras[0][0].astype(int) - cameras[0][9]).mean() > 20  # moving
    assert bench.main(["--model", str(dynamic_model), "--source", source, "--cameras", "1,2", "--seconds", "0.5",
                       "--rate", "20", "--size", "64x128", "--json", str(tmp_path / "m.json")]) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["args"]["source"] == source and len(result["results"]) == 4
    for run in result["results"]:
        assert [(c["written"], c["dropped"]) for c in run["per_camera"]] == [(10, 0)] * run["cameras"]

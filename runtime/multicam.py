"""Several cameras, one model: N capture threads, one inference thread, one output thread per camera.

    from runtime.multicam import run_cameras
    summary = run_cameras("dannet.onnx", ["v4l2:///dev/video0", "v4l2:///dev/video1"],
                          ["file://front.mp4", "file://rear.mp4"])
    run_cameras("dannet_confidence.onnx", ["front.mp4", "rear.mp4"], ["null://"],
                confidence_outs=["front_levels/", "rear_levels/"])  # each camera's 8-bit confidence levels

Batching policy. Cameras are not synchronised, so the inference thread never waits for a particular one.
At each step it waits for the first frame of any camera, then at most ``batch_wait_s`` more for the other
cameras that are still running, and takes what is there: the newest frame of every live camera that has one
(older waiting frames are dropped and counted), the next frame of every file (files keep every frame). A
camera with nothing new is skipped this step, and so is a camera whose output has no room for another picture:
the inference thread never waits for one camera's output, so a slow output (a PNG folder, a software encoder,
a slow disk) holds back its own camera only, whose frames wait at its own queue as with one camera (a live
camera's dropped and counted as its own ``dropped``, a file's capture waiting). The frames taken go through one
``infer`` call when the model takes a batch (a dynamic-batch ONNX graph, a .pt2 program, an engine with a batch
profile), split into calls of at most the model's batch size and of one frame size each; a batch-1 model runs
them one by one, the cameras taking turns at being first (runtime/turns.py's ``Turns``: a camera without a
frame in a step loses no turn) so that none always waits longest.

Each camera is a ``Camera`` (runtime/pipeline.py): the capture stage (reconnect with back-off, loop, --frames)
and output stage (--temporal, overlay, sink, confidence sink) that ``dannet-run`` runs for one input, so one
camera behaves exactly as it does there; only the hand-over to inference is shared, and the run is
``run_stages`` as there. Every output of every camera has a destination of its own (``check_routes``).
A lost camera reconnects on its own while the others keep running; one that gives up (``--reconnect``) ends
alone, its output finished, and the run raises its error once the others end. A file that ends finishes its own
output at once (``Intake.take`` reports it), whatever the other cameras send. Ctrl-C / SIGTERM stop every
capture, let the queued frames through and finish every output.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np

from .errors import DannetError
from .pipeline import (Aborted, Camera, PipelineOptions, RunControl, Stage, check_confidence_wanted, check_routes,
                       describe_outputs, open_outputs, run_stages)
from .segmenter import Segmenter
from .sinks import Sink
from .sources import CaptureOptions, Frame, Source, open_source
from .stats import format_report, format_summary
from .turns import Turns
from .uris import InputSpec, parse_input, parse_output

#: default of ``--batch-wait-ms``: long enough for cameras running at the same rate to land in one batch,
#: short against a frame period (33 ms at 30 fps)
DEFAULT_BATCH_WAIT_S = 0.005


class Intake:
    """The frames waiting for inference: one bounded queue per camera, all behind one lock, so the inference
    thread can wait for whichever camera delivers first. A live camera's full queue drops its oldest frame
    (counted by ``on_drop``); a file's waits for room, keeping every frame.

    A camera is served only while ``has_room`` says its output can take a picture, so inference never waits
    for one camera's output; ``wake`` must be called whenever an output makes room."""

    def __init__(self, live: Sequence[bool], capacity: int, on_drop: Sequence[Callable[[], None]],
                 has_room: Sequence[Callable[[], bool]]) -> None:
        self.live, self.capacity, self.on_drop, self.has_room = list(live), capacity, list(on_drop), list(has_room)
        self.queues: list[deque] = [deque() for _ in live]
        self.open = [True] * len(live)
        self.ready = threading.Condition()
        self.aborted = False
        self.reported_ended: set[int] = set()  # cameras ``take`` has said are closed and drained
        self.high_water = 0

    def put(self, camera: int, frame: Frame) -> None:
        with self.ready:
            queue = self.queues[camera]
            while len(queue) >= self.capacity and not self.live[camera] and not self.aborted:
                self.ready.wait()
            if self.aborted:
                raise Aborted
            if len(queue) >= self.capacity:
                queue.popleft()
                self.on_drop[camera]()
            queue.append(frame)
            self.high_water = max(self.high_water, len(queue))
            self.ready.notify_all()

    def close(self, camera: int) -> None:
        """The camera delivers no more frames (its capture ended); what it queued is still taken."""
        with self.ready:
            self.open[camera] = False
            self.ready.notify_all()

    def abort(self) -> None:
        with self.ready:
            self.aborted = True
            self.ready.notify_all()

    def wake(self) -> None:
        """An output made room: its camera may be served again."""
        with self.ready:
            self.ready.notify_all()

    def _servable(self) -> list[int]:
        """The cameras with a frame waiting and room in their output."""
        return [camera for camera, queue in enumerate(self.queues) if queue and self.has_room[camera]()]

    def _newly_ended(self) -> list[int]:
        """The cameras closed with nothing left to take that ``take`` has not reported yet."""
        return [camera for camera, (queue, running) in enumerate(zip(self.queues, self.open))
                if not running and not queue and camera not in self.reported_ended]

    def _all_in(self) -> bool:
        """Every camera still running that could be served has a frame waiting."""
        return all(queue or not running or not room()
                   for queue, running, room in zip(self.queues, self.open, self.has_room))

    def take(self, wait_s: float) -> tuple[list[tuple[int, Frame]], list[int]]:
        """The batching policy (module docstring): (camera, frame) pairs for one step, in camera order, and the
        cameras that have ended since the last step (closed, nothing left: their outputs can finish now, even
        while the others send nothing); both empty once every camera has ended and been reported."""
        with self.ready:
            while (not self._servable() and not self._newly_ended() and (any(self.open) or any(self.queues))
                   and not self.aborted):
                self.ready.wait()
            deadline = time.perf_counter() + wait_s
            while (self._servable() and not self._all_in() and not self.aborted
                   and (left := deadline - time.perf_counter()) > 0):
                self.ready.wait(left)
            if self.aborted:
                raise Aborted
            taken = []
            for camera in self._servable():
                queue = self.queues[camera]
                while self.live[camera] and len(queue) > 1:  # live: only the newest frame is worth inferring
                    queue.popleft()
                    self.on_drop[camera]()
                taken.append((camera, queue.popleft()))
            ended = self._newly_ended()
            self.reported_ended.update(ended)
            self.ready.notify_all()
            return taken, ended


class MultiCamera:
    """Runs N sources through one segmenter into N sinks (source i -> sink i, and its confidence levels into
    ``confidence_sinks[i]`` when given); ``run()`` returns the summary: totals, batching figures and each camera's
    own counters and stage latencies under ``cameras``. ``batched=False`` infers one frame per call even where
    the model takes a batch (the benchmarks' baseline)."""

    def __init__(self, segmenter: Segmenter, sources: Sequence[Source], sinks: Sequence[Sink],
                 options: PipelineOptions = PipelineOptions(), batch_wait_s: float = DEFAULT_BATCH_WAIT_S,
                 say: Callable[[str], None] = print, output_uris: Sequence[str] | None = None,
                 batched: bool = True, confidence_sinks: Sequence[Sink | None] | None = None) -> None:
        confidence_sinks = list(confidence_sinks or [None] * len(sinks))
        if not len(sources) == len(sinks) == len(confidence_sinks):
            raise DannetError(f"{len(sources)} inputs but {len(sinks)} outputs and {len(confidence_sinks)} "
                              "confidence outputs: give one of each per input")
        self.segmenter, self.options, self.batch_wait_s, self.say = segmenter, options, batch_wait_s, say
        self.output_uris = list(output_uris or (f"output {index}" for index in range(len(sinks))))  # for reports
        self.control = RunControl(self._abort_queues, say)  # one stop for every camera
        self.cameras = [Camera(segmenter.info, source, sink, options, self.control, confidence_sink,
                               on_output_room=self._output_room, ends_alone=len(sources) > 1)
                        for source, sink, confidence_sink in zip(sources, sinks, confidence_sinks)]
        self.intake = Intake([source.spec.live for source in sources], options.queue_size,
                             [lambda camera=camera: camera.stats.count("dropped") for camera in self.cameras],
                             [camera.inferred.has_room for camera in self.cameras])
        self.turns = Turns(range(len(self.cameras)))
        self.batch_size = segmenter.backend.max_batch if batched else 1
        self.calls = self.inferred_frames = 0

    def describe_batching(self) -> str:
        cameras = len(self.cameras)
        if self.batch_size == 1:
            return (f"the model takes one frame per call (batch 1): {cameras} cameras run one at a time "
                    "(export with --dynamic to batch them)")
        limit = "any number of" if self.batch_size is None else f"up to {self.batch_size}"
        return f"the model takes {limit} frames per call: {cameras} cameras are batched"

    # -- the shared inference stage -------------------------------------------------------------------------
    def _output_room(self) -> None:
        """A camera's output took a picture: the intake may serve that camera again."""
        self.intake.wake()

    def _infer(self) -> None:
        prepare, infer = self.segmenter.prepare, self.segmenter.backend.infer
        while True:
            taken, ended = self.intake.take(self.batch_wait_s)
            if not taken and not ended:  # every camera has ended, and its output been told
                return
            # one at a time, the camera served first in a step waits least: the cameras take turns at it
            frames, prepared = dict(taken), []
            for index in self.turns.next_round(frames):
                frame = frames[index]
                start = time.perf_counter()
                prepared.append((index, frame, prepare(frame.image)))
                self.cameras[index].stats.add("preprocess", time.perf_counter() - start)
            for group in self._batches(prepared):
                start = time.perf_counter()
                result = infer(np.stack([image for _, _, image in group]))
                seconds = time.perf_counter() - start
                self.calls += 1
                self.inferred_frames += len(group)
                for row, (index, frame, _) in enumerate(group):
                    camera = self.cameras[index]
                    camera.stats.add("inference", seconds)
                    camera.stats.count("processed")
                    confidence = result.confidence[row] if result.confidence is not None else None
                    camera.inferred.put((frame, result.labels[row], confidence))  # room: take() saw to it
            for index in ended:  # its last frame is in its output's queue: the output can finish
                self.cameras[index].inferred.close()

    def _batches(self, prepared: list[tuple[int, Frame, np.ndarray]]) -> list[list[tuple[int, Frame, np.ndarray]]]:
        """The frames of one step as ``infer`` calls: one frame size per call (a dynamic-size model keeps each
        camera's size), at most the model's batch size."""
        by_shape: dict[tuple[int, ...], list] = {}
        for item in prepared:
            by_shape.setdefault(item[2].shape, []).append(item)
        limit = self.batch_size or len(prepared)
        return [group[i:i + limit] for group in by_shape.values() for i in range(0, len(group), limit)]

    # -- stages and control -----------------------------------------------------------------------------------
    def _stages(self) -> list[Stage]:
        """A capture per camera feeding the intake, the shared inference, an output per camera."""
        cameras = list(enumerate(self.cameras))
        return [*(Stage(f"capture-{i}", partial(camera.capture, partial(self.intake.put, i)),
                        partial(self.intake.close, i), drains=True) for i, camera in cameras),
                Stage("inference", self._infer, self._close_outputs),
                *(Stage(f"output-{i}", camera.output, camera.finish_output) for i, camera in cameras)]

    def _close_outputs(self) -> None:
        for camera in self.cameras:
            camera.inferred.close()

    def stop(self) -> None:
        """Stop capturing; what is queued goes through and every output is finished (Ctrl-C does this)."""
        self.control.stop()

    def _abort_queues(self) -> None:
        self.intake.abort()
        for camera in self.cameras:
            camera.inferred.abort()

    def _close_sources(self) -> None:
        for camera in self.cameras:
            camera.source.close()

    def run(self, keep_signal_handlers: bool = False, announce: str | None = None) -> dict:
        """Run until every camera has ended (or a stop) and return the summary; signals as ``Pipeline.run``."""
        announce = "\n".join(line for line in (announce, self.describe_batching()) if line)
        return run_stages(self._stages(), self.control, self.options, report_window=self._report_window,
                          report_summary=self._report_summary, close_sources=self._close_sources,
                          outputs="the outputs", keep_signal_handlers=keep_signal_handlers, announce=announce)

    # -- reports ------------------------------------------------------------------------------------------
    def _labelled(self, reports: list[dict]) -> list[dict]:
        return [{"camera": index, "input": camera.source.spec.uri, "output": self.output_uris[index], **report}
                for index, (camera, report) in enumerate(zip(self.cameras, reports))]

    def _combined(self, reports: list[dict]) -> dict:
        """Totals over the cameras: counters summed, frames/s summed, elapsed the longest."""
        keys = ("captured", "dropped", "lost_upstream", "unreadable", "output_skipped", "processed", "written",
                "reconnects", "temporal_resets", "fps_in", "fps_out")
        total = {key: round(sum(report[key] for report in reports), 2) for key in keys}
        return {"elapsed_s": max(report["elapsed_s"] for report in reports), **total}

    def summary(self) -> dict:
        reports = self._labelled([camera.stats.summary() for camera in self.cameras])
        for report in reports:
            del report["summary"]
        return {"summary": True, **self._combined(reports), "inference_calls": self.calls,
                "mean_batch": round(self.inferred_frames / max(self.calls, 1), 3),
                "queue_high_water": self.intake.high_water, "cameras": reports}

    def window_report(self) -> dict:
        reports = self._labelled([camera.stats.window_report() for camera in self.cameras])
        return {**self._combined(reports), "cameras": reports}

    def _report_window(self) -> dict:
        """A line per camera."""
        report = self.window_report()
        for camera in report["cameras"]:
            self.say(f"camera {camera['camera']} " + format_report(camera))
        return report

    def _report_summary(self) -> dict:
        summary = self.summary()
        for index, report in enumerate(summary["cameras"]):
            self.say(f"camera {index} {report['input']} -> {report['output']}\n{format_summary(report)}")
        self.say(f"all cameras: {summary['written']} written of {summary['captured']} captured in "
                 f"{summary['elapsed_s']:.1f} s ({summary['fps_out']:.1f} fps out), {summary['inference_calls']} "
                 f"inference calls, {summary['mean_batch']:.2f} frames per call")
        return summary


def run_cameras(model: str, input_uris: Sequence[str], output_uris: Sequence[str], *, backend: str = "auto",
                capture: CaptureOptions = CaptureOptions(), codec: str = "h264", bitrate_kbps: int = 4000,
                confidence_outs: Sequence[str] = (), batch_wait_s: float = DEFAULT_BATCH_WAIT_S,
                say: Callable[[str], None] = print, keep_signal_handlers: bool = False, **options: Any) -> dict:
    """``dannet-run --input A --input B ...`` as a function: one output URI per input (or one ``null://`` for
    all) and, for a model exported with ``--confidence``, one ``confidence_outs`` URI per input or none; every
    URI and the model checked first (one-line errors naming the URI), then the cameras run."""
    if len(output_uris) == 1 and len(input_uris) > 1 and parse_output(output_uris[0]).kind == "null":
        output_uris = list(output_uris) * len(input_uris)
    if len(output_uris) != len(input_uris):
        raise DannetError(f"--output given {len(output_uris)} times for {len(input_uris)} --input: expected one "
                          "output per input, in the same order (or a single null://)")
    if confidence_outs and len(confidence_outs) != len(input_uris):
        raise DannetError(f"--confidence-out given {len(confidence_outs)} times for {len(input_uris)} --input: "
                          "expected one per input, in the same order")
    specs, outs = [parse_input(uri) for uri in input_uris], [parse_output(uri) for uri in output_uris]
    confidences = [parse_output(uri) for uri in confidence_outs] or [None] * len(specs)
    pipeline_options = PipelineOptions(**options)
    check_routes([(spec, [("--output", out), ("--confidence-out", confidence)])
                  for spec, out, confidence in zip(specs, outs, confidences)], pipeline_options)
    with Segmenter(model, backend) as segmenter:  # the model is released when the run ends, however it ends
        check_confidence_wanted(segmenter.info, model, pipeline_options.visualize, bool(confidence_outs))
        pipeline_options.temporal.check_model(segmenter.info.confidence, model)
        sinks, confidence_sinks = zip(*(open_outputs(out, confidence, codec, bitrate_kbps, say)
                                        for out, confidence in zip(outs, confidences)))
        sources = open_sources(specs, capture)
        lines = [f"{spec.uri} -> {segmenter.backend.name} -> {describe_outputs(out, confidence)}"
                 for spec, out, confidence in zip(specs, outs, confidences)]
        return MultiCamera(segmenter, sources, sinks, pipeline_options, batch_wait_s, say, [out.uri for out in outs],
                           confidence_sinks=confidence_sinks).run(keep_signal_handlers, announce="\n".join(lines))


def open_sources(specs: Sequence[InputSpec], capture: CaptureOptions) -> list[Source]:
    """Every camera's source; when one cannot open, the ones already opened are released before the error is
    reported."""
    sources: list[Source] = []
    try:
        for spec in specs:
            sources.append(open_source(spec, capture))
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources

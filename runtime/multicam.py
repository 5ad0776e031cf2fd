"""Several cameras, one model: N capture threads, one inference thread, one output thread per camera.

    from runtime.multicam import run_cameras
    summary = run_cameras("dannet.onnx", ["v4l2:///dev/video0", "v4l2:///dev/video1"],
                          ["file://front.mp4", "file://rear.mp4"])

Batching policy. Cameras are not synchronised, so the inference thread never waits for a particular one.
At each step it waits for the first frame of any camera, then at most ``batch_wait_s`` more for the other
cameras that are still running, and takes what is there: the newest frame of every live camera that has one
(older waiting frames are dropped and counted), the next frame of every file (files keep every frame). A
camera with nothing new is skipped this step. The frames taken go through one ``infer`` call when the model
takes a batch (a dynamic-batch ONNX graph, a .pt2 program, an engine with a batch profile), split into
calls of at most the model's batch size and of one frame size each; a batch-1 model runs them one by one,
the cameras taking turns at being first so that none always waits longest.

Each camera is a ``Pipeline`` (runtime/pipeline.py) whose capture loop (reconnect with back-off, loop,
--frames) and output stage (overlay, --temporal, sink) are used as they are, so one camera behaves exactly as
``dannet-run`` with one input does; only the hand-over to inference is shared. A lost camera reconnects on
its own while the others keep running; a file that ends finishes its own output. Ctrl-C / SIGTERM stop every
capture, let the queued frames through and finish every output.
"""
from __future__ import annotations

import signal
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

import numpy as np

from .backends import Backend
from .errors import DannetError
from .pipeline import Aborted, Pipeline, PipelineOptions, check_confidence_wanted, install_stop_handlers
from .segmenter import Segmenter
from .sinks import OutputClosed, Sink, open_sink
from .sources import CaptureOptions, Frame, Source, open_source
from .stats import JsonLines, format_report, format_summary
from .uris import parse_input, parse_output

#: default of ``--batch-wait-ms``: long enough for cameras running at the same rate to land in one batch,
#: short against a frame period (33 ms at 30 fps)
DEFAULT_BATCH_WAIT_S = 0.005


def batch_limit(backend: Backend) -> int | None:
    """The most frames one ``infer`` call takes: None for a dynamic batch without a bound, 1 for a graph
    exported with batch 1 (dannet-export onnx without --dynamic), the profile's maximum for an engine."""
    session = getattr(backend, "session", None)
    if session is not None:  # ONNX Runtime: a symbolic first dimension is a dynamic batch
        size = session.get_inputs()[0].shape[0]
        return size if isinstance(size, int) else None
    engine = getattr(backend, "engine", None)
    if engine is not None:  # TensorRT: -1 is dynamic, bounded by the optimisation profile
        size = engine.get_tensor_shape(backend.INPUT)[0]
        return size if size > 0 else int(engine.get_tensor_profile_shape(backend.INPUT, 0)[2][0])
    if backend.name == "torch":  # dannet-export pt2 programs have a dynamic batch
        return None
    return 1


def in_turn(taken: list, step: int) -> list:
    """The frames of step ``step`` in the order they are inferred: one at a time, the camera served first in a
    step waits least, so the cameras take turns at being first (rotated by one per step)."""
    turn = step % len(taken)
    return taken[turn:] + taken[:turn]


class Intake:
    """The frames waiting for inference: one bounded queue per camera, all behind one lock, so the inference
    thread can wait for whichever camera delivers first. A live camera's full queue drops its oldest frame
    (counted by ``on_drop``); a file's waits for room, keeping every frame."""

    def __init__(self, live: Sequence[bool], capacity: int, on_drop: Sequence[Callable[[], None]]) -> None:
        self.live, self.capacity, self.on_drop = list(live), capacity, list(on_drop)
        self.queues: list[deque] = [deque() for _ in live]
        self.open = [True] * len(live)
        self.ready = threading.Condition()
        self.aborted = False
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

    def finished(self, camera: int) -> bool:
        """Closed and nothing left to take."""
        with self.ready:
            return not self.open[camera] and not self.queues[camera]

    def _all_in(self) -> bool:
        """Every camera still running has a frame waiting."""
        return all(queue or not running for queue, running in zip(self.queues, self.open))

    def take(self, wait_s: float) -> list[tuple[int, Frame]]:
        """The batching policy (module docstring): (camera, frame) pairs for one step, in camera order; an
        empty list once every camera is closed and drained."""
        with self.ready:
            while not any(self.queues) and any(self.open) and not self.aborted:
                self.ready.wait()
            deadline = time.perf_counter() + wait_s
            while not self._all_in() and not self.aborted and (left := deadline - time.perf_counter()) > 0:
                self.ready.wait(left)
            if self.aborted:
                raise Aborted
            taken = []
            for camera, queue in enumerate(self.queues):
                while self.live[camera] and len(queue) > 1:  # live: only the newest frame is worth inferring
                    queue.popleft()
                    self.on_drop[camera]()
                if queue:
                    taken.append((camera, queue.popleft()))
            self.ready.notify_all()
            return taken


class IntakeSlot:
    """One camera's entry to the intake, in the shape of the queue a ``Pipeline``'s capture loop puts into."""

    def __init__(self, intake: Intake, camera: int) -> None:
        self.intake, self.camera = intake, camera

    def put(self, frame: Frame) -> None:
        self.intake.put(self.camera, frame)

    def close(self) -> None:
        self.intake.close(self.camera)


class MultiCamera:
    """Runs N sources through one segmenter into N sinks (source i -> sink i); ``run()`` returns the summary:
    totals, batching figures and each camera's own counters and stage latencies under ``cameras``."""

    def __init__(self, segmenter: Segmenter, sources: Sequence[Source], sinks: Sequence[Sink],
                 options: PipelineOptions = PipelineOptions(), batch_wait_s: float = DEFAULT_BATCH_WAIT_S,
                 say: Callable[[str], None] = print, output_uris: Sequence[str] | None = None,
                 batched: bool = True) -> None:
        if len(sources) != len(sinks):
            raise DannetError(f"{len(sources)} inputs but {len(sinks)} outputs: give one output per input")
        self.segmenter, self.options, self.batch_wait_s, self.say = segmenter, options, batch_wait_s, say
        self.output_uris = list(output_uris or (f"output {index}" for index in range(len(sinks))))  # for reports
        self.cameras = [Pipeline(segmenter, source, sink, options, say) for source, sink in zip(sources, sinks)]
        self.stopping = threading.Event()
        self.intake = Intake([source.spec.live for source in sources], options.queue_size,
                             [lambda camera=camera: camera.stats.count("dropped") for camera in self.cameras])
        for index, camera in enumerate(self.cameras):
            camera.captured = IntakeSlot(self.intake, index)  # capture feeds the shared intake
            camera.stopping = self.stopping                   # one stop for every camera
        self.batch_size = batch_limit(segmenter.backend) if batched else 1  # not batched: one at a time (benchmarks)
        self.calls = self.inferred_frames = 0
        self.errors: list[BaseException] = []
        self.signals: list[int] = []

    def describe_batching(self) -> str:
        cameras = len(self.cameras)
        if self.batch_size == 1:
            return (f"the model takes one frame per call (batch 1): {cameras} cameras run one at a time "
                    "(export with --dynamic to batch them)")
        limit = "any number of" if self.batch_size is None else f"up to {self.batch_size}"
        return f"the model takes {limit} frames per call: {cameras} cameras are batched"

    # -- the shared inference stage -------------------------------------------------------------------------
    def _infer(self) -> None:
        prepare, infer = self.segmenter.prepare, self.segmenter.backend.infer
        open_outputs, step = set(range(len(self.cameras))), 0
        while taken := self.intake.take(self.batch_wait_s):
            taken, prepared, step = in_turn(taken, step), [], step + 1
            for index, frame in taken:
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
                    camera.inferred.put((frame, result.labels[row], confidence))
            for index in [i for i in open_outputs if self.intake.finished(i)]:  # that camera's output can finish
                self.cameras[index].inferred.close()
                open_outputs.discard(index)

    def _batches(self, prepared: list[tuple[int, Frame, np.ndarray]]) -> list[list[tuple[int, Frame, np.ndarray]]]:
        """The frames of one step as ``infer`` calls: one frame size per call (a dynamic-size model keeps each
        camera's size), at most the model's batch size."""
        by_shape: dict[tuple[int, ...], list] = {}
        for item in prepared:
            by_shape.setdefault(item[2].shape, []).append(item)
        limit = self.batch_size or len(prepared)
        return [group[i:i + limit] for group in by_shape.values() for i in range(0, len(group), limit)]

    # -- stages and control -----------------------------------------------------------------------------------
    def _stage(self, work: Callable[[], None], then: Callable[[], None], capture: bool) -> Callable[[], None]:
        """A stage body: an error stops every camera (inference/output errors without draining); a capture
        that ends lets what it queued through."""
        def body() -> None:
            try:
                work()
            except Aborted:
                pass
            except OutputClosed as e:  # a viewer closed its window: stop like Ctrl-C, without draining
                self.say(f"{e}: stopping")
                self._abort()
            except BaseException as e:  # reported by run() on the main thread
                self.errors.append(e)
                self.stopping.set()
                if not capture:
                    self._abort()
            finally:
                then()
        return body

    def _threads(self) -> list[threading.Thread]:
        cameras = list(enumerate(self.cameras))
        stages = [(f"capture-{i}", camera._capture, camera.captured.close, True) for i, camera in cameras]
        stages.append(("inference", self._infer, self._close_outputs, False))
        stages += [(f"output-{i}", camera._output, camera._finish_output, False) for i, camera in cameras]
        return [threading.Thread(target=self._stage(work, then, capture), name=name, daemon=True)
                for name, work, then, capture in stages]

    def _close_outputs(self) -> None:
        for camera in self.cameras:
            camera.inferred.close()

    def stop(self) -> None:
        """Stop capturing; what is queued goes through and every output is finished (Ctrl-C does this)."""
        self.stopping.set()

    def _abort(self) -> None:
        self.stopping.set()
        self.intake.abort()
        for camera in self.cameras:
            camera.inferred.abort()

    def run(self, keep_signal_handlers: bool = False, announce: str | None = None) -> dict:
        """Run until every camera has ended (or a stop) and return the summary; signals as ``Pipeline.run``."""
        handlers = self._install_signal_handlers()
        if announce:
            self.say(announce)
        self.say(self.describe_batching())
        try:
            journal = JsonLines(self.options.stats_json)
            threads = self._threads()
            for thread in threads:
                thread.start()
            try:
                self._supervise(threads, journal)
            except BaseException:  # e.g. --stats-json on a full disk: stop, but still finish the outputs
                self._abort()
                for thread in threads:
                    thread.join()
                raise
            finally:
                for camera in self.cameras:
                    camera.source.close()
            summary = self.summary()
            journal.write(summary)
            journal.close()
            for index, report in enumerate(summary["cameras"]):
                self.say(f"camera {index} {report['input']} -> {report['output']}\n{format_summary(report)}")
            self.say(f"all cameras: {summary['written']} written of {summary['captured']} captured in "
                     f"{summary['elapsed_s']:.1f} s ({summary['fps_out']:.1f} fps out), {summary['inference_calls']} "
                     f"inference calls, {summary['mean_batch']:.2f} frames per call")
        finally:
            if not keep_signal_handlers:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
        if self.errors:
            raise self.errors[0]
        return summary

    def _labelled(self, reports: list[dict]) -> list[dict]:
        return [{"camera": index, "input": camera.source.spec.uri, "output": self.output_uris[index], **report}
                for index, (camera, report) in enumerate(zip(self.cameras, reports))]

    def _combined(self, reports: list[dict]) -> dict:
        """Totals over the cameras: counters summed, frames/s summed, elapsed the longest."""
        keys = ("captured", "dropped", "lost_upstream", "processed", "written", "reconnects", "fps_in", "fps_out")
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

    def _supervise(self, threads: list[threading.Thread], journal: JsonLines) -> None:
        """Until every stage has ended: periodic reports (a line per camera) and the notice of a signal."""
        next_report = time.perf_counter() + self.options.stats_interval_s
        noticed = 0
        while any(thread.is_alive() for thread in threads):
            threads[-1].join(timeout=0.1)
            for index in range(noticed, len(self.signals)):
                what = "stopping, finishing the outputs (again to hurry)" if index == 0 else \
                    "skipping the queued frames, finishing the outputs"
                self.say(f"\n{signal.Signals(self.signals[index]).name}: {what}")
            noticed = len(self.signals)
            if self.options.stats_interval_s and time.perf_counter() >= next_report:
                report = self.window_report()
                for camera in report["cameras"]:
                    self.say(f"camera {camera['camera']} " + format_report(camera))
                journal.write(report)
                next_report += self.options.stats_interval_s

    def _install_signal_handlers(self) -> dict:
        return install_stop_handlers(self.signals, self.stop, self._abort)


def run_cameras(model: str, input_uris: Sequence[str], output_uris: Sequence[str], *, backend: str = "auto",
                capture: CaptureOptions = CaptureOptions(), codec: str = "h264", bitrate_kbps: int = 4000,
                batch_wait_s: float = DEFAULT_BATCH_WAIT_S, say: Callable[[str], None] = print,
                keep_signal_handlers: bool = False, **options: Any) -> dict:
    """``dannet-run --input A --input B ...`` as a function: one output URI per input (or one ``null://`` for
    all); every URI and the model checked first (one-line errors naming the URI), then the cameras run."""
    if len(output_uris) == 1 and len(input_uris) > 1 and parse_output(output_uris[0]).kind == "null":
        output_uris = list(output_uris) * len(input_uris)
    if len(output_uris) != len(input_uris):
        raise DannetError(f"--output given {len(output_uris)} times for {len(input_uris)} --input: expected one "
                          "output per input, in the same order (or a single null://)")
    specs, outs = [parse_input(uri) for uri in input_uris], [parse_output(uri) for uri in output_uris]
    pipeline_options = PipelineOptions(**options)
    segmenter = Segmenter(model, backend)
    check_confidence_wanted(segmenter.info, model, pipeline_options.visualize, False)
    pipeline_options.temporal.check_model(segmenter.info.confidence, model)
    sinks = [open_sink(out, codec, bitrate_kbps) for out in outs]
    sources: list[Source] = []
    try:
        for spec in specs:
            sources.append(open_source(spec, capture))
    except BaseException:  # one camera missing: release the ones already opened before the error is reported
        for source in sources:
            source.close()
        raise
    lines = [f"{spec.uri} -> {segmenter.backend.name} -> {out.uri}" for spec, out in zip(specs, outs)]
    return MultiCamera(segmenter, sources, sinks, pipeline_options, batch_wait_s, say, [out.uri for out in outs]).run(
        keep_signal_handlers, announce="\n".join(lines))

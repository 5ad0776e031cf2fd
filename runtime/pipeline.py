"""The camera pipeline: capture -> inference -> overlay/output, three threads joined by bounded queues.

    from runtime.pipeline import run
    summary = run("dannet.onnx", "v4l2:///dev/video0", "file://night.mp4", visualize="both")
    run("dannet_confidence.onnx", "drive.mp4", "null://", confidence_out="confidence/")  # 8-bit grey PNGs
    run("dannet.onnx", "drive.mp4", "out.mp4", temporal=TemporalOptions("hysteresis", frames=3))  # steadier masks

Live sources (cameras, RTSP, ``test://``) drop the oldest waiting frame when inference falls behind, so
what is shown is as fresh as inference allows and memory never grows; files and images keep every
frame. Ctrl-C / SIGTERM stop capture, let the queued frames through and finish the output file.

Several cameras (runtime/multicam.py) are built from the same parts: ``Camera``, one input's capture and
output stages, and ``run_stages``, which runs any set of stages as threads (supervision, periodic reports,
signals, the summary).
"""
from __future__ import annotations

import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .backends import ModelInfo
from .errors import EXIT_FAILED, DannetError
from .gst import MediaError
from .overlay import CONFIDENCE_MODES, legend, visualize
from .segmenter import Segmenter
from .sinks import (OutputClosed, Sink, files_written_over, frame_file, image_layout, images_sharing_a_file,
                    open_sink)
from .sources import CaptureOptions, Frame, Source, SourceLost, UnreadableImage, open_source
from .stats import JsonLines, PipelineStats, format_report, format_summary
from .temporal import TemporalFilter, TemporalOptions
from .uris import InputSpec, OutputSpec, parse_input, parse_output

#: frames per second stamped on outputs when the source does not say (images, variable-rate streams)
DEFAULT_RATE = Fraction(30)
MAX_BACKOFF_S = 30.0


class Aborted(Exception):
    """A stage failed; the others stop without draining."""


class FrameQueue:
    """A bounded hand-over between two stages. ``drop_oldest``: a full queue discards its oldest item and
    counts it (live sources); otherwise ``put`` waits for room (files: every frame is kept). ``on_room`` is
    called whenever ``get`` has made room, outside this queue's lock: for a producer that feeds several queues
    and waits on a lock of its own for one of them to have room (the inference of several cameras)."""

    def __init__(self, capacity: int, drop_oldest: bool, on_drop: Callable[[], None] = lambda: None,
                 on_room: Callable[[], None] = lambda: None) -> None:
        self.capacity, self.drop_oldest, self.on_drop, self.on_room = capacity, drop_oldest, on_drop, on_room
        self.items: deque = deque()
        self.ready = threading.Condition()
        self.closed = self.aborted = False
        self.high_water = 0

    def put(self, item: Any) -> None:
        with self.ready:
            while len(self.items) >= self.capacity and not self.drop_oldest and not self.aborted:
                self.ready.wait()
            if self.aborted:
                raise Aborted
            if len(self.items) >= self.capacity:
                self.items.popleft()
                self.on_drop()
            self.items.append(item)
            self.high_water = max(self.high_water, len(self.items))
            self.ready.notify_all()

    def get(self) -> Any:
        """The next item, or None once the queue is closed and empty."""
        with self.ready:
            while not self.items and not self.closed and not self.aborted:
                self.ready.wait()
            if self.aborted:
                raise Aborted
            if not self.items:
                return None
            item = self.items.popleft()
            self.ready.notify_all()
        self.on_room()
        return item

    def has_room(self) -> bool:
        """Whether ``put`` would add an item now without waiting or dropping one."""
        with self.ready:
            return len(self.items) < self.capacity

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify_all()

    def abort(self) -> None:
        with self.ready:
            self.aborted = True
            self.ready.notify_all()


@dataclass(frozen=True)
class PipelineOptions:
    visualize: str = "overlay"        # overlay | mask | both | confidence | overlay-confidence
    alpha: float = 0.5
    legend: bool = False              # a panel naming the classes in view
    queue_size: int = 2
    max_frames: int = 0               # stop after this many captured frames (0: no limit)
    loop: int = 0                     # files/images: passes after the first (-1: for ever)
    reconnect: int = 5                # live sources: attempts after a loss (0: stop cleanly instead)
    reconnect_delay_s: float = 1.0    # first wait; doubles per attempt, at most MAX_BACKOFF_S
    stall_timeout_s: float = 10.0     # live source silent this long = lost
    stats_interval_s: float = 5.0     # 0: no periodic report
    stats_json: str | None = None
    temporal: TemporalOptions = TemporalOptions()  # a stabiliser of the labels shown (runtime/temporal.py)


def check_confidence_wanted(info: ModelInfo, model: str, visualize: str, confidence_out: bool) -> None:
    """A one-line error (exit 2) when the confidence is asked for and ``model`` has no confidence output."""
    wanted = [flag for flag, asked in ((f"--visualize {visualize}", visualize in CONFIDENCE_MODES),
                                       ("--confidence-out", confidence_out)) if asked]
    if wanted and not info.confidence:
        raise DannetError(f"{' and '.join(wanted)}: {model} has no confidence output; export it with "
                          "dannet-export onnx|pt2 --confidence")


@dataclass(frozen=True)
class Stage:
    """One thread of a run: ``work`` until its input ends, then ``then`` (close what it feeds, finish its output)
    whatever happened. An error in a stage that ``drains`` (a capture) still lets what is queued through the
    later stages; an error anywhere else aborts every stage."""

    name: str
    work: Callable[[], None]
    then: Callable[[], None]
    drains: bool = False


class RunControl:
    """What the stages of one run share: the stop flag the captures watch, the errors that end the run (the
    first is raised by ``run_stages`` on the calling thread), the errors that ended one camera only (raised at the
    end when nothing ended the run), the signals received, and how to abort its queues."""

    def __init__(self, abort_queues: Callable[[], None], say: Callable[[str], None] = print) -> None:
        self.abort_queues, self.say = abort_queues, say
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.camera_errors: list[BaseException] = []  # ``fail_at_end``
        self.signals: list[int] = []  # the first two SIGINT/SIGTERM received (later ones change nothing)

    def stop(self) -> None:
        """Stop capturing; what is queued goes through and the outputs are finished (Ctrl-C does this)."""
        self.stopping.set()

    def fail_at_end(self, error: BaseException) -> None:
        """An error that ends one camera while the others go on: the run still ends with it (exit 1), unless an
        error ends the run itself, which is the one to report."""
        self.camera_errors.append(error)

    def abort(self) -> None:
        """Stop every stage now, queued frames unprocessed (the outputs are still finished)."""
        self.stopping.set()
        self.abort_queues()

    def thread(self, stage: Stage) -> threading.Thread:
        """``stage`` as a thread that records its error instead of dying with it."""
        def body() -> None:
            try:
                stage.work()
            except Aborted:
                pass
            except OutputClosed as e:  # a viewer closed its window: stop like Ctrl-C, without draining
                self.say(f"{e}: stopping")
                self.abort()
            except BaseException as e:  # raised by run_stages on the calling thread
                self.errors.append(e)
                self.stopping.set()
                if not stage.drains:  # inference/output cannot go on; capture errors still drain
                    self.abort()
            finally:
                stage.then()
        return threading.Thread(target=body, name=stage.name, daemon=True)


def run_stages(stages: Sequence[Stage], control: RunControl, options: PipelineOptions, *,
               report_window: Callable[[], dict], report_summary: Callable[[], dict], close_sources: Callable[[], None],
               outputs: str = "the output", keep_signal_handlers: bool = False, announce: str | None = None) -> dict:
    """Run ``stages`` to their end and return the summary: the skeleton of ``Pipeline.run`` and ``MultiCamera.run``.

    SIGINT/SIGTERM stop the run cleanly (``install_stop_handlers``); with ``keep_signal_handlers`` the handlers
    stay installed after it returns, so a late signal cannot end the process with another status than the run's
    (dannet-run). ``announce`` is said once those handlers are in place: from then on a signal is a clean stop.
    Every ``options.stats_interval_s`` the run says and journals ``report_window()`` (--stats-json); at the end,
    after ``close_sources()``, ``report_summary()``. ``outputs`` names what a stop finishes, for its notice. The
    first error of a stage is raised here, after the summary, with every output finished."""
    handlers = install_stop_handlers(control.signals, control.stop, control.abort)
    if announce:
        control.say(announce)
    try:
        journal = JsonLines(options.stats_json)
        threads = [control.thread(stage) for stage in stages]
        for thread in threads:
            thread.start()
        try:
            _supervise(threads, control, options.stats_interval_s, journal, report_window, outputs)
        except BaseException:  # e.g. --stats-json on a full disk: stop, but still finish the outputs
            control.abort()
            for thread in threads:
                thread.join()
            raise
        finally:
            close_sources()
        summary = report_summary()
        journal.write(summary)
        journal.close()
    finally:
        if not keep_signal_handlers:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    if control.errors or control.camera_errors:
        raise (control.errors or control.camera_errors)[0]
    return summary


def _supervise(threads: list[threading.Thread], control: RunControl, interval_s: float, journal: JsonLines,
               report_window: Callable[[], dict], outputs: str) -> None:
    """Until every stage has ended: periodic reports, and the notice of a signal (said here, not in the
    handler: a print interrupted by a handler that prints fails as a reentrant call)."""
    next_report = time.perf_counter() + interval_s
    noticed = 0
    while any(thread.is_alive() for thread in threads):
        threads[-1].join(timeout=0.1)
        for index in range(noticed, len(control.signals)):
            what = f"stopping, finishing {outputs} (again to hurry)" if index == 0 else \
                f"skipping the queued frames, finishing {outputs}"
            control.say(f"\n{signal.Signals(control.signals[index]).name}: {what}")
        noticed = len(control.signals)
        if interval_s and time.perf_counter() >= next_report:
            journal.write(report_window())
            next_report += interval_s


def install_stop_handlers(signals: list[int], stop: Callable[[], None], abort: Callable[[], None]) -> dict:
    """SIGINT/SIGTERM: a clean stop; a second one: stop without draining (outputs are still finished). The
    handler only records the signal in ``signals`` and sets flags; after the run it does nothing that changes
    the outcome. Returns the handlers it replaced (none off the main thread, where Python allows no handler)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, _frame: Any) -> None:
        if len(signals) < 2:
            signals.append(signum)
        if len(signals) > 1:
            abort()
        stop()

    return {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}


class Camera:
    """One input's own stages, either side of an inference stage that is not its own: ``capture`` reads the
    source (reconnecting a lost camera, looping files, stopping at --frames) and hands its frames on;
    ``output`` takes the labels that inference puts into ``inferred`` through --temporal, the overlay and the
    sink(s); ``finish_output`` closes them. ``stats`` counts and times all of it, inference included.

    A ``Pipeline`` runs one camera with an inference stage of its own; ``MultiCamera`` (runtime/multicam.py)
    runs several around a shared one, so one camera behaves the same either way."""

    def __init__(self, info: ModelInfo, source: Source, sink: Sink, options: PipelineOptions, control: RunControl,
                 confidence_sink: Sink | None = None, on_output_room: Callable[[], None] = lambda: None,
                 ends_alone: bool = False) -> None:
        check_confidence_wanted(info, "the model", options.visualize, confidence_sink is not None)
        options.temporal.check_model(info.confidence, "the model")
        self.info, self.source, self.sink, self.options, self.control = info, source, sink, options, control
        self.confidence_sink = confidence_sink
        self.stats = PipelineStats()
        #: (frame, labels, confidence or None) from inference, in capture order; closed when inference is done.
        #: ``on_output_room``: the output took one (a shared inference serves this camera only when there is room)
        self.inferred = FrameQueue(options.queue_size, drop_oldest=False, on_room=on_output_room)
        self.stable = TemporalFilter(options.temporal)
        #: the index of the first frame after each reopening of the source (reconnect, loop pass) that the output
        #: has not reached yet: frames from before it may still be queued, and several may come before it does
        self.reopenings: deque[int] = deque()
        #: with other cameras running, a lost camera that does not come back ends itself only (``fail_at_end``)
        self.ends_alone = ends_alone

    def capture(self, put: Callable[[Frame], None]) -> None:
        """The capture stage: every frame read goes to ``put`` (a queue's, which may wait for room, drop its
        oldest frame or raise ``Aborted``) until the source ends, --frames, a stop, or a lost live source that
        does not come back. An input image that cannot be read is skipped, said and counted (``unreadable``)."""
        options, source, count, passes, attempts, reopened_at = self.options, self.source, 0, 0, 0, 0
        last_frame = time.perf_counter()
        while not self.control.stopping.is_set() and not (options.max_frames and count >= options.max_frames):
            try:
                frame = source.read(timeout=0.1)
                if frame is None and source.spec.live and (
                        source.ended or time.perf_counter() - last_frame > options.stall_timeout_s):
                    raise SourceLost(f"{source.spec.uri}: " + ("the stream ended" if source.ended else
                                                               f"no frame for {options.stall_timeout_s:.0f} s"))
            except UnreadableImage as unreadable:  # the other images do not depend on it: go on without it
                self.control.say(f"warning: {unreadable}; skipped")
                self.stats.count("unreadable")
                continue
            except SourceLost as lost:
                if count == 0:  # nothing has worked yet: a wrong URI or a missing camera, not a lost one
                    raise MediaError(str(lost)) from None
                if not source.spec.live:
                    self.control.say(f"warning: {lost}; ending at the last readable frame ({count} frames)")
                    return
                attempts = self._reconnect(str(lost), attempts)
                if attempts is None:
                    return
                last_frame, reopened_at = time.perf_counter(), count
                self.reopenings.append(count)
                continue
            if frame is None:
                if source.ended:
                    # the last pass, or a pass without a readable frame: another would read none either
                    if options.loop >= 0 and passes >= options.loop or count == reopened_at:
                        return
                    passes += 1
                    source.close()
                    source.open()
                    reopened_at = count
                    self.reopenings.append(count)
                continue
            attempts, last_frame = 0, time.perf_counter()
            frame.index, count = count, count + 1
            self.stats.count("captured")
            self.stats.count("lost_upstream", frame.skipped)
            self.stats.add("capture", frame.captured - frame.arrived)
            put(frame)

    def _reconnect(self, reason: str, attempt: int) -> int | None:
        """Wait (doubling) and reopen a lost live source until it opens: the attempts used so far, or None
        when this capture should end cleanly (``--reconnect 0``, a stop while waiting, or a camera that gives up
        while others go on: the run ends with its error once they have ended)."""
        options, say = self.options, self.control.say
        self.source.close()
        while True:
            if options.reconnect == 0:
                say(f"warning: {reason}; stopping (--reconnect 0)")
                return None
            if attempt >= options.reconnect:
                error = MediaError(f"{reason}; gave up after {attempt} reconnect attempts", EXIT_FAILED)
                if not self.ends_alone:
                    raise error
                say(f"warning: {error}; this camera ends (its output is finished), the others go on")
                self.control.fail_at_end(error)
                return None
            delay = min(options.reconnect_delay_s * 2 ** attempt, MAX_BACKOFF_S)
            say(f"warning: {reason}; reconnecting in {delay:.1f} s ({attempt + 1}/{options.reconnect})")
            if self.control.stopping.wait(delay):
                return None
            attempt += 1
            try:
                self.source.open()
            except MediaError as e:
                reason = str(e)
                continue
            self.stats.count("reconnects")
            return attempt

    def output(self) -> None:
        """The output stage: each inferred frame stabilised (--temporal), drawn and written, until ``inferred``
        is closed and empty."""
        options, info, written, first = self.options, self.info, 0, None
        while (item := self.inferred.get()) is not None:
            frame, labels, confidence = item
            start = time.perf_counter()
            reopened = self._first_since_reopening(frame)
            if options.temporal.mode != "none":
                labels = self._stabilise(frame, labels, confidence, reopened)
                self.stats.add("temporal", time.perf_counter() - start)
                start = time.perf_counter()
            picture = visualize(frame.image, labels, options.visualize, options.alpha, info.palette, confidence)
            if options.legend:
                picture = legend(picture, labels, info.palette, info.class_names)
            middle = time.perf_counter()
            if first is None:
                first, rate = frame, self.source.rate or DEFAULT_RATE
                self.sink.start(picture.shape[1], picture.shape[0], rate)
                if self.confidence_sink is not None:
                    self.confidence_sink.start(confidence.shape[1], confidence.shape[0], rate, grey=True)
            # live: pictures keep their capture times (gaps where frames were dropped); files: evenly spaced
            timestamp = frame.arrived - first.arrived if self.source.spec.live else written / rate
            sent = [self.sink.write(picture, frame, timestamp)]  # False: a live output behind let it go
            if self.confidence_sink is not None:
                sent.append(self.confidence_sink.write(confidence, frame, timestamp))
            written += 1
            end = time.perf_counter()
            self.stats.add("overlay", middle - start)
            self.stats.add("output", end - middle)
            self.stats.add("end_to_end", end - frame.arrived)
            self.stats.count("written")
            self.stats.count("output_skipped", sum(went is False for went in sent))

    def _first_since_reopening(self, frame: Frame) -> bool:
        """Whether ``frame`` is the first shown since the source was reopened (once or more: the frames between
        two reopenings may all have been dropped)."""
        reopened = False
        while self.reopenings and self.reopenings[0] <= frame.index:
            self.reopenings.popleft()
            reopened = True
        return reopened

    def _stabilise(self, frame: Frame, labels: np.ndarray, confidence: np.ndarray | None,
                   reopened: bool) -> np.ndarray:
        """The labels to show (``--temporal``); the stabiliser starts afresh at the first frame after the
        source was reopened. Timed as its own stage."""
        resets = self.stable.resets
        shown = self.stable.update(labels, confidence, reopened, frame.image)
        if self.stable.resets > resets:
            self.stats.count("temporal_resets")
        return shown

    def finish_output(self) -> None:
        """Close the sink(s), each even when the other cannot be; an error (a full disk while finishing the
        file) ends the run like a stage's."""
        for sink in (self.sink, self.confidence_sink):
            if sink is None:
                continue
            try:
                sink.close()
            except Exception as e:
                self.control.errors.append(e)


class Pipeline:
    """Runs one source through a segmenter into one sink (and the confidence levels into ``confidence_sink``):
    a ``Camera``'s capture and output around an inference stage of its own. ``run()`` returns the summary
    statistics; ``stats`` are the camera's, live while it runs."""

    def __init__(self, segmenter: Segmenter, source: Source, sink: Sink, options: PipelineOptions = PipelineOptions(),
                 say: Callable[[str], None] = print, confidence_sink: Sink | None = None) -> None:
        self.segmenter, self.options, self.say = segmenter, options, say
        self.control = RunControl(self._abort_queues, say)
        self.camera = Camera(segmenter.info, source, sink, options, self.control, confidence_sink)
        self.stats = self.camera.stats
        self.captured = FrameQueue(options.queue_size, drop_oldest=source.spec.live,
                                   on_drop=lambda: self.stats.count("dropped"))

    def _infer(self) -> None:
        prepare, infer, inferred = self.segmenter.prepare, self.segmenter.backend.infer, self.camera.inferred
        while (frame := self.captured.get()) is not None:
            start = time.perf_counter()
            batch = prepare(frame.image)[None]
            middle = time.perf_counter()
            result = infer(batch)
            self.stats.add("preprocess", middle - start)
            self.stats.add("inference", time.perf_counter() - middle)
            self.stats.count("processed")
            confidence = result.confidence[0] if result.confidence is not None else None
            inferred.put((frame, result.labels[0], confidence))

    def _abort_queues(self) -> None:
        self.captured.abort()
        self.camera.inferred.abort()

    def stop(self) -> None:
        """Stop capturing; what is queued goes through and the output is finished (Ctrl-C does this)."""
        self.control.stop()

    def run(self, keep_signal_handlers: bool = False, announce: str | None = None) -> dict:
        """Run to the end and return the summary; signals, ``keep_signal_handlers`` and ``announce`` as
        ``run_stages`` says."""
        camera = self.camera
        stages = [Stage("capture", partial(camera.capture, self.captured.put), self.captured.close, drains=True),
                  Stage("inference", self._infer, camera.inferred.close),
                  Stage("output", camera.output, camera.finish_output)]
        return run_stages(stages, self.control, self.options, report_window=self._report_window,
                          report_summary=self._report_summary, close_sources=camera.source.close,
                          keep_signal_handlers=keep_signal_handlers, announce=announce)

    def _report_window(self) -> dict:
        report = self.stats.window_report()
        self.say(format_report(report))
        return report

    def _report_summary(self) -> dict:
        summary = self.stats.summary()
        summary["queue_high_water"] = max(self.captured.high_water, self.camera.inferred.high_water)
        self.say(format_summary(summary))
        return summary


def same_destination(a: OutputSpec, b: OutputSpec) -> bool:
    """Whether two outputs would write the same video file or into the same image folder (whose pictures would
    overwrite each other's), or serve on the same RTSP port."""
    def folder(spec: OutputSpec) -> Path:
        path = Path(spec.location)
        return path if spec.location.endswith("/") or not path.suffix or path.is_dir() else path.parent

    if a.kind == b.kind == "video":
        return Path(a.location).resolve() == Path(b.location).resolve()
    if a.kind == b.kind == "images":
        return folder(a).resolve() == folder(b).resolve()
    return a.kind == b.kind == "rtsp" and a.port == b.port


def check_destinations(outputs: Sequence[tuple[str, OutputSpec | None]]) -> None:
    """A one-line error when two of a run's outputs, ``(flag, spec)`` pairs of every camera (None: not asked
    for), share a destination (``same_destination``); checked before any output is opened, so a refused run
    leaves nothing behind."""
    outputs = [(flag, spec) for flag, spec in outputs if spec is not None]
    for index, (flag, spec) in enumerate(outputs):
        for earlier_flag, earlier in outputs[:index]:
            if same_destination(earlier, spec):
                raise DannetError(f"{flag} {spec.uri}: the same destination as {earlier_flag} {earlier.uri}; give "
                                  "it its own file, folder or port")


#: one camera's input and its outputs as ``(flag, spec)`` pairs (None: not asked for)
CameraRoute = tuple[InputSpec, Sequence[tuple[str, OutputSpec | None]]]


def input_files(spec: InputSpec) -> tuple[Path, ...]:
    """The files an input reads: its images, or its video file (cameras and streams: none)."""
    return spec.images if spec.kind == "images" else (Path(spec.location),) if spec.kind == "video" else ()


def check_inputs_kept(cameras: Sequence[CameraRoute]) -> None:
    """A one-line error when an output of any camera would write over an input file of any camera (an image
    folder written into itself, a video given again as its output), or would write two images of its own input
    to one file; checked before anything is opened, so a refused run reads and writes nothing."""
    inputs = {path.resolve(): (spec, path) for spec, _ in cameras for path in input_files(spec)}
    for source, outputs in cameras:
        for flag, out in outputs:
            if out is None:
                continue
            if overwritten := files_written_over(out, source, inputs.keys()):
                owner, path = inputs[overwritten[0]]
                raise DannetError(f"{flag} {out.uri} would write over {path}, an input (--input {owner.uri}); "
                                  "write the output elsewhere")
            if shared := images_sharing_a_file(out, source):
                first, second = shared
                raise DannetError(f"{flag} {out.uri} would write {first} and {second} (--input {source.uri}) to one "
                                  f"file, {frame_file(out.location, 0, first.stem)}, the second over the first; "
                                  "rename one, or write to a pattern such as out/%05d.png")


def several_frames(spec: InputSpec, options: PipelineOptions) -> bool:
    """Whether a run reads more than one frame from ``spec``: anything but a single image read once (``--loop``
    reads it again), unless ``--frames 1`` stops it after the first."""
    if options.max_frames == 1:
        return False
    return spec.kind != "images" or len(spec.images) > 1 or options.loop != 0


def check_single_image_outputs(cameras: Sequence[CameraRoute], options: PipelineOptions) -> None:
    """A one-line error when an output of any camera is one image file (``out.png``) and its input has several
    frames: the second frame could only fail, after the first was written; checked before anything is opened."""
    for source, outputs in cameras:
        for flag, out in outputs:
            if out is not None and out.kind == "images" and image_layout(out.location) == "file" and \
                    several_frames(source, options):
                folder = Path(out.location).parent / Path(out.location).stem
                raise DannetError(f"{flag} {out.uri}: one image file, but --input {source.uri} has several frames; "
                                  f"expected a pattern such as {folder / '%05d.png'} or a folder {folder}/ "
                                  "(or --frames 1)")


def check_looped_image_folders(cameras: Sequence[CameraRoute], options: PipelineOptions) -> None:
    """A one-line error when an output of any camera is an image folder, which names each picture after its input
    image, and ``--loop`` reads those images again: every pass after the first would write over the pictures of
    the one before (unless ``--frames`` stops the run within the first); checked before anything is opened."""
    for source, outputs in cameras:
        if options.loop == 0 or source.kind != "images" or 0 < options.max_frames <= len(source.images):
            continue
        for flag, out in outputs:
            if out is not None and out.kind == "images" and image_layout(out.location) == "folder":
                raise DannetError(f"{flag} {out.uri}: an image folder names each picture after its input image, and "
                                  f"--loop reads --input {source.uri} again, the next pass over this one's pictures; "
                                  f"write to a pattern such as {Path(out.location) / '%05d.png'} (or drop --loop)")


def check_routes(cameras: Sequence[CameraRoute], options: PipelineOptions) -> None:
    """Every check of the cameras' inputs and outputs that needs no model and opens nothing, for one camera and
    several alike: no two outputs share a destination, none writes over an input, no single image file takes
    several frames, no image folder takes a looped pass over its pictures."""
    check_destinations([output for _, outputs in cameras for output in outputs])
    check_inputs_kept(cameras)
    check_single_image_outputs(cameras, options)
    check_looped_image_folders(cameras, options)


def open_outputs(out: OutputSpec, confidence: OutputSpec | None, codec: str, bitrate_kbps: int,
                 say: Callable[[str], None] = print) -> tuple[Sink, Sink | None]:
    """One camera's sinks: its pictures (--output) and, when asked for, its confidence levels (--confidence-out);
    ``say`` takes their warnings."""
    sink = open_sink(out, codec, bitrate_kbps, "--output", say)
    return sink, open_sink(confidence, codec, bitrate_kbps, "--confidence-out", say) if confidence is not None else None


def describe_outputs(out: OutputSpec, confidence: OutputSpec | None) -> str:
    """Where one camera's pictures (and confidence levels) go, for the line a run starts with."""
    return out.uri + (f" + confidence -> {confidence.uri}" if confidence is not None else "")


def run(model: str, input_uri: str, output_uri: str, *, backend: str = "auto", capture: CaptureOptions = CaptureOptions(),
        codec: str = "h264", bitrate_kbps: int = 4000, confidence_out: str | None = None,
        say: Callable[[str], None] = print, keep_signal_handlers: bool = False, **options: Any) -> dict:
    """``dannet-run`` as a function: URIs and model checked first (one-line errors), then the pipeline.
    ``confidence_out``: a second output URI for the confidence levels as 8-bit grey pictures at the model's
    output size (models exported with ``--confidence``). The summary's ``unreadable`` counts input images
    skipped because they could not be read (dannet-run then exits 3)."""
    spec, out = parse_input(input_uri), parse_output(output_uri)
    confidence_spec = parse_output(confidence_out) if confidence_out is not None else None
    pipeline_options = PipelineOptions(**options)
    check_routes([(spec, [("--output", out), ("--confidence-out", confidence_spec)])], pipeline_options)
    with Segmenter(model, backend) as segmenter:  # the model is released when the run ends, however it ends
        check_confidence_wanted(segmenter.info, model, pipeline_options.visualize, confidence_spec is not None)
        pipeline_options.temporal.check_model(segmenter.info.confidence, model)
        sink, confidence_sink = open_outputs(out, confidence_spec, codec, bitrate_kbps, say)
        source = open_source(spec, capture)
        outputs = describe_outputs(out, confidence_spec)
        return Pipeline(segmenter, source, sink, pipeline_options, say, confidence_sink).run(
            keep_signal_handlers, announce=f"{spec.uri} -> {segmenter.backend.name} -> {outputs}")

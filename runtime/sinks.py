"""Outputs: video files, a display window and an RTSP server through GStreamer (appsrc); images through
Pillow; ``null://``. A sink opens on its first picture (the size is known then) and ``close()``
finishes the stream: end of stream through the muxer, so a file stopped by Ctrl-C still plays.
Pictures are RGB (H x W x 3) or 8-bit grey (H x W: ``dannet-run --confidence-out``); one stream is one kind
and one size, the first picture's: a later picture of another size (a folder of mixed images) is stretched
to it (``StreamSize``).

MP4 and MOV files are written in fragments of one second, each with its own index, so a file that
could not be finished (a full disk, a crash) plays up to its last complete fragment; Matroska plays
when cut anyway. An output that fails mid-stream stops the run with one line, never a hang.
"""
from __future__ import annotations

import os
import re
import threading
from fractions import Fraction
from pathlib import Path
from typing import AbstractSet, Any, Callable, Protocol

import numpy as np
from PIL import Image

from .atomic import atomic_save_image, check_folder_writable, check_writable
from .errors import EXIT_FAILED, OutputError
from .gst import (MediaError, bus_error, describe_message, gst, has_element, is_write_error, launch, pop_error,
                  quote, row_stride)
from .sources import Frame, caps_rate
from .uris import IMAGE_SUFFIXES, InputSpec, OutputSpec

#: encoders by preference: Jetson hardware, desktop NVENC, then software; ``{kbps}``/``{bps}``: bitrate.
#: Each asks for 4:2:0 input: from RGB, x264 would otherwise pick 4:4:4, which few players decode.
ENCODERS: dict[str, tuple[tuple[str, str], ...]] = {
    "h264": (("nvv4l2h264enc", "video/x-raw,format=RGBA ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! "
                               "nvv4l2h264enc bitrate={bps} insert-sps-pps=true"),
             ("nvh264enc", "video/x-raw,format=NV12 ! nvh264enc bitrate={kbps}"),
             ("x264enc", "video/x-raw,format=I420 ! x264enc bitrate={kbps} speed-preset=veryfast tune=zerolatency key-int-max=30"),
             ("openh264enc", "video/x-raw,format=I420 ! openh264enc bitrate={bps}")),
    "h265": (("nvv4l2h265enc", "video/x-raw,format=RGBA ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! "
                               "nvv4l2h265enc bitrate={bps} insert-sps-pps=true"),
             ("nvh265enc", "video/x-raw,format=NV12 ! nvh265enc bitrate={kbps}"),
             ("x265enc", "video/x-raw,format=I420 ! x265enc bitrate={kbps} speed-preset=veryfast tune=zerolatency")),
    "mjpeg": (("jpegenc", "video/x-raw,format=I420 ! jpegenc quality=90"),),
}
PARSERS = {"h264": "h264parse", "h265": "h265parse"}
PAYLOADERS = {"h264": "rtph264pay config-interval=1", "h265": "rtph265pay config-interval=1", "mjpeg": "rtpjpegpay"}
#: container -> (muxer, codecs it holds); MP4/MOV fragmented (ms), so a file cut short still plays
MUXERS = {".mp4": ("mp4mux fragment-duration=1000", ("h264", "h265")),
          ".mov": ("qtmux fragment-duration=1000", ("h264", "h265", "mjpeg")),
          ".mkv": ("matroskamux", ("h264", "h265", "mjpeg")), ".avi": ("avimux", ("h264", "mjpeg"))}
#: how long ``write`` waits for a full appsrc queue to drain between looks at the bus for errors
ROOM_POLL_S = 0.01
#: how long ``close`` waits for the muxer to finish the file
EOS_TIMEOUT_S = 60.0
#: pictures an RTSP stream keeps waiting for its encoder (more written meanwhile are let go: counted while it
#: plays, the oldest replaced while it does not)
RTSP_QUEUE = 2
#: how long ``close`` waits for the RTSP server's thread to finish what it is doing
RTSP_STOP_S = 5.0
#: an image folder's file names for frames without a name of their own (not from an image input)
INDEX_NAME = "%06d.png"


class OutputClosed(Exception):
    """The viewer closed the display window: a request to stop, not an error."""


class Sink(Protocol):
    """``write`` returns whether the picture went on; False only where the output is live and its consumer
    behind (an RTSP stream's encoder), which let the picture go rather than wait or grow: the run counts it."""
    def start(self, width: int, height: int, rate: Fraction, grey: bool = False) -> None: ...
    def write(self, picture: np.ndarray, frame: Frame, timestamp: float) -> bool: ...
    def close(self) -> None: ...


def encoder(codec: str, bitrate_kbps: int, what: str) -> str:
    """The launch text of the best available encoder for ``codec`` (+ its parser where installed)."""
    if codec not in ENCODERS:
        raise MediaError(f"--codec {codec}: expected one of {', '.join(ENCODERS)}")
    for element, text in ENCODERS[codec]:
        if has_element(element):
            parser = PARSERS.get(codec)
            text = text.format(kbps=bitrate_kbps, bps=1000 * bitrate_kbps)
            return f"{text} ! {parser}" if parser and has_element(parser) else text
    tried = ", ".join(e for e, _ in ENCODERS[codec])
    raise MediaError(f"{what}: no {codec} encoder in this GStreamer (tried {tried}); "
                     "install gstreamer1.0-plugins-ugly or choose another --codec")


def _caps(width: int, height: int, rate: Fraction, grey: bool) -> str:
    """The appsrc's caps, and for grey pictures their conversion to RGB: videoconvert copies GRAY8 unscaled into
    the luma of the 4:2:0 video encoders take, which decoders then stretch as limited-range luma (levels off by
    up to 19 after a round trip, measured); from RGB the levels come back within the codec's loss."""
    caps = f"video/x-raw,format={'GRAY8' if grey else 'RGB'},width={width},height={height},framerate={caps_rate(rate)}"
    return f"{caps} ! videoconvert ! video/x-raw,format=RGB" if grey else caps


def _buffer(picture: np.ndarray, timestamp: float | None, rate: Fraction) -> Any:
    """A GStreamer buffer of the picture (rows padded to 4 bytes, as RGB and GRAY8 video in GStreamer are laid
    out)."""
    Gst = gst()
    rows = picture.reshape(picture.shape[0], -1)
    pad = row_stride(rows.shape[1]) - rows.shape[1]
    data = np.pad(rows, ((0, 0), (0, pad))) if pad else rows
    buffer = Gst.Buffer.new_wrapped(data.tobytes())
    if timestamp is not None:
        buffer.pts = int(timestamp * Gst.SECOND)
        buffer.duration = int(Gst.SECOND / rate)
    return buffer


def to_even_size(width: int, height: int) -> str:
    """The launch text that stretches pictures of an odd width or height by one pixel to the even size 4:2:0
    encoders need (x264 refuses odd sizes), ending in `` ! ``; "" for even sizes."""
    even_width, even_height = width + width % 2, height + height % 2
    if (even_width, even_height) == (width, height):
        return ""
    return f"videoscale ! video/x-raw,width={even_width},height={even_height} ! "


class StreamSize:
    """The one picture size of a video or RTSP stream, set by its first picture: the stream's caps say it, and a
    buffer of another size pushed under them is read as garbage. A later picture of another size is stretched
    to it (bilinear), and said once: a video made from a folder of mixed images is still a video of every
    image."""

    def __init__(self, uri: str, width: int, height: int, say: Callable[[str], None]) -> None:
        self.uri, self.width, self.height, self.say = uri, width, height, say
        self.stretched = False

    def fit(self, picture: np.ndarray) -> np.ndarray:
        if picture.shape[:2] == (self.height, self.width):
            return picture
        if not self.stretched:
            self.say(f"warning: {self.uri}: pictures not at the stream's {self.height}x{self.width} (its first "
                     f"picture's size) are stretched to it, starting with a {picture.shape[0]}x{picture.shape[1]} one")
            self.stretched = True
        return np.asarray(Image.fromarray(picture).resize((self.width, self.height), Image.BILINEAR))


class AppsrcSink:
    """A GStreamer pipeline fed by an appsrc: a video file (``file://*.mp4|mkv|avi|mov``) or a window.

    The appsrc does not block: ``write`` waits for room itself, looking at the bus meanwhile, because a
    blocking push into a pipeline that has failed (a full disk stops its filesink) never returns."""

    def __init__(self, spec: OutputSpec, codec: str = "h264", bitrate_kbps: int = 4000, flag: str = "--output",
                 say: Callable[[str], None] = print) -> None:
        self.spec, self.pipeline, self.failed, self.say = spec, None, False, say
        if spec.kind == "display":
            if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
                raise MediaError(f"{spec.uri}: no display here (DISPLAY/WAYLAND_DISPLAY unset); "
                                 "write a file:// or serve rtsp:// instead")
            self.tail = "{scale}videoconvert ! autovideosink sync=false"
            return
        suffix = Path(spec.location).suffix.lower()
        muxer, codecs = MUXERS[suffix]
        if codec not in codecs:
            raise MediaError(f"{spec.uri}: {suffix} files cannot hold {codec}; use --codec {' or '.join(codecs)}")
        if not Path(spec.location).resolve().parent.is_dir():
            raise MediaError(f"{spec.uri}: folder {Path(spec.location).parent} does not exist")
        check_writable(spec.location, flag)
        self.tail = f"{{scale}}videoconvert ! {encoder(codec, bitrate_kbps, spec.uri)} ! {muxer} ! " \
                    f"filesink location={quote(spec.location)}"

    def start(self, width: int, height: int, rate: Fraction, grey: bool = False) -> None:
        Gst = gst()
        self.rate, self.size = rate, StreamSize(self.spec.uri, width, height, self.say)
        scale = to_even_size(width, height)
        self.max_bytes = 3 * (1 if grey else 3) * width * height  # three pictures queued
        self.pipeline = launch(f"appsrc name=pictures format=time block=false max-bytes={self.max_bytes} "
                               f"caps={_caps(width, height, rate, grey)} ! {self.tail.format(scale=scale)}",
                               self.spec.uri)
        self.appsrc = self.pipeline.get_by_name("pictures")
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise MediaError(f"{self.spec.uri}: {bus_error(self.pipeline) or 'cannot start'}")

    def write(self, picture: np.ndarray, frame: Frame, timestamp: float) -> bool:
        self._wait_for_room()
        buffer = _buffer(self.size.fit(picture), timestamp, self.rate)
        if self.appsrc.emit("push-buffer", buffer) != gst().FlowReturn.OK:
            message = pop_error(self.pipeline, ROOM_POLL_S)
            self.failed = True
            raise self._error(message) if message is not None else \
                MediaError(f"{self.spec.uri}: the output stopped", EXIT_FAILED)
        return True

    def _wait_for_room(self) -> None:
        """Return once the queue has room for a picture; raise as soon as the pipeline reports an error."""
        wait = 0.0
        while True:
            message = pop_error(self.pipeline, wait)
            if message is not None:
                raise self._error(message)
            if self.appsrc.get_property("current-level-bytes") < self.max_bytes:
                return
            wait = ROOM_POLL_S

    def _error(self, message) -> Exception:
        """What an error on the bus means: a closed window ends the run like Ctrl-C; a file that cannot be
        written is an I/O error; anything else stops the run. The pipeline can take no more either way."""
        error = describe_message(message)
        self.failed = True
        if self.spec.kind == "display" and "closed" in error.lower():  # "Output window was closed"
            self._stop()
            return OutputClosed(f"{self.spec.uri}: window closed")
        if is_write_error(message):
            return OutputError(f"{self.spec.uri}: cannot write ({error}); the video written so far is kept and plays")
        return MediaError(f"{self.spec.uri}: {error}", EXIT_FAILED)

    def _stop(self) -> None:
        self.pipeline.set_state(gst().State.NULL)
        self.pipeline = None

    def close(self) -> None:
        """End of stream, then wait for the muxer to write its index (an mp4 without one does not play).
        A pipeline that failed can take no end of stream: it is only stopped."""
        if self.pipeline is None:
            return
        if self.failed:
            self._stop()
            return
        Gst = gst()
        self.appsrc.emit("end-of-stream")
        message = self.pipeline.get_bus().timed_pop_filtered(int(EOS_TIMEOUT_S * Gst.SECOND),
                                                             Gst.MessageType.EOS | Gst.MessageType.ERROR)
        error = None if message is None or message.type == Gst.MessageType.EOS else self._error(message)
        if self.pipeline is not None:
            self._stop()
        if message is None:
            raise MediaError(f"{self.spec.uri}: no end of stream within {EOS_TIMEOUT_S:.0f} s", EXIT_FAILED)
        if error is not None and not isinstance(error, OutputClosed):
            raise error


class RtspSink:
    """An RTSP server (GstRtspServer) at ``rtsp://@:PORT/NAME``; every client sees the live overlay.

    At most ``RTSP_QUEUE`` pictures wait for the encoder, so memory stays flat whatever its speed. While the
    stream plays, a picture written while they wait is let go: ``write`` returns False and the run counts it as
    ``output_skipped`` (the encoder is behind). The appsrc is fed only here, so the level read before a push can
    only fall until it: the count is exact while the stream plays (appsrc's own leaky queue counts nothing
    before GStreamer 1.24). While it does not (a client between DESCRIBE and PLAY, or paused, or gone without
    a TEARDOWN) nobody misses a picture: the appsrc's leaky queue keeps the newest, so a client that starts or
    resumes sees the present, not pictures from when it stopped. An error in the media that serves the
    clients (an encoder refusing the pictures) stops the run at the next ``write``, as a failing file output
    does: without it the run would go on with every client failing."""

    def __init__(self, spec: OutputSpec, codec: str = "h264", bitrate_kbps: int = 4000,
                 say: Callable[[str], None] = print) -> None:
        gst()  # GStreamer initialised before its RTSP server library
        try:
            import gi

            gi.require_version("GstRtspServer", "1.0")
            from gi.repository import GLib, GstRtspServer
        except (ImportError, ValueError):
            raise MediaError(f"{spec.uri}: serving RTSP needs apt install gir1.2-gst-rtsp-server-1.0") from None
        if codec not in PAYLOADERS:
            raise MediaError(f"--codec {codec}: expected one of {', '.join(PAYLOADERS)}")
        self.spec, self.say = spec, say
        self.stream, self.appsrc, self.lock = encoder(codec, bitrate_kbps, spec.uri), None, threading.Lock()
        self.payloader = PAYLOADERS[codec]
        self.GLib, self.GstRtspServer, self.server = GLib, GstRtspServer, None
        #: the first error the media posted (set on its streaming thread, raised by ``write``)
        self.media_error: str | None = None
        #: whether the media is playing to a client (set on the server's thread, from the media's new-state)
        self.playing = False

    def start(self, width: int, height: int, rate: Fraction, grey: bool = False) -> None:
        self.rate, self.size = rate, StreamSize(self.spec.uri, width, height, self.say)
        self.context = self.GLib.MainContext.new()
        self.server = self.GstRtspServer.RTSPServer()
        self.server.set_service(str(self.spec.port))
        factory = self.GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( appsrc name=pictures is-live=true format=time do-timestamp=true "
                           f"max-buffers={RTSP_QUEUE} max-bytes=0 leaky-type=downstream "
                           f"caps={_caps(width, height, rate, grey)} ! {to_even_size(width, height)}videoconvert ! "
                           f"{self.stream} ! {self.payloader} name=pay0 pt=96 )")
        factory.set_shared(True)
        factory.connect("media-configure", self._configure)
        self.server.get_mount_points().add_factory(self.spec.location, factory)
        self.loop = None  # close() after a failed attach has no loop to stop
        self.listening = self.server.attach(self.context)  # the id of the listening socket's source; 0: none
        if self.listening == 0:
            raise MediaError(f"{self.spec.uri}: cannot listen on port {self.spec.port} (in use?)")
        self.loop = self.GLib.MainLoop.new(self.context, False)
        self.thread = threading.Thread(target=self.loop.run, name="rtsp-server", daemon=True)
        self.thread.start()
        print(f"dannet-run: serving rtsp://{os.uname().nodename}:{self.server.get_bound_port()}{self.spec.location}",
              flush=True)

    def _configure(self, factory: Any, media: Any) -> None:
        """A media for the clients is made: keep its appsrc, and hear its errors. Its pipeline's bus already has
        the server's watch (one per bus), so the errors are taken as they are posted, as sync messages."""
        pipeline = media.get_element().get_parent()
        bus = pipeline.get_bus()
        bus.enable_sync_message_emission()
        bus.connect("sync-message::error", self._media_failed)
        pipeline.connect("deep-element-added", self._unsynchronised)
        with self.lock:
            self.appsrc, self.playing = media.get_element().get_by_name("pictures"), False
        media.connect("new-state", self._new_state)
        media.connect("unprepared", self._unprepared)

    @staticmethod
    def _unsynchronised(pipeline: Any, bin: Any, element: Any) -> None:
        """The sinks the server adds for each client send pictures as they come instead of waiting for their
        timestamps, as if every client asked for ONVIF's "Rate-Control: no": the pictures are live already. The
        server turns waiting (``sync``) on again on each PLAY, so it is turned off whenever it is turned on, on
        the thread that did it, before the media plays. Waiting, the picture encoded while the media prerolled
        for the client's DESCRIBE could reach its sink after PLAY with a running time far ahead of the clock's:
        the sink waited for it (seen: more than 20 s, 1 connection in 30 to 110 on a busy machine) and nothing
        reached the client."""
        def no_waiting(sink: Any, *_: Any) -> None:
            if sink.get_property("sync"):
                sink.set_property("sync", False)

        factory = element.get_factory()
        if factory is not None and factory.get_name() in ("appsink", "multiudpsink"):
            element.connect("notify::sync", no_waiting)
            no_waiting(element)

    def _new_state(self, media: Any, state: int) -> None:
        with self.lock:
            self.playing = state == gst().State.PLAYING

    def _media_failed(self, bus: Any, message: Any) -> None:
        if self.media_error is None:
            self.media_error = describe_message(message)

    def _unprepared(self, media: Any) -> None:
        with self.lock:
            self.appsrc, self.playing = None, False

    def write(self, picture: np.ndarray, frame: Frame, timestamp: float) -> bool:
        if self.media_error is not None:
            raise MediaError(f"{self.spec.uri}: {self.media_error}", EXIT_FAILED)
        picture = self.size.fit(picture)  # said once even while no client is connected
        with self.lock:
            if self.appsrc is None:  # no client connected: nothing to send, and nothing missed
                return True
            if self.playing and self.appsrc.get_property("current-level-buffers") >= RTSP_QUEUE:
                return False
            self.appsrc.emit("push-buffer", _buffer(picture, None, self.rate))
            return True

    def close(self) -> None:
        """End of stream to the clients, and the listening socket closed: its port is free again at once (a later
        server in this process may take it)."""
        if self.server is None:
            return
        with self.lock:
            if self.appsrc is not None:
                self.appsrc.emit("end-of-stream")
        if self.loop is not None:
            # done on the server's thread, which may not be running its loop yet (a quit before the loop runs is
            # lost) and may hold the listening socket while it does: the port is free once the thread ends
            stop = self.GLib.idle_source_new()
            stop.set_callback(self._stop_serving)
            stop.attach(self.context)
            self.thread.join(RTSP_STOP_S)
        self.server = None

    def _stop_serving(self, *_: Any) -> bool:
        self.context.find_source_by_id(self.listening).destroy()
        self.loop.quit()
        return self.GLib.SOURCE_REMOVE


def image_layout(location: str) -> str:
    """How an image output names its files: ``pattern`` (``out/%05d.png``: by frame index), ``file`` (one image,
    ``out.png``) or ``folder`` (``out/``: after the input image, else by frame index)."""
    if "%" in location:
        return "pattern"
    return "file" if Path(location).suffix.lower() in IMAGE_SUFFIXES else "folder"


def frame_file(location: str, index: int, name: str = "") -> Path:
    """The file the image output at ``location`` writes frame ``index`` to; ``name``: the frame's input image's
    stem, which a folder keeps."""
    layout = image_layout(location)
    if layout == "folder":
        return Path(location) / (f"{name}.png" if name else INDEX_NAME % index)
    return Path(location % index) if layout == "pattern" else Path(location)


def _matches_pattern(pattern: str, path: Path) -> bool:
    """Whether ``pattern % i`` names the file ``path`` (resolved) for some frame index i >= 0."""
    folder, name = Path(pattern).parent, Path(pattern).name
    if folder.resolve() != path.parent:
        return False
    digits = re.fullmatch(r"(\d+)".join(re.escape(part) for part in re.split(r"%(?:0\d+)?d", name)), path.name)
    return digits is not None and digits.lastindex == 1 and name % int(digits[1]) == path.name


def files_written_over(out: OutputSpec, source: InputSpec, files: AbstractSet[Path]) -> list[Path]:
    """Those of ``files`` (resolved paths) that the output ``out`` would write when fed ``source``'s frames: its
    video file, or its images (a folder names them after the input images, else by frame index: any index
    counts, since a live source or ``--loop -1`` has no last one)."""
    if out.kind not in ("video", "images"):
        return []
    layout = "file" if out.kind == "video" else image_layout(out.location)
    if layout == "file":
        return sorted(files & {Path(out.location).resolve()})
    if layout == "folder" and source.kind == "images":
        return sorted(files & {frame_file(out.location, 0, path.stem).resolve() for path in source.images})
    pattern = out.location if layout == "pattern" else str(Path(out.location) / INDEX_NAME)
    return [path for path in sorted(files) if _matches_pattern(pattern, path)]


def images_sharing_a_file(out: OutputSpec, source: InputSpec) -> tuple[Path, Path] | None:
    """Two of ``source``'s images that the image folder ``out`` would write to one file (it keeps the stems:
    ``a.png`` and ``a.jpg``, ``x/frame.png`` and ``y/frame.png``), the second overwriting the first; or None."""
    if out.kind != "images" or source.kind != "images" or image_layout(out.location) != "folder":
        return None
    seen: dict[str, Path] = {}
    for path in source.images:
        if path.stem in seen:
            return seen[path.stem], path
        seen[path.stem] = path
    return None


class ImageSink:
    """Pictures as images: one file, a folder (named after the input image, or by frame index) or a
    ``%d`` pattern (``frame_file``). PNG keeps palette colours and confidence levels exact (grey pictures: 8-bit
    grey PNGs)."""

    def __init__(self, spec: OutputSpec, flag: str = "--output") -> None:
        self.spec, self.written = spec, 0
        self.layout = image_layout(spec.location)
        target = Path(spec.location) if self.layout == "folder" else Path(spec.location).parent
        check_folder_writable(target, flag)
        target.mkdir(parents=True, exist_ok=True)

    def start(self, width: int, height: int, rate: Fraction, grey: bool = False) -> None:
        pass

    def write(self, picture: np.ndarray, frame: Frame, timestamp: float) -> bool:
        if self.layout == "file" and self.written:
            raise MediaError(f"{self.spec.uri}: one image file cannot hold many frames; "
                             "use a folder (out/) or a pattern (out/%05d.png)")
        # an image already there is replaced whole or not at all
        atomic_save_image(frame_file(self.spec.location, frame.index, frame.name), picture)
        self.written += 1
        return True

    def close(self) -> None:
        pass


class NullSink:
    """``null://``: pictures are made (so timings are real) and dropped."""

    def start(self, width: int, height: int, rate: Fraction, grey: bool = False) -> None:
        pass

    def write(self, picture: np.ndarray, frame: Frame, timestamp: float) -> bool:
        return True

    def close(self) -> None:
        pass


def open_sink(spec: OutputSpec, codec: str = "h264", bitrate_kbps: int = 4000, flag: str = "--output",
              say: Callable[[str], None] = print) -> Sink:
    """The sink for an output URI, checked (encoder, container, display, folder) before any frame flows;
    it starts on the first picture with the picture size and the source's frame rate. ``flag`` is the option
    the URI came from, for the messages; ``say`` takes a stream's warnings (``StreamSize``)."""
    if spec.kind == "null":
        return NullSink()
    if spec.kind == "images":
        return ImageSink(spec, flag)
    if spec.kind == "rtsp":
        return RtspSink(spec, codec, bitrate_kbps, say)
    return AppsrcSink(spec, codec, bitrate_kbps, flag, say)

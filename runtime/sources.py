"""Frame sources: cameras, streams and videos through GStreamer (appsink), images through Pillow.

A source hands out ``Frame`` objects from ``read(timeout)``: a frame, or None when none came within the
timeout (``ended`` tells end of stream apart). An error on the way raises ``SourceLost``: the pipeline
reconnects live sources and ends files cleanly at the last readable frame. An image that cannot be read
raises ``UnreadableImage`` instead: the images of a folder do not depend on each other, so the pipeline
skips that one and goes on with the next.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .gst import MediaError, bus_error, describe_message, gst, has_element, launch, pop_error, quote, row_stride
from .uris import InputSpec


#: how long a source that failed to start may take to post the error saying why
START_ERROR_WAIT_S = 1.0


class SourceLost(RuntimeError):
    """The source failed after opening (camera unplugged, stream cut, truncated file)."""


class UnreadableImage(RuntimeError):
    """One input image could not be read (damaged, not an image, a macOS ``._`` file); the source has moved
    past it, so the next ``read`` gives the next image."""


@dataclass
class Frame:
    image: np.ndarray          # H x W x 3 uint8 RGB
    index: int                 # 0, 1, 2, ... in capture order (dropped frames leave gaps)
    arrived: float             # time.perf_counter() when the source handed it over
    captured: float            # ... and when it was a numpy array (arrived + map, or + image decode)
    name: str = ""             # image inputs: the file's stem, kept by image outputs
    skipped: int = 0           # frames the source lost just before this one (gaps in GStreamer's numbering)


@dataclass(frozen=True)
class CaptureOptions:
    size: tuple[int, int] | None = None   # H, W the source delivers (None: as it comes)
    rate: float | None = None             # frames per second (None: as it comes)


class Source(Protocol):
    spec: InputSpec
    ended: bool
    rate: Fraction | None

    def open(self) -> None: ...
    def read(self, timeout: float) -> Frame | None: ...
    def close(self) -> None: ...


def _fraction(rate: float) -> Fraction:
    return Fraction(rate).limit_denominator(1001)


def caps_rate(rate: Fraction) -> str:
    """A frame rate as GStreamer caps spell it (``30/1``; a bare ``30`` would be an int, not a fraction)."""
    return f"{rate.numerator}/{rate.denominator}"


def camera_mode_caps(size: tuple[int, int] | None, rate: Fraction | None) -> str:
    """A capsfilter right after ``v4l2src`` that asks the camera itself for ``--input-size``/``--input-rate``, raw
    or MJPEG (one caps structure each: whichever the camera offers in that mode); "" when neither is given.

    Scaling after decodebin alone would leave the camera in its default mode: a 4K camera asked for 480x640 would
    still send (and the host decode) 4K frames."""
    if size is None and rate is None:
        return ""
    mode = (f",width={size[1]},height={size[0]}" if size else "") + (f",framerate={caps_rate(rate)}" if rate else "")
    return f' ! capsfilter caps="video/x-raw{mode}; image/jpeg{mode}"'


def source_description(spec: InputSpec, options: CaptureOptions) -> str:
    """The ``gst-launch`` description of a GStreamer source ending in an RGB ``appsink`` named ``frames``."""
    h, w = options.size or (0, 0)
    rate = _fraction(options.rate) if options.rate else None
    caps = "video/x-raw,format=RGB" + (f",width={w},height={h}" if w else "") + (f",framerate={caps_rate(rate)}" if rate else "")
    # live sources: GStreamer never queues more than two frames; files: it waits for us (every frame kept)
    appsink = f"appsink name=frames sync=false max-buffers=2 drop={str(spec.live).lower()} enable-last-sample=false"
    if spec.kind == "test":
        w, h, rate = w or 640, h or 480, rate or 30
        return (f"videotestsrc is-live=true pattern={spec.location} ! "
                f"video/x-raw,format=RGB,width={w},height={h},framerate={caps_rate(Fraction(rate))} ! {appsink}")
    if spec.kind == "csi":
        w, h, rate = w or 1280, h or 720, rate or 30
        head = (f"nvarguscamerasrc sensor-id={spec.location} ! video/x-raw(memory:NVMM),width={w},height={h},"
                f"framerate={caps_rate(Fraction(rate))} ! nvvidconv ! video/x-raw,format=BGRx")
    else:
        head = {"v4l2": f"v4l2src device={quote(spec.location)}{camera_mode_caps(options.size, rate)}",
                "rtsp": f"rtspsrc location={quote(spec.location)} latency=200",
                "video": f"filesrc location={quote(spec.location)}"}[spec.kind] + " ! decodebin"
        if has_element("nvvidconv"):  # Jetson: hardware decoders output NVMM buffers; bring them to memory
            head += " ! nvvidconv ! video/x-raw,format=BGRx"
    return f"{head} ! videoconvert ! videoscale ! {'videorate ! ' if rate else ''}{caps} ! {appsink}"


class GstSource:
    """Cameras (csi, v4l2), RTSP streams, video files and ``test://`` through a GStreamer appsink."""

    def __init__(self, spec: InputSpec, options: CaptureOptions = CaptureOptions()) -> None:
        if spec.kind == "csi" and not has_element("nvarguscamerasrc"):
            raise MediaError(f"{spec.uri}: CSI cameras need nvarguscamerasrc (JetPack's GStreamer plugins), "
                             "which this machine does not have")
        self.spec, self.options = spec, options
        self.description = source_description(spec, options)
        self.pipeline: Any = None
        self.ended, self.rate, self.count, self.last_offset = False, None, 0, None

    def open(self, timeout: float = 10.0) -> None:
        Gst = gst()
        self.pipeline = launch(self.description, self.spec.uri)
        self.appsink = self.pipeline.get_by_name("frames")
        self.ended, self.last_offset = False, None
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE or \
                self.pipeline.get_state(int(timeout * Gst.SECOND))[0] == Gst.StateChangeReturn.FAILURE:
            # the element that failed may post its error just after the state change gave up: wait for it
            message = pop_error(self.pipeline, START_ERROR_WAIT_S)
            self.close()
            raise MediaError(f"{self.spec.uri}: {describe_message(message) if message else 'cannot start'}")

    def read(self, timeout: float) -> Frame | None:
        Gst = gst()
        sample = self.appsink.try_pull_sample(int(timeout * Gst.SECOND))
        arrived = time.perf_counter()
        if sample is None:
            error = bus_error(self.pipeline)
            if error:
                raise SourceLost(f"{self.spec.uri}: {error}")
            self.ended = self.appsink.is_eos()
            return None
        structure = sample.get_caps().get_structure(0)
        width, height = structure.get_value("width"), structure.get_value("height")
        if self.rate is None:
            ok, num, den = structure.get_fraction("framerate")
            self.rate = Fraction(num, den) if ok and num > 0 and den > 0 else None
        buffer = sample.get_buffer()
        skipped = 0  # sources that number their frames (cameras, test://) show frames dropped before ours
        if buffer.offset != Gst.BUFFER_OFFSET_NONE:
            if self.last_offset is not None and buffer.offset > self.last_offset + 1:
                skipped = buffer.offset - self.last_offset - 1
            self.last_offset = buffer.offset
        # The frame's one copy, owned by Python. Not ``buffer.map``: with gst-python's overrides (python3-gst-1.0,
        # which comes with the OS PyGObject) the mapped data is a view of GStreamer's pool memory, released by
        # ``unmap`` and reused for later frames; pip's PyGObject copies the mapped memory anyway, as this does.
        data = np.frombuffer(buffer.extract_dup(0, buffer.get_size()), dtype=np.uint8)
        stride = row_stride(3 * width)
        image = data[: stride * height].reshape(height, stride)[:, : 3 * width].reshape(height, width, 3)
        self.count += 1
        return Frame(image, self.count - 1, arrived, time.perf_counter(), skipped=skipped)

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.set_state(gst().State.NULL)
            self.pipeline = None


def rgb8(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB. 16-bit grey (Pillow's ``I;16`` modes) keeps its high byte, as Pillow reads 16-bit
    colour PNGs: Pillow's own conversion would clip every level above 255 to white."""
    if image.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image) >> 8).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


class ImageSource:
    """An image, an image folder or a glob, read with Pillow in name order (frame names are file stems)."""

    def __init__(self, spec: InputSpec, options: CaptureOptions = CaptureOptions()) -> None:
        self.spec, self.options = spec, options
        self.rate = _fraction(options.rate) if options.rate else None
        self.ended, self.position = False, 0
        #: images found unreadable: said and counted once, skipped without a word on later --loop passes
        self.unreadable: set[Path] = set()

    def open(self) -> None:
        self.ended, self.position = False, 0

    def read(self, timeout: float) -> Frame | None:
        while self.position < len(self.spec.images):
            path, arrived = self.spec.images[self.position], time.perf_counter()
            self.position += 1  # past this image even if it cannot be read: the next read gives the next one
            if path in self.unreadable:
                continue
            try:
                with Image.open(path) as image:
                    image = rgb8(image)
                    if self.options.size:
                        image = image.resize(self.options.size[::-1], Image.BILINEAR)
                    array = np.asarray(image)
            except OSError as e:
                self.unreadable.add(path)
                raise UnreadableImage(f"{path}: not a readable image ({e})") from None
            return Frame(array, self.position - 1, arrived, time.perf_counter(), path.stem)
        self.ended = True
        return None

    def close(self) -> None:
        pass


def open_source(spec: InputSpec, options: CaptureOptions = CaptureOptions()) -> Source:
    source: Source = ImageSource(spec, options) if spec.kind == "images" else GstSource(spec, options)
    source.open()
    return source

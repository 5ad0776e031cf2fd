"""Input and output URIs, in the conventions of jetson-inference (pure Python, checked before anything opens).

Inputs:  ``csi://0``, ``v4l2:///dev/video0``, ``file://clip.mp4`` or a path (video, image, image folder,
glob), ``rtsp://host/path``, ``test://`` or ``test://ball`` (a videotestsrc pattern).
Outputs: ``display://0`` (a window on the screen ``DISPLAY`` names), ``file://out.mp4`` (.mkv/.avi/.mov) or a path,
an image folder or pattern (``out/``, ``out/%05d.png``, ``out.png``), ``rtsp://@:8554/name``, ``null://``.
"""
from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .gst import MediaError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_CONTAINERS = (".mp4", ".mkv", ".avi", ".mov")
INPUT_SCHEMES = "csi://, v4l2://, file://, rtsp://, test:// or a path"
OUTPUT_SCHEMES = "display://, file://, rtsp://@:PORT/NAME, null:// or a path"


@dataclass(frozen=True)
class InputSpec:
    uri: str
    kind: str                       # csi | v4l2 | video | images | rtsp | test
    location: str                   # sensor id, device, file, URL or test pattern
    images: tuple[Path, ...] = ()   # kind == images: the files, in order

    @property
    def live(self) -> bool:
        """Live sources drop the oldest frame when inference falls behind; files keep every frame."""
        return self.kind in ("csi", "v4l2", "rtsp", "test")


@dataclass(frozen=True)
class OutputSpec:
    uri: str
    kind: str                       # display | video | images | rtsp | null
    location: str = ""              # file, folder or %d pattern, display index, mount path
    port: int = 0


def _path_of(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _images_in(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))


def parse_input(uri: str) -> InputSpec:
    scheme = urlsplit(uri).scheme if "://" in uri else ""
    if scheme == "csi":
        sensor = uri[len("csi://"):] or "0"
        if not sensor.isdigit():
            raise MediaError(f"{uri}: expected csi://N with N the camera's sensor id (csi://0)")
        return InputSpec(uri, "csi", sensor)
    if scheme == "v4l2":
        device = uri[len("v4l2://"):]
        device = f"/dev/video{device}" if device.isdigit() else device
        if not device.startswith("/dev/"):
            raise MediaError(f"{uri}: expected v4l2:///dev/videoN")
        if not Path(device).exists():
            raise MediaError(f"{uri}: no camera at {device} (is it plugged in? ls /dev/video*)")
        return InputSpec(uri, "v4l2", device)
    if scheme in ("rtsp", "rtsps"):
        if not urlsplit(uri).hostname:
            raise MediaError(f"{uri}: expected rtsp://HOST[:PORT]/PATH")
        return InputSpec(uri, "rtsp", uri)
    if scheme == "test":
        return InputSpec(uri, "test", uri[len("test://"):] or "smpte")
    if scheme not in ("", "file"):
        raise MediaError(f"{uri}: unsupported input {scheme}://; expected {INPUT_SCHEMES}")
    path = _path_of(uri)
    if any(c in path for c in "*?["):
        files = tuple(sorted(Path(p) for p in glob.glob(path) if Path(p).suffix.lower() in IMAGE_SUFFIXES))
        if not files:
            raise MediaError(f"{uri}: no images match")
        return InputSpec(uri, "images", path, files)
    p = Path(path)
    if p.is_dir():
        files = _images_in(p)
        if not files:
            raise MediaError(f"{uri}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return InputSpec(uri, "images", path, files)
    if not p.is_file():
        raise MediaError(f"{uri}: no such file or folder")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return InputSpec(uri, "images", path, (p,))
    return InputSpec(uri, "video", path)


def display_index(uri: str) -> str:
    """The N of ``display://N``: only 0, the screen ``DISPLAY``/``WAYLAND_DISPLAY`` names. GStreamer's
    ``autovideosink`` cannot be told a monitor, so any other N would be ignored; it is refused instead, with the
    way to reach another screen."""
    index = uri[len("display://"):] or "0"
    if index != "0":
        raise MediaError(f"{uri}: expected display:// or display://0, the screen DISPLAY or WAYLAND_DISPLAY names; "
                         "for another screen set DISPLAY for the run (DISPLAY=:1 dannet-run ... --output display://0)")
    return index


#: an image output's file-name pattern: exactly one frame-index conversion, %d or %0Nd (no other % in the name)
IMAGE_PATTERN = r"[^%]*%(0\d+)?d[^%]*"


def parse_output(uri: str) -> OutputSpec:
    scheme = urlsplit(uri).scheme if "://" in uri else ""
    if scheme == "null":
        return OutputSpec(uri, "null")
    if scheme == "display":
        return OutputSpec(uri, "display", display_index(uri))
    if scheme == "rtsp":
        parts = urlsplit(uri)
        if parts.hostname not in ("@", "0.0.0.0", None) and not uri.startswith("rtsp://@"):
            raise MediaError(f"{uri}: an output stream is served here: expected rtsp://@:PORT/NAME")
        match = re.fullmatch(r"rtsp://@?(?::(\d+))?(/[\w\-./]+)", uri)
        if not match:
            raise MediaError(f"{uri}: expected rtsp://@:PORT/NAME (e.g. rtsp://@:8554/dannet)")
        port = int(match.group(1) or 8554)
        if not 1 <= port <= 65535:  # the server would take 0 as any free port, and larger ones modulo 65536
            raise MediaError(f"{uri}: port {port} is out of range: expected rtsp://@:PORT/NAME with PORT 1 to 65535")
        return OutputSpec(uri, "rtsp", match.group(2), port)
    if scheme not in ("", "file"):
        raise MediaError(f"{uri}: unsupported output {scheme}://; expected {OUTPUT_SCHEMES}")
    path = _path_of(uri)
    suffix = "" if path.endswith("/") else Path(path).suffix.lower()
    if suffix in VIDEO_CONTAINERS:
        return OutputSpec(uri, "video", path)
    if suffix in IMAGE_SUFFIXES or path.endswith("/") or suffix == "" or Path(path).is_dir():
        if "%" in path and ("%" in str(Path(path).parent) or not re.fullmatch(IMAGE_PATTERN, Path(path).name)):
            raise MediaError(f"{uri}: an image pattern numbers frames with one %d or %0Nd in the file name "
                             "(e.g. out/%05d.png)")
        return OutputSpec(uri, "images", path)
    raise MediaError(f"{uri}: unsupported output file type {suffix!r}; expected {', '.join(VIDEO_CONTAINERS)}, "
                     "an image folder or an image pattern such as out/%05d.png")

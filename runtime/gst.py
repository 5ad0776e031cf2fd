"""GStreamer through PyGObject: importing it with a clear error, and the few helpers every stage uses.

GStreamer comes from the OS (Debian/Ubuntu/JetPack packages) and PyGObject from pip or the OS; the
PyPI GStreamer wheels have no Linux build, so a missing piece is named with the package to install.

Load order matters in a process that also holds torch: libgstreamer links the system libunwind, and C++
libraries first loaded after ``Gst.init`` (onnx, onnxruntime) then crash on their first C++ exception
(GStreamer 1.22, Debian 12). So backends are opened before the first ``gst()`` call (``pipeline.run``
does), and tests import them first.
"""
from __future__ import annotations

import functools
from typing import Any

from .errors import DannetError

INSTALL_HINT = ("apt install gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
                "gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gst-plugins-base-1.0 and "
                "pip install 'pygobject<3.51' (or scripts/setup.sh)")


class MediaError(DannetError, RuntimeError):
    """A source or output that cannot be used; one line naming the URI and what was expected."""


@functools.cache
def gst() -> Any:
    """The ``Gst`` module, initialised once."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        from gi.repository import Gst, GstApp  # noqa: F401  (GstApp: appsink/appsrc methods)
    except (ImportError, ValueError):
        raise MediaError(f"the camera pipeline needs GStreamer and PyGObject: {INSTALL_HINT}") from None
    Gst.init(None)
    return Gst


def has_element(name: str) -> bool:
    return gst().ElementFactory.find(name) is not None


def quote(value: str) -> str:
    """A property value for ``Gst.parse_launch`` (paths and URLs may hold spaces and quotes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def launch(description: str, what: str) -> Any:
    """``Gst.parse_launch`` with a one-line error naming ``what`` (the URI) when an element is missing."""
    Gst = gst()
    try:
        return Gst.parse_launch(description)
    except Exception as e:  # GLib.Error: no such element / bad property value
        raise MediaError(f"{what}: GStreamer cannot build the pipeline ({first_line(str(e))})") from None


def row_stride(row_bytes: int) -> int:
    """The bytes one row of packed video (RGB, GRAY8) takes in a GStreamer buffer: its pixels' bytes rounded up to
    a multiple of 4, GStreamer's default layout for these formats (what appsink gets, what appsrc is read as)."""
    return (row_bytes + 3) // 4 * 4


def first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "unknown error"


def pop_error(pipeline: Any, timeout_s: float = 0.0) -> Any | None:
    """The first error message on the pipeline's bus, waiting up to ``timeout_s`` for one (None: none came)."""
    Gst = gst()
    return pipeline.get_bus().timed_pop_filtered(int(timeout_s * Gst.SECOND), Gst.MessageType.ERROR)


def bus_error(pipeline: Any) -> str | None:
    """The first error waiting on the pipeline's bus (None if there is none); never blocks."""
    message = pop_error(pipeline)
    return None if message is None else describe_message(message)


def describe_message(message: Any) -> str:
    err, debug = message.parse_error()
    return describe_error(err.message, debug or "")


def is_write_error(message: Any) -> bool:
    """Whether an error message says a file could not be written (full disk, I/O error, no permission)."""
    err, _ = message.parse_error()
    codes = gst().ResourceError
    return any(err.matches(codes.quark(), code) for code in
               (codes.NO_SPACE_LEFT, codes.WRITE, codes.OPEN_WRITE, codes.OPEN_READ_WRITE, codes.CLOSE, codes.SYNC))


def describe_error(message: str, debug: str) -> str:
    """GStreamer's error, with the missing-decoder case and a file of no known type said in words a user can act
    on."""
    missing_plugin = "missing" in message.lower() and "plug-in" in message.lower()
    if missing_plugin or "no suitable plugins" in debug.lower():
        caps = next((part.strip() for part in debug.split("\n") if "video/" in part), "")
        return f"no GStreamer decoder for this codec{f' ({caps[:120]})' if caps else ''}: install gstreamer1.0-libav"
    if "could not determine type of stream" in message.lower():  # typefind: text, a truncated or empty file
        return "not a video GStreamer can read (its type could not be determined: an empty, damaged or other file?)"
    return first_line(message)

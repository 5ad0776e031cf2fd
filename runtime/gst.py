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

INSTALL_HINT = ("apt install gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
                "gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gst-plugins-base-1.0 and "
                "pip install 'pygobject<3.51' (or scripts/setup.sh)")


class MediaError(RuntimeError):
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


def first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "unknown error"


def bus_error(pipeline: Any) -> str | None:
    """The first error waiting on the pipeline's bus (None if there is none); never blocks."""
    Gst = gst()
    message = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    if message is None:
        return None
    err, debug = message.parse_error()
    return describe_error(err.message, debug or "")


def describe_error(message: str, debug: str) -> str:
    """GStreamer's error, with the missing-decoder case said in words a user can act on."""
    missing_plugin = "missing" in message.lower() and "plug-in" in message.lower()
    if missing_plugin or "no suitable plugins" in debug.lower():
        caps = next((part.strip() for part in debug.split("\n") if "video/" in part), "")
        return f"no GStreamer decoder for this codec{f' ({caps[:120]})' if caps else ''}: install gstreamer1.0-libav"
    return first_line(message)


def wait_for_eos(pipeline: Any, timeout_s: float) -> str | None:
    """Block until end of stream (None) or an error (its text); a timeout counts as an error."""
    Gst = gst()
    message = pipeline.get_bus().timed_pop_filtered(int(timeout_s * Gst.SECOND),
                                                    Gst.MessageType.EOS | Gst.MessageType.ERROR)
    if message is None:
        return f"no end of stream within {timeout_s:.0f} s"
    if message.type == Gst.MessageType.ERROR:
        err, debug = message.parse_error()
        return describe_error(err.message, debug or "")
    return None

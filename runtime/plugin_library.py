"""Find and load the DANNet TensorRT plugin library built by CMake (``plugins/``).

Two builds exist: ``libdannet_trt_plugins.so`` (entry points ``getCreators``/``setLoggerFinder``;
loaded by TensorRT's plugin registry) and ``libdannet_trt_plugins_static.so`` (registers itself when
loaded; for ctypes.CDLL, trtexec --staticPlugins and DeepStream ``custom-lib-path``).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

DYNAMIC_NAME = "libdannet_trt_plugins.so"
STATIC_NAME = "libdannet_trt_plugins_static.so"
_REPO = Path(__file__).resolve().parents[1]
BUILD_HINT = ("build it with: cmake -S . -B build -DTensorRT_ROOT=/path/to/TensorRT && cmake --build build "
              "(needs nvcc and TensorRT headers; JetPack has both)")


class PluginLibraryError(RuntimeError):
    """The plugin library is missing or does not load; the message says how to build it."""


def find_plugin_library(path: str | os.PathLike | None = None, self_registering: bool = False) -> Path:
    """The library to load: ``path``, else ``$DANNET_PLUGIN_LIB``, else the CMake build folder."""
    name = STATIC_NAME if self_registering else DYNAMIC_NAME
    candidates = [Path(p) for p in (path, os.environ.get("DANNET_PLUGIN_LIB")) if p]
    candidates += [_REPO / "build" / "plugins" / name, _REPO / "build" / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if path is not None:
        raise PluginLibraryError(f"{path}: plugin library not found; {BUILD_HINT}")
    raise PluginLibraryError(f"{name} not found (looked in {', '.join(str(c) for c in candidates)}); {BUILD_HINT}")


def load_plugin_library(path: str | os.PathLike | None = None):
    """Register the ReweightArgmax creator with TensorRT's plugin registry; returns the library handle."""
    try:
        import tensorrt as trt
    except ImportError:
        raise PluginLibraryError("TensorRT's Python package is not installed (pip install tensorrt on desktop "
                                 "GPUs; JetPack ships it)") from None
    library = find_plugin_library(path)
    handle = trt.get_plugin_registry().load_library(str(library))
    if handle is None:
        raise PluginLibraryError(f"{library}: TensorRT could not load the plugin library (see its log above)")
    return handle


def load_self_registering(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """dlopen the self-registering build (its creators register with libnvinfer's global registry)."""
    library = find_plugin_library(path, self_registering=True)
    try:
        return ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise PluginLibraryError(f"{library}: could not be loaded ({e})") from None

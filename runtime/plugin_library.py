"""Find and load the DANNet TensorRT plugin library built by CMake (``plugins/``).

Two builds exist: ``libdannet_trt_plugins.so`` (entry points ``getCreators``/``setLoggerFinder``;
loaded by TensorRT's plugin registry) and ``libdannet_trt_plugins_static.so`` (registers itself when
loaded; for ctypes.CDLL, trtexec --staticPlugins and DeepStream ``custom-lib-path``).
"""
from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

#: where a plugin library outside the source checkout is found
PLUGIN_LIB_ENV = "DANNET_PLUGIN_LIB"
DYNAMIC_NAME = "libdannet_trt_plugins.so"
STATIC_NAME = "libdannet_trt_plugins_static.so"
_REPO = Path(__file__).resolve().parents[1]
#: what the library registers: (name, version, namespace) in TensorRT's plugin registry
CREATOR = ("ReweightArgmax", "1", "dannet")
BUILD_HINT = ("build it with: cmake -S . -B build -DTensorRT_ROOT=/path/to/TensorRT && cmake --build build "
              "(needs nvcc and TensorRT headers; JetPack has both)")


class PluginLibraryError(RuntimeError):
    """The plugin library is missing or does not load; the message says how to build it."""


def find_plugin_library(path: str | os.PathLike | None = None, self_registering: bool = False) -> Path:
    """The library to load: ``path`` when given (and then only that file: a typo must not quietly load another
    build), else ``$DANNET_PLUGIN_LIB``, else the CMake build folder of the source checkout. The error names the
    variable and every path tried: an engine run outside the checkout (an installed package, a Jetson image) has
    no build folder, and the variable is then the only way to the library."""
    if path is not None:
        if not Path(path).is_file():
            raise PluginLibraryError(f"{path}: plugin library not found; {BUILD_HINT}")
        return Path(path)
    name = STATIC_NAME if self_registering else DYNAMIC_NAME
    from_environment = os.environ.get(PLUGIN_LIB_ENV)
    build = [_REPO / "build" / "plugins" / name, _REPO / "build" / name]
    candidates = ([Path(from_environment)] if from_environment else []) + build
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    environment = f"${PLUGIN_LIB_ENV}={from_environment}" if from_environment else f"${PLUGIN_LIB_ENV} (not set)"
    raise PluginLibraryError(f"{name} not found (tried {', '.join([environment, *map(str, build)])}): set "
                             f"{PLUGIN_LIB_ENV}=/path/to/{name}, or {BUILD_HINT}")


#: one load at a time: two threads must not both see "no creator yet" and both load the library
_loading = threading.Lock()


def load_plugin_library(path: str | os.PathLike | None = None) -> None:
    """Make the ReweightArgmax creator available in TensorRT's plugin registry, once per process.

    TensorRT refuses to register a creator twice: loading the same library again returns None (or raises),
    as does loading ours after trtexec, a self-registering build or DeepStream registered the creator. So the
    registry itself is asked first, and a library is loaded only while it has no ReweightArgmax creator (a
    cache of the paths loaded here would miss the creators that other libraries registered).
    """
    try:
        import tensorrt as trt
    except ImportError:
        raise PluginLibraryError("TensorRT's Python package is not installed (pip install tensorrt on desktop "
                                 "GPUs; JetPack ships it)") from None
    with _loading:
        registry = trt.get_plugin_registry()
        if registry.get_creator(*CREATOR) is not None:
            return
        library = find_plugin_library(path).resolve()
        try:
            handle = registry.load_library(str(library))
        except RuntimeError as e:  # how TensorRT's Python bindings pass on a C++ failure
            raise PluginLibraryError(f"{library}: TensorRT could not load the plugin library "
                                     f"({str(e).splitlines()[0][:200]})") from None
        if handle is None:
            raise PluginLibraryError(f"{library}: TensorRT could not load the plugin library (see its log above)")
        if registry.get_creator(*CREATOR) is None:
            raise PluginLibraryError(f"{library}: does not register the {'/'.join(CREATOR)} creator "
                                     f"(not a DANNet plugin library?)")


def load_self_registering(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """dlopen the self-registering build (its creators register with libnvinfer's global registry)."""
    library = find_plugin_library(path, self_registering=True)
    try:
        return ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise PluginLibraryError(f"{library}: could not be loaded ({e})") from None

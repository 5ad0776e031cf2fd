"""The ReweightArgmax CUDA kernel without TensorRT: compiled at run time by NVRTC, run through cuda-python.

The kernel source is ``plugins/reweightArgmax/reweightArgmaxKernel.cuh``, the same file the
TensorRT plugin compiles, so tests on a GPU without TensorRT check the code that ships: the labels-only
kernels and the confidence kernels (labels and, in the same pass, each pixel's confidence level 0-255
in the labels' format; ``runtime.reweight_argmax.reweight_argmax_confidence`` defines it). Needs
``pip install 'dannet-edge[kernel]'`` (CUDA 12; ``[kernel-cu13]`` on CUDA 13 drivers), and a GPU to run;
compiling needs none.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

KERNEL_SOURCE = Path(os.environ.get(
    "DANNET_KERNEL_SOURCE",
    Path(__file__).resolve().parents[1] / "plugins" / "reweightArgmax" / "reweightArgmaxKernel.cuh"))
MAX_CLASSES = 64
BLOCK_X, BLOCK_Y, PIXELS_PER_THREAD = 32, 8, 4
#: the kernel's size limits, a copy of reweightArgmaxParams.h's (where each is explained; a test compares the two):
#: batch (grid z), logits per image (32-bit offsets), logits height/width (fp32 source coordinates), out_height
#: (grid y), out_width (32-bit columns)
LIMITS = {"batch": 65535, "logits per image": 2**31 - 1, "logits height/width": 2**20,
          "out_height": 65535 * BLOCK_Y, "out_width": 2**31 - 1 - (BLOCK_X * PIXELS_PER_THREAD - 1)}
#: label format -> kernel name suffix
FORMATS = {"int32": "I32", "pack4": "Packed4", "uint8": "U8"}


def kernel_name(fp16: bool, label_format: str, confidence: bool = False) -> str:
    """The extern "C" name of the kernel for this input type and label format, with or without confidence."""
    return f"reweightArgmax{'Confidence' if confidence else ''}{'F16' if fp16 else 'F32'}{FORMATS[label_format]}"


class Params(ctypes.Structure):
    """``dannet::ReweightArgmaxParams``, field for field."""

    _fields_ = [("batch", ctypes.c_int), ("channels", ctypes.c_int), ("in_height", ctypes.c_int),
                ("in_width", ctypes.c_int), ("out_height", ctypes.c_int), ("out_width", ctypes.c_int),
                ("scale_y", ctypes.c_float), ("scale_x", ctypes.c_float), ("align_corners", ctypes.c_int),
                ("additive", ctypes.c_int), ("weights", ctypes.c_float * MAX_CLASSES)]


def _bindings():
    try:
        from cuda.bindings import driver, nvrtc
    except ImportError:
        raise ImportError("the CUDA kernel path needs cuda-python and NVRTC: "
                          "pip install 'dannet-edge[kernel]' (or [kernel-cu13] on CUDA 13 drivers)") from None
    return driver, nvrtc


def _check(result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"{what} failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def compile_kernel(arch: str = "sm_87", cubin: bool = True) -> bytes:
    """Compile the kernel source with NVRTC for ``arch``; CUBIN (or PTX) bytes. Raises with the log."""
    _, nvrtc = _bindings()
    prog = _check(nvrtc.nvrtcCreateProgram(KERNEL_SOURCE.read_bytes(), KERNEL_SOURCE.name.encode(), 0, [], []),
                  "nvrtcCreateProgram")
    options = [b"--std=c++17", f"--gpu-architecture={arch}".encode()]
    err, = nvrtc.nvrtcCompileProgram(prog, len(options), options)
    if int(err) != 0:
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        raise RuntimeError(f"NVRTC could not compile {KERNEL_SOURCE}:\n{log.decode(errors='replace')}")
    size = _check((nvrtc.nvrtcGetCUBINSize if cubin else nvrtc.nvrtcGetPTXSize)(prog), "size")
    out = b" " * size
    _check((nvrtc.nvrtcGetCUBIN if cubin else nvrtc.nvrtcGetPTX)(prog, out), "get code")
    nvrtc.nvrtcDestroyProgram(prog)
    return out


def make_params(shape: tuple[int, int, int, int], weights: np.ndarray, out_size: tuple[int, int],
                align_corners: bool, mode: int) -> Params:
    from .reweight_argmax import log_weights, source_scale

    n, c, h, w = shape
    if not 1 <= c <= MAX_CLASSES or len(weights) != c:
        raise ValueError(f"need 1..{MAX_CLASSES} classes and one weight per class, got {c} and {len(weights)}")
    sizes = {"batch": n, "logits per image": c * h * w, "logits height/width": max(h, w),
             "out_height": out_size[0], "out_width": out_size[1]}
    for quantity, size in sizes.items():
        if size > LIMITS[quantity]:
            raise ValueError(f"{quantity} {size} exceeds the kernel's limit of {LIMITS[quantity]}")
    weights = np.asarray(weights, dtype=np.float32)
    if mode == 1:
        weights = log_weights(weights)
    p = Params(n, c, h, w, out_size[0], out_size[1], float(source_scale(h, out_size[0], align_corners)),
               float(source_scale(w, out_size[1], align_corners)), int(align_corners), int(mode == 1))
    p.weights[:c] = weights.tolist()
    return p


class CudaReweightArgmax:
    """Runs the kernel on device buffers (raw CUDA pointers) on the current CUDA context."""

    def __init__(self, device: int = 0) -> None:
        driver, _ = _bindings()
        self.driver = driver
        _check(driver.cuInit(0), "cuInit")
        dev = _check(driver.cuDeviceGet(device), "cuDeviceGet")
        self.context = _check(driver.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
        _check(driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
        major = _check(driver.cuDeviceGetAttribute(
            driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "attribute")
        minor = _check(driver.cuDeviceGetAttribute(
            driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "attribute")
        self.module = _check(driver.cuModuleLoadData(compile_kernel(f"sm_{major}{minor}")), "cuModuleLoadData")
        self.functions = {}

    def launch(self, logits_ptr: int, fp16: bool, labels_ptr: int, label_format: str, params: Params,
               stream: int = 0, confidence_ptr: int | None = None) -> None:
        """Labels to ``labels_ptr``; with ``confidence_ptr``, the confidence kernel, which also writes the
        confidence levels there, in ``label_format`` too (same size as the labels)."""
        name = kernel_name(fp16, label_format, confidence_ptr is not None)
        if name not in self.functions:
            self.functions[name] = _check(self.driver.cuModuleGetFunction(self.module, name.encode()), name)
        outputs = [labels_ptr] if confidence_ptr is None else [labels_ptr, confidence_ptr]
        args = [ctypes.c_void_p(logits_ptr), *map(ctypes.c_void_p, outputs), params]
        pointers = (ctypes.c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
        grid = (-(-params.out_width // (BLOCK_X * PIXELS_PER_THREAD)), -(-params.out_height // BLOCK_Y), params.batch)
        _check(self.driver.cuLaunchKernel(self.functions[name], *grid, BLOCK_X, BLOCK_Y, 1, 0, stream,
                                          ctypes.addressof(pointers), 0), "cuLaunchKernel")

"""Inference backends behind one small interface: uint8 RGB frames in, ``Inference`` out (uint8 labels, and
uint8 confidence levels for a model exported with ``--confidence``).

Each backend runs a graph made by ``dannet-export`` (frame -> labels, tail in-graph) and imports its
library only when it is used, with an error that says what to install. The graph's metadata (class
names, palette, sizes, label format, whether it has a confidence output) comes along as ``ModelInfo``.
"""
from __future__ import annotations

import ctypes
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from .classes import CLASS_NAMES, PALETTE
from .cpu_int8 import int8_weights_saturate
from .errors import EXIT_FAILED, DannetError
from .reweight_argmax import unpack4

if TYPE_CHECKING:  # the runtime imports without torch
    from torch.export import ExportedProgram


class BackendError(DannetError, RuntimeError):
    """A model/backend that cannot be used; one line naming the file and what to do."""


#: the output tensors of an exported model: labels, and confidence where it was exported with --confidence
LABELS, CONFIDENCE = "labels", "confidence"


@dataclass(frozen=True)
class Inference:
    """A batch's results: uint8 labels N x H x W, and uint8 confidence levels N x H x W (the winning class's
    re-weighted softmax probability p as ``floor(255 p + 0.5)``) when the model has them, else None.

    A record, not a tuple: code written for labels alone (``infer(x)[0]``) fails loudly instead of taking
    the whole batch for the first frame."""

    labels: np.ndarray
    confidence: np.ndarray | None = None


def size_text(size: tuple[int, ...]) -> str:
    """``64x128``: a size or shape as every flag and message of DANNet Edge writes it."""
    return "x".join(str(d) for d in size)


@dataclass(frozen=True)
class SizeRange:
    """The frame sizes H x W a dynamic-shape model takes: H and W each a multiple of ``multiple``, from ``low`` to
    ``high`` (per axis, both included, themselves multiples).

    A dynamic graph is only correct at such sizes: its relighting net halves H and W twice and adds the result
    back to the frame, so other sizes fail to broadcast, and the export's guards hold only within its range."""

    low: tuple[int, int]
    high: tuple[int, int]
    multiple: int = 4

    def nearest(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size taken nearest to ``size``, per axis: the nearest multiple (halfway rounds up), brought within
        the range."""
        half = self.multiple // 2
        return tuple(min(max((s + half) // self.multiple * self.multiple, low), high)
                     for s, low, high in zip(size, self.low, self.high))

    def takes(self, size: tuple[int, int]) -> bool:
        return self.nearest(size) == tuple(size)

    def within(self, low: tuple[int, int], high: tuple[int, int]) -> "SizeRange | None":
        """The sizes taken from ``low`` to ``high`` (e.g. an engine's optimisation profile); None if there are none."""
        m = self.multiple
        low = tuple(max(-(-a // m) * m, b) for a, b in zip(low, self.low))
        high = tuple(min(a // m * m, b) for a, b in zip(high, self.high))
        return SizeRange(low, high, m) if all(a <= b for a, b in zip(low, high)) else None

    def __str__(self) -> str:
        return f"H and W multiples of {self.multiple} from {size_text(self.low)} to {size_text(self.high)}"


#: the frame sizes of a graph or program exported with ``dannet-export --dynamic``: the range that
#: ``export.onnx_export.dynamic_shapes`` declares to torch.export
DYNAMIC_EXPORT_SIZES = SizeRange((32, 32), (4096, 4096))


def recorded_flag(value: str | None) -> bool | None:
    """A ``dannet.*`` flag as a graph's metadata records it (``"0"``/``"1"``); None where it records none."""
    return None if value is None else value == "1"


@dataclass(frozen=True)
class ModelInfo:
    input_size: tuple[int, int] | None  # None: dynamic
    output_size: tuple[int, int]
    class_names: tuple[str, ...] = CLASS_NAMES
    palette: np.ndarray = field(default_factory=lambda: PALETTE)
    weights_std: float | None = None  # test-time class weights the tail applies (None: not recorded)
    #: those weights, one per class (None: not recorded): their std alone does not give them, the proportions
    #: of the classes in the run's source labels do too (the paper's Cityscapes table, or a run's own)
    weights: tuple[float, ...] | None = None
    checkpoint_sha256: str | None = None  # the checkpoint the model was exported from (None: not recorded)
    confidence: bool = False  # a second output with each pixel's confidence (dannet-export --confidence)
    precision: str | None = None  # what the export computes in: fp32, fp16, int8 (None: not recorded)
    dynamic_sizes: SizeRange = DYNAMIC_EXPORT_SIZES  # the frame sizes a dynamic model takes (input_size None)
    #: how the tail re-weights: ``logits`` (multiplied) or ``probs`` (log weights added) (None: not recorded)
    reweight: str | None = None
    #: how the tail upsamples: corners aligned (True, the default) or half-pixel (``--half-pixel``; None: not recorded)
    align_corners: bool | None = None
    #: the relighting file exported with it (``--light``, for a released segmentation file): its sha256, "" where
    #: there was none (the checkpoint's own relighting net, or no relighting), None where the export did not say
    light_sha256: str | None = None

    def network_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """The size a frame of ``frame_size`` is given to the model at: the model's input size, or for a
        dynamic-shape model the nearest size it takes."""
        if self.input_size is not None:
            return self.input_size
        return self.dynamic_sizes.nearest(frame_size)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], where: str) -> "ModelInfo":
        try:
            inp, out = json.loads(metadata["dannet.input"]), json.loads(metadata["dannet.output"])
        except (KeyError, ValueError):
            raise BackendError(f"{where}: not a dannet-export graph (no dannet.* metadata)") from None
        names = tuple(json.loads(metadata.get("dannet.class_names", json.dumps(CLASS_NAMES))))
        palette = np.asarray(json.loads(metadata.get("dannet.palette", json.dumps(PALETTE.tolist()))), np.uint8)
        std = float(metadata["dannet.weights_std"]) if "dannet.weights_std" in metadata else None
        weights = tuple(json.loads(metadata["dannet.weights"])) if "dannet.weights" in metadata else None
        return cls(tuple(inp["size"]) if inp.get("size") else None, tuple(out["size"]), names, palette, std, weights,
                   metadata.get("dannet.checkpoint_sha256") or None, "confidence" in out,
                   metadata.get("dannet.precision") or None, reweight=metadata.get("dannet.reweight") or None,
                   align_corners=recorded_flag(metadata.get("dannet.align_corners")),
                   light_sha256=metadata.get("dannet.light_sha256"))


class Backend(Protocol):
    name: str
    info: ModelInfo
    #: the most frames one ``infer`` call takes, as the model itself fixes it: None for a dynamic batch with no
    #: bound (an ONNX graph exported with --dynamic), the bound of a bounded one (a .pt2 program's, an engine
    #: profile's maximum), 1 for a batch-1 model (dannet-export onnx without --dynamic). A model whose batch is
    #: fixed at N takes exactly N (dannet-export makes none with N > 1).
    max_batch: int | None

    def infer(self, frames: np.ndarray) -> Inference:
        """N x H x W x 3 uint8 RGB frames at the network input size -> N x H_out x W_out uint8 labels (and
        confidence levels when ``info.confidence``)."""
        ...

    def close(self) -> None:
        """Release the model (a session, a program's weights, an engine with its GPU buffers and stream) now, not
        whenever the garbage collector gets to it: a process that opens models one after another (a benchmark
        comparing several) must not hold them all. Idempotent; ``infer`` afterwards is an error."""
        ...


#: ONNX Runtime's session option that turns off its Q/DQ fusion into integer operators, and only that
NO_QDQ_FUSION = "session.disable_quant_qdq"


def print_to_stderr(line: str) -> None:
    """The default ``say`` of a backend: a notice on stderr, where it does not mix with a command's output."""
    print(line, file=sys.stderr, flush=True)


def weight_bits(metadata: dict[str, str]) -> int | None:
    """The bits a ``dannet-export int8`` graph's weights use: 7 (``--target cpu``) or 8; None for a float graph.
    Graphs quantised before the field was recorded have 8-bit weights."""
    if metadata.get("dannet.precision") != "int8":
        return None
    return int(json.loads(metadata.get("dannet.quantization", "{}")).get("weight_bits", 8))


def check_open(backend: Backend, handle: object) -> None:
    """An error instead of running a closed model: a TensorRT engine would read freed GPU memory."""
    if handle is None:
        raise BackendError(f"the {backend.name} backend was closed; open the model again to run it", EXIT_FAILED)


class OnnxRuntimeBackend:
    """ONNX Runtime with the best provider installed (CUDA, then CPU); portable-tail graphs only."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int = 0,
                 say: Callable[[str], None] = print_to_stderr) -> None:
        """``say``: where the one-line notice goes when an int8 model's Q/DQ pairs must run in fp32 here."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("the onnxruntime backend needs ONNX Runtime: pip install onnxruntime "
                               "(or onnxruntime-gpu)") from None
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"{path}: no such model file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        preferred = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        plugin_tail = BackendError(f"{path}: has the TensorRT plugin tail; use --backend tensorrt with an engine, "
                                   "or export with --tail portable for ONNX Runtime")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=preferred)
        except Exception as e:  # ORT raises its own exception types for unreadable or invalid graphs
            if "ReweightArgmax" in str(e):
                raise plugin_tail from None
            raise BackendError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if metadata.get("dannet.tail") == "plugin":
            raise plugin_tail
        self.info = ModelInfo.from_metadata(metadata, str(path))
        #: the Q/DQ pairs run in fp32 (dequantise, fp32 conv, quantise) where this CPU's integer kernels would
        #: saturate on the model's 8-bit weights (``runtime.cpu_int8``): the arithmetic the Q/DQ graph means, as
        #: TensorRT and a VNNI CPU compute it up to rounding, slower than the FP32 graph (BENCHMARKS.md)
        self.int8_in_fp32 = (self.session.get_providers()[0] == "CPUExecutionProvider"
                             and weight_bits(metadata) == 8 and int8_weights_saturate())
        if self.int8_in_fp32:
            self.session = None  # the first session goes before the second is made
            options.add_session_config_entry(NO_QDQ_FUSION, "1")  # the other fusions stay
            self.session = ort.InferenceSession(str(path), options, providers=preferred)
            say(f"dannet: {path}: this CPU (x86 without VNNI) would saturate ONNX Runtime's integer convolutions on "
                "8-bit weights, so the Q/DQ pairs run in fp32: right labels, slower than the FP32 graph; "
                "dannet-export int8 --target cpu makes a model whose 7-bit weights run as integers here")
        self.outputs = [LABELS, CONFIDENCE] if self.info.confidence else [LABELS]
        self.providers = self.session.get_providers()
        batch = self.session.get_inputs()[0].shape[0]
        self.max_batch = batch if isinstance(batch, int) else None  # a symbolic dimension (or none) is dynamic

    def infer(self, frames: np.ndarray) -> Inference:
        check_open(self, self.session)
        return Inference(*self.session.run(self.outputs, {"frame": np.ascontiguousarray(frames, dtype=np.uint8)}))

    def close(self) -> None:
        """Drop the session: ONNX Runtime frees its weights and arenas with the last reference."""
        self.session = None


def uint8_from_engine(values: np.ndarray, width: int, tensor: str = LABELS) -> np.ndarray:
    """uint8 N x H x W values (a new array) from an engine's ``labels`` or ``confidence`` tensor, typed and shaped
    as the engine says: uint8 (portable tail), int32 (plugin tail; all < 256), or int32 with ceil(W/4) columns
    holding four uint8 values each, little-endian (plugin tail, pack4)."""
    if values.dtype == np.uint8 and values.shape[-1] == width:
        return values.copy()
    if values.dtype == np.int32 and values.shape[-1] == width:
        return values.astype(np.uint8)
    if values.dtype == np.int32 and values.shape[-1] == (width + 3) // 4:
        return unpack4(values, width).copy()
    raise BackendError(f"the engine's {tensor} are {values.dtype} with {values.shape[-1]} columns: not {tensor} "
                       f"{width} wide (uint8, int32 or pack4); rebuild it with dannet-export engine")


class _Staging:
    """A device buffer and a pinned host buffer for one tensor, grown to the largest size asked for.

    One pair per tensor, not one per input shape: a dynamic-shape engine fed many frame sizes would pile up
    allocations."""

    def __init__(self, cudart, check: Callable) -> None:
        self.cudart, self.check = cudart, check
        self.device = self.host = self.capacity = 0  # 0: not allocated

    def reserve(self, nbytes: int) -> None:
        if nbytes <= self.capacity:
            return
        self.release()
        self.device = self.check("cudaMalloc", self.cudart.cudaMalloc(nbytes))
        self.host = self.check("cudaMallocHost", self.cudart.cudaMallocHost(nbytes))
        self.capacity = nbytes

    def release(self) -> None:
        """Free both buffers, each once. They are tracked apart, so a device buffer whose pinned twin could not
        be allocated is freed too."""
        device, host, self.device, self.host, self.capacity = self.device, self.host, 0, 0, 0
        try:
            if device:
                self.check("cudaFree", self.cudart.cudaFree(device))
        finally:
            if host:
                self.check("cudaFreeHost", self.cudart.cudaFreeHost(host))

    def host_bytes(self, nbytes: int) -> np.ndarray:
        """The first ``nbytes`` of the pinned buffer, as a uint8 array over it (no copy)."""
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(self.host))


class TensorRTBackend:
    """A TensorRT engine run through cuda-python: ``set_input_shape``, ``set_tensor_address`` and
    ``execute_async_v3`` on one stream, pinned host buffers. The engine's sidecar is checked before loading.

    The engine decides how its outputs are read (``uint8_from_engine``): their type, and their shape for the
    frames at hand, come from TensorRT; only the label map's width, which a pack4 engine does not show, comes
    from the sidecar. An engine built from a graph exported with ``--confidence`` has a second output,
    ``confidence``, read the same way. With dynamic shapes, frames of any size within the engine's profile run;
    ``info.dynamic_sizes`` is the part of it the graph is correct at (H and W multiples of 4), where ``Segmenter``
    puts frames."""

    name = "tensorrt"
    INPUT = "frame"

    def __init__(self, path: str | Path, plugin_lib: str | None = None) -> None:
        from .engine_sidecar import (EngineError, Sidecar, current_machine, import_cuda_runtime, import_tensorrt,
                                     sidecar_path)

        path = Path(path)
        if not path.is_file():
            raise BackendError(f"{path}: no such engine file")
        try:
            trt = import_tensorrt()
            self.cudart = import_cuda_runtime()
            sidecar_file = sidecar_path(path)
            if not sidecar_file.is_file():
                raise BackendError(f"{path}: no sidecar {sidecar_file.name}; rebuild it with dannet-export engine")
            sidecar, machine = Sidecar.read(sidecar_file), current_machine()
        except EngineError as e:
            raise BackendError(str(e)) from None
        if (sidecar.tensorrt_version, sidecar.gpu_name, sidecar.compute_capability) != \
                (machine.tensorrt_version, machine.gpu_name, machine.compute_capability):
            raise BackendError(f"{path}: built for {sidecar.gpu_name} with TensorRT {sidecar.tensorrt_version}, this "
                               f"is {machine.gpu_name} with {machine.tensorrt_version}; rebuild it here")
        if sidecar.output_size is None:
            raise BackendError(f"{path}: its sidecar does not record the label map size; rebuild it with "
                               "dannet-export engine")
        if sidecar.plugin_version:
            from .plugin_library import PluginLibraryError, load_plugin_library

            try:
                load_plugin_library(plugin_lib)
            except PluginLibraryError as e:
                raise BackendError(str(e)) from None
        # the runtime (and its logger) must outlive the engines it deserialises
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{path}: TensorRT could not deserialise the engine (see its log above)")
        self.output_dtypes = self._check_tensors(trt, path)
        frame_shape = tuple(self.engine.get_tensor_shape(self.INPUT))
        dynamic = min(frame_shape[1:3]) < 0
        self.info = ModelInfo(None if dynamic else frame_shape[1:3], tuple(sidecar.output_size),
                              tuple(sidecar.class_names) or CLASS_NAMES, weights_std=sidecar.weights_std,
                              weights=tuple(sidecar.weights) if sidecar.weights else None,
                              checkpoint_sha256=sidecar.checkpoint_sha256, light_sha256=sidecar.light_sha256,
                              confidence=CONFIDENCE in self.output_dtypes,
                              precision=sidecar.precision, reweight=sidecar.reweight,
                              align_corners=sidecar.align_corners,
                              dynamic_sizes=self._profile_sizes(path) if dynamic else DYNAMIC_EXPORT_SIZES)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"{path}: TensorRT could not create an execution context (see its log above)")
        self.stream = self._cuda("cudaStreamCreate", self.cudart.cudaStreamCreate())
        self.staging = {name: _Staging(self.cudart, self._cuda) for name in (self.INPUT, *self.output_dtypes)}
        self.input_shape: tuple[int, ...] | None = None  # the shape last set on the context
        # -1: a dynamic batch, bounded by the optimisation profile the context uses (the first)
        self.max_batch = frame_shape[0] if frame_shape[0] > 0 else \
            int(self.engine.get_tensor_profile_shape(self.INPUT, 0)[2][0])

    def _check_tensors(self, trt, path: Path) -> dict[str, np.dtype]:
        """The engine's I/O is a uint8 ``frame`` input and a ``labels`` output, and a ``confidence`` output where
        the graph was exported with ``--confidence``; returns each output's type, labels first."""
        engine = self.engine
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        outputs = [LABELS, CONFIDENCE] if CONFIDENCE in names else [LABELS]
        if names != {self.INPUT, *outputs} or engine.get_tensor_mode(self.INPUT) != trt.TensorIOMode.INPUT or \
                any(engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT for name in outputs):
            raise BackendError(f"{path}: expected the tensors frame (input), labels and optionally confidence "
                               f"(outputs), the engine has {', '.join(sorted(names))}; not a dannet-export engine")
        if engine.get_tensor_dtype(self.INPUT) != trt.DataType.UINT8:
            raise BackendError(f"{path}: its frame input is not uint8; not a dannet-export engine")
        types = {trt.DataType.UINT8: np.dtype(np.uint8), trt.DataType.INT32: np.dtype(np.int32)}
        dtypes = {name: types.get(engine.get_tensor_dtype(name)) for name in outputs}
        for name, dtype in dtypes.items():
            if dtype is None:
                raise BackendError(f"{path}: its {name} are neither uint8 nor int32; not a dannet-export engine")
        return dtypes

    def _profile_sizes(self, path: Path) -> SizeRange:
        """The frame sizes a dynamic engine takes: its graph's (``DYNAMIC_EXPORT_SIZES``) within its optimisation
        profile, which an engine from an older dannet-export may not have bounded by multiples of 4."""
        low, _, high = (tuple(shape) for shape in self.engine.get_tensor_profile_shape(self.INPUT, 0))
        sizes = DYNAMIC_EXPORT_SIZES.within(low[1:3], high[1:3])
        if sizes is None:
            raise BackendError(f"{path}: its profile's frames ({size_text(low)} to {size_text(high)}) include no size "
                               f"its graph takes ({DYNAMIC_EXPORT_SIZES}); rebuild it with dannet-export engine")
        return sizes

    def _cuda(self, what: str, result: tuple):
        """The value of a cuda-python call's ``(error, value)`` (None for ``(error,)``); errors are BackendErrors."""
        from .engine_sidecar import cuda_error_name

        err, *value = result
        if int(err) != 0:
            raise BackendError(f"{what} failed: {cuda_error_name(err)}", EXIT_FAILED)
        return value[0] if value else None

    def _set_input_shape(self, shape: tuple[int, ...]) -> None:
        """Tell the context the frames' shape whenever it changes (its output shape and our sizes follow it)."""
        if shape == self.input_shape:
            return
        self.input_shape = None
        if not self.context.set_input_shape(self.INPUT, shape):
            accepted = size_text(self.engine.get_tensor_shape(self.INPUT))
            if self.info.input_size is None:
                low, _, high = self.engine.get_tensor_profile_shape(self.INPUT, 0)
                accepted = f"{size_text(low)} to {size_text(high)}"
            raise BackendError(f"frames of shape {size_text(shape)}: the engine takes {accepted}")
        self.input_shape = shape

    def infer(self, frames: np.ndarray) -> Inference:
        check_open(self, self.context)
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim != 4 or frames.shape[3] != 3:
            raise BackendError(f"frames must be N x H x W x 3 uint8 RGB, got shape {frames.shape}")
        self._set_input_shape(frames.shape)
        shapes = {name: tuple(self.context.get_tensor_shape(name)) for name in self.output_dtypes}
        sizes = {self.INPUT: frames.nbytes, **{name: int(np.prod(shape)) * self.output_dtypes[name].itemsize
                                               for name, shape in shapes.items()}}
        for name, staging in self.staging.items():  # shapes first, then the addresses of buffers that fit them
            staging.reserve(sizes[name])
            if not self.context.set_tensor_address(name, staging.device):
                raise BackendError(f"TensorRT refused the address of {name} (see its log above)", EXIT_FAILED)
        frame_in = self.staging[self.INPUT]
        frame_in.host_bytes(frames.nbytes)[:] = frames.reshape(-1)
        kind, stream = self.cudart.cudaMemcpyKind, self.stream
        self._cuda("cudaMemcpyAsync", self.cudart.cudaMemcpyAsync(
            frame_in.device, frame_in.host, frames.nbytes, kind.cudaMemcpyHostToDevice, stream))
        if not self.context.execute_async_v3(int(stream)):
            raise BackendError("TensorRT could not run the engine (see its log above)", EXIT_FAILED)
        for name in self.output_dtypes:
            out = self.staging[name]
            self._cuda("cudaMemcpyAsync", self.cudart.cudaMemcpyAsync(
                out.host, out.device, sizes[name], kind.cudaMemcpyDeviceToHost, stream))
        self._cuda("cudaStreamSynchronize", self.cudart.cudaStreamSynchronize(stream))
        width = self.info.output_size[1]
        values = {name: uint8_from_engine(self.staging[name].host_bytes(sizes[name]).view(dtype).reshape(shapes[name]),
                                          width, name) for name, dtype in self.output_dtypes.items()}
        return Inference(values[LABELS], values.get(CONFIDENCE))

    def close(self) -> None:
        """Free the buffers and the stream (after the work queued on it), then drop the execution context and the
        engine, context first as it belongs to the engine: TensorRT's Python objects free their GPU memory with
        their last reference. Idempotent. Every step is taken even when one fails (after a kernel fault CUDA
        reports the error again on every later call): the first failure is raised once all were tried."""
        if self.context is None:
            return
        steps = [lambda: self._cuda("cudaStreamSynchronize", self.cudart.cudaStreamSynchronize(self.stream)),
                 *(staging.release for staging in self.staging.values()),
                 lambda: self._cuda("cudaStreamDestroy", self.cudart.cudaStreamDestroy(self.stream))]
        failures = []
        for release in steps:
            try:
                release()
            except BackendError as failure:
                failures.append(failure)
        self.context = None
        self.engine = None
        if failures:
            raise failures[0]


#: the file inside a .pt2 archive that holds the ``dannet.*`` metadata
PT2_METADATA = "dannet.json"


class TorchBackend:
    """The PyTorch reference: a ``torch.export`` program (``dannet-export pt2``) on the GPU where there is one.

    The runtime does not import the training code, so checkpoints are exported first; the program has the
    portable graph's contract (uint8 frame in, uint8 labels out, or the pair labels, confidence) and its
    ``dannet.*`` metadata inside."""

    name = "torch"

    def __init__(self, path: str | Path, device: str | None = None) -> None:
        try:
            import torch
        except ImportError:
            raise BackendError("the torch backend needs PyTorch: pip install torch") from None
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"{path}: no such model file")
        extra = {PT2_METADATA: ""}
        try:
            program = torch.export.load(str(path), extra_files=extra)
            metadata = json.loads(extra[PT2_METADATA])
        except Exception as e:  # a zip of another kind, a truncated file, a program from another torch
            raise BackendError(f"{path}: not a dannet-export pt2 program ({str(e).splitlines()[0][:200]})") from None
        self.torch, self.device = torch, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.max_batch = program_max_batch(program)
        if self.device.type != "cpu":
            # traced on the CPU, the program names that device in its nodes (arange, tensor checks)
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, self.device)
        self.module = program.module()
        self.info = ModelInfo.from_metadata(metadata, str(path))

    def infer(self, frames: np.ndarray) -> Inference:
        check_open(self, self.module)
        with self.torch.inference_mode():
            # a copy: frames may be read-only (PIL's arrays), which torch tensors must not share
            outputs = self.module(self.torch.from_numpy(np.array(frames, dtype=np.uint8)).to(self.device))
        if self.info.confidence:
            return Inference(*(values.cpu().numpy() for values in outputs))
        return Inference(outputs.cpu().numpy())

    def close(self) -> None:
        """Drop the program: its weights (on the GPU, where it runs there) go with the last reference."""
        self.module = None


def program_max_batch(program: ExportedProgram) -> int | None:
    """The most frames a ``torch.export`` program takes: its frame's first dimension when fixed, else the upper
    bound the export gave that dimension (``torch.export.Dim("batch", max=...)``; the program's guards refuse a
    larger batch), None where it has no bound."""
    frame = next(node for node in program.graph.nodes
                 if node.op == "placeholder" and node.name == program.graph_signature.user_inputs[0])
    batch = frame.meta["val"].shape[0]
    if isinstance(batch, int):
        return batch
    upper = program.range_constraints[batch.node.expr].upper
    # no bound is infinity (int_oo, sympy.oo) or, in older torch, sys.maxsize - 1; all compare with ints
    return None if upper >= sys.maxsize - 1 else int(upper)


#: what ``--backend`` accepts everywhere (``auto``: from the model file's type)
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
#: backend for each model file type (``--backend auto``)
BACKEND_OF_SUFFIX = {".engine": "tensorrt", ".plan": "tensorrt", ".onnx": "onnxruntime", ".pt2": "torch"}


def resolve_backend(model: str | Path, backend: str = "auto") -> str:
    """The backend that runs ``model``: ``backend`` itself, or for ``auto`` the one its file type names. Callers
    that pass backend-specific options (``threads``) decide by this, not by the file name, which ``--backend``
    overrides."""
    if backend != "auto":
        return backend
    model = Path(model)
    kind = BACKEND_OF_SUFFIX.get(model.suffix)
    if kind is None:
        hint = ("a training checkpoint: export it first with dannet-export onnx (or pt2 for --backend torch)"
                if model.suffix in (".pth", ".pt", ".ckpt") else "expected .engine, .onnx or .pt2")
        raise BackendError(f"{model}: cannot tell the backend from the file type ({hint})")
    return kind


def open_backend(model: str | Path, backend: str = "auto", **options) -> Backend:
    """``auto`` picks by file type: ``.engine`` -> TensorRT, ``.onnx`` -> ONNX Runtime, ``.pt2`` -> PyTorch."""
    model = Path(model)
    kind = resolve_backend(model, backend)
    if kind == "onnxruntime":
        if model.suffix in (".engine", ".plan"):
            raise BackendError(f"{model}: a TensorRT engine cannot run in ONNX Runtime (use --backend tensorrt)")
        return OnnxRuntimeBackend(model, **options)
    if kind == "tensorrt":
        if model.suffix == ".onnx":
            raise BackendError(f"{model}: build an engine first: dannet-export engine --onnx {model} --out MODEL.engine")
        return TensorRTBackend(model, **options)
    if kind == "torch":
        if model.suffix != ".pt2":
            raise BackendError(f"{model}: the torch backend runs .pt2 programs: dannet-export pt2 --checkpoint CKPT "
                               "--out MODEL.pt2")
        return TorchBackend(model, **options)
    raise BackendError(f"unknown backend {backend!r}; expected auto, tensorrt, onnxruntime or torch")

"""Inference backends behind one small interface: uint8 RGB frames in, uint8 labels out.

Each backend runs a graph made by ``dannet-export`` (frame -> labels, tail in-graph) and imports its
library only when it is used, with an error that says what to install. The graph's metadata (class
names, palette, sizes, label format) comes along as ``ModelInfo``.
"""
from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .classes import CLASS_NAMES, PALETTE
from .errors import EXIT_FAILED, DannetError
from .reweight_argmax import unpack4


class BackendError(DannetError, RuntimeError):
    """A model/backend that cannot be used; one line naming the file and what to do."""


@dataclass(frozen=True)
class ModelInfo:
    input_size: tuple[int, int] | None  # None: dynamic
    output_size: tuple[int, int]
    class_names: tuple[str, ...] = CLASS_NAMES
    palette: np.ndarray = field(default_factory=lambda: PALETTE)
    weights_std: float | None = None  # test-time class weights the tail applies (None: not recorded)
    checkpoint_sha256: str | None = None  # the checkpoint the model was exported from (None: not recorded)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], where: str) -> "ModelInfo":
        try:
            inp, out = json.loads(metadata["dannet.input"]), json.loads(metadata["dannet.output"])
        except (KeyError, ValueError):
            raise BackendError(f"{where}: not a dannet-export graph (no dannet.* metadata)") from None
        names = tuple(json.loads(metadata.get("dannet.class_names", json.dumps(CLASS_NAMES))))
        palette = np.asarray(json.loads(metadata.get("dannet.palette", json.dumps(PALETTE.tolist()))), np.uint8)
        std = float(metadata["dannet.weights_std"]) if "dannet.weights_std" in metadata else None
        return cls(tuple(inp["size"]) if inp.get("size") else None, tuple(out["size"]), names, palette, std,
                   metadata.get("dannet.checkpoint_sha256") or None)


class Backend(Protocol):
    name: str
    info: ModelInfo

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """N x H x W x 3 uint8 RGB frames at the network input size -> N x H_out x W_out uint8 labels."""
        ...


class OnnxRuntimeBackend:
    """ONNX Runtime with the best provider installed (CUDA, then CPU); portable-tail graphs only."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int = 0) -> None:
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
        self.providers = self.session.get_providers()

    def infer(self, frames: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"frame": np.ascontiguousarray(frames, dtype=np.uint8)})[0]


def labels_from_engine(values: np.ndarray, width: int) -> np.ndarray:
    """uint8 N x H x W labels (a new array) from an engine's ``labels`` tensor, typed and shaped as the engine
    says: uint8 labels (portable tail), int32 labels (plugin tail; all < 256), or int32 with ceil(W/4) columns
    holding four uint8 labels each, little-endian (plugin tail, pack4)."""
    if values.dtype == np.uint8 and values.shape[-1] == width:
        return values.copy()
    if values.dtype == np.int32 and values.shape[-1] == width:
        return values.astype(np.uint8)
    if values.dtype == np.int32 and values.shape[-1] == (width + 3) // 4:
        return unpack4(values, width).copy()
    raise BackendError(f"the engine's labels are {values.dtype} with {values.shape[-1]} columns: not labels "
                       f"{width} wide (uint8, int32 or pack4); rebuild it with dannet-export engine")


class _Staging:
    """A device buffer and a pinned host buffer for one tensor, grown to the largest size asked for.

    One pair per tensor, not one per input shape: a dynamic-shape engine fed many frame sizes would pile up
    allocations."""

    def __init__(self, cudart, check: Callable) -> None:
        self.cudart, self.check = cudart, check
        self.device = self.host = self.capacity = 0

    def reserve(self, nbytes: int) -> None:
        if nbytes <= self.capacity:
            return
        if self.capacity:
            self.check("cudaFree", self.cudart.cudaFree(self.device))
            self.check("cudaFreeHost", self.cudart.cudaFreeHost(self.host))
            self.capacity = 0
        self.device = self.check("cudaMalloc", self.cudart.cudaMalloc(nbytes))
        self.host = self.check("cudaMallocHost", self.cudart.cudaMallocHost(nbytes))
        self.capacity = nbytes

    def host_bytes(self, nbytes: int) -> np.ndarray:
        """The first ``nbytes`` of the pinned buffer, as a uint8 array over it (no copy)."""
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(self.host))


class TensorRTBackend:
    """A TensorRT engine run through cuda-python: ``set_input_shape``, ``set_tensor_address`` and
    ``execute_async_v3`` on one stream, pinned host buffers. The engine's sidecar is checked before loading.

    The engine decides how its labels are read (``labels_from_engine``): their type, and their shape for the
    frames at hand, come from TensorRT; only the label map's width, which a pack4 engine does not show, comes
    from the sidecar. With dynamic shapes, any frame size within the engine's profile runs."""

    name = "tensorrt"
    INPUT, OUTPUT = "frame", "labels"

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
        self.label_dtype = self._check_tensors(trt, path)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"{path}: TensorRT could not create an execution context (see its log above)")
        self.stream = self._cuda("cudaStreamCreate", self.cudart.cudaStreamCreate())
        frame_shape = tuple(self.engine.get_tensor_shape(self.INPUT))
        self.info = ModelInfo(None if min(frame_shape[1:3]) < 0 else frame_shape[1:3], tuple(sidecar.output_size),
                              tuple(sidecar.class_names) or CLASS_NAMES, weights_std=sidecar.weights_std,
                              checkpoint_sha256=sidecar.checkpoint_sha256)
        self.staging = {name: _Staging(self.cudart, self._cuda) for name in (self.INPUT, self.OUTPUT)}
        self.input_shape: tuple[int, ...] | None = None  # the shape last set on the context

    def _check_tensors(self, trt, path: Path) -> np.dtype:
        """The engine's I/O is a uint8 ``frame`` input and a ``labels`` output; returns the labels' type."""
        engine = self.engine
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        if names != {self.INPUT, self.OUTPUT} or engine.get_tensor_mode(self.INPUT) != trt.TensorIOMode.INPUT:
            raise BackendError(f"{path}: expected the tensors frame (input) and labels (output), the engine has "
                               f"{', '.join(sorted(names))}; not a dannet-export engine")
        if engine.get_tensor_dtype(self.INPUT) != trt.DataType.UINT8:
            raise BackendError(f"{path}: its frame input is not uint8; not a dannet-export engine")
        label_types = {trt.DataType.UINT8: np.dtype(np.uint8), trt.DataType.INT32: np.dtype(np.int32)}
        dtype = label_types.get(engine.get_tensor_dtype(self.OUTPUT))
        if dtype is None:
            raise BackendError(f"{path}: its labels are neither uint8 nor int32; not a dannet-export engine")
        return dtype

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
            accepted = "x".join(str(d) for d in self.engine.get_tensor_shape(self.INPUT))
            if self.info.input_size is None:
                low, _, high = self.engine.get_tensor_profile_shape(self.INPUT, 0)
                accepted = f"{'x'.join(str(d) for d in low)} to {'x'.join(str(d) for d in high)}"
            raise BackendError(f"frames of shape {'x'.join(str(d) for d in shape)}: the engine takes {accepted}")
        self.input_shape = shape

    def infer(self, frames: np.ndarray) -> np.ndarray:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim != 4 or frames.shape[3] != 3:
            raise BackendError(f"frames must be N x H x W x 3 uint8 RGB, got shape {frames.shape}")
        self._set_input_shape(frames.shape)
        labels_shape = tuple(self.context.get_tensor_shape(self.OUTPUT))
        sizes = {self.INPUT: frames.nbytes, self.OUTPUT: int(np.prod(labels_shape)) * self.label_dtype.itemsize}
        for name, staging in self.staging.items():  # shapes first, then the addresses of buffers that fit them
            staging.reserve(sizes[name])
            if not self.context.set_tensor_address(name, staging.device):
                raise BackendError(f"TensorRT refused the address of {name} (see its log above)", EXIT_FAILED)
        frame_in, labels_out = self.staging[self.INPUT], self.staging[self.OUTPUT]
        frame_in.host_bytes(frames.nbytes)[:] = frames.reshape(-1)
        kind, stream = self.cudart.cudaMemcpyKind, self.stream
        self._cuda("cudaMemcpyAsync", self.cudart.cudaMemcpyAsync(
            frame_in.device, frame_in.host, frames.nbytes, kind.cudaMemcpyHostToDevice, stream))
        if not self.context.execute_async_v3(int(stream)):
            raise BackendError("TensorRT could not run the engine (see its log above)", EXIT_FAILED)
        self._cuda("cudaMemcpyAsync", self.cudart.cudaMemcpyAsync(
            labels_out.host, labels_out.device, sizes[self.OUTPUT], kind.cudaMemcpyDeviceToHost, stream))
        self._cuda("cudaStreamSynchronize", self.cudart.cudaStreamSynchronize(stream))
        values = labels_out.host_bytes(sizes[self.OUTPUT]).view(self.label_dtype).reshape(labels_shape)
        return labels_from_engine(values, self.info.output_size[1])


#: the file inside a .pt2 archive that holds the ``dannet.*`` metadata
PT2_METADATA = "dannet.json"


class TorchBackend:
    """The PyTorch reference: a ``torch.export`` program (``dannet-export pt2``) on the GPU where there is one.

    The runtime does not import the training code, so checkpoints are exported first; the program has the
    portable graph's contract (uint8 frame in, uint8 labels out) and its ``dannet.*`` metadata inside."""

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
        if self.device.type != "cpu":
            # traced on the CPU, the program names that device in its nodes (arange, tensor checks)
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, self.device)
        self.module = program.module()
        self.info = ModelInfo.from_metadata(metadata, str(path))

    def infer(self, frames: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            labels = self.module(self.torch.from_numpy(np.ascontiguousarray(frames, dtype=np.uint8)).to(self.device))
        return labels.cpu().numpy()


#: what ``--backend`` accepts everywhere (``auto``: from the model file's type)
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
#: backend for each model file type (``--backend auto``)
BACKEND_OF_SUFFIX = {".engine": "tensorrt", ".plan": "tensorrt", ".onnx": "onnxruntime", ".pt2": "torch"}


def open_backend(model: str | Path, backend: str = "auto", **options) -> Backend:
    """``auto`` picks by file type: ``.engine`` -> TensorRT, ``.onnx`` -> ONNX Runtime, ``.pt2`` -> PyTorch."""
    model = Path(model)
    kind = backend
    if backend == "auto":
        kind = BACKEND_OF_SUFFIX.get(model.suffix)
        if kind is None:
            hint = ("a training checkpoint: export it first with dannet-export onnx (or pt2 for --backend torch)"
                    if model.suffix in (".pth", ".pt", ".ckpt") else "expected .engine, .onnx or .pt2")
            raise BackendError(f"{model}: cannot tell the backend from the file type ({hint})")
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

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
from typing import Protocol

import numpy as np

from .classes import CLASS_NAMES, PALETTE


class BackendError(RuntimeError):
    """A model/backend that cannot be used; one line naming the file and what to do."""


@dataclass(frozen=True)
class ModelInfo:
    input_size: tuple[int, int] | None  # None: dynamic
    output_size: tuple[int, int]
    class_names: tuple[str, ...] = CLASS_NAMES
    palette: np.ndarray = field(default_factory=lambda: PALETTE)
    weights_std: float | None = None  # test-time class weights the tail applies (None: not recorded)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], where: str) -> "ModelInfo":
        try:
            inp, out = json.loads(metadata["dannet.input"]), json.loads(metadata["dannet.output"])
        except (KeyError, ValueError):
            raise BackendError(f"{where}: not a dannet-export graph (no dannet.* metadata)") from None
        names = tuple(json.loads(metadata.get("dannet.class_names", json.dumps(CLASS_NAMES))))
        palette = np.asarray(json.loads(metadata.get("dannet.palette", json.dumps(PALETTE.tolist()))), np.uint8)
        std = float(metadata["dannet.weights_std"]) if "dannet.weights_std" in metadata else None
        return cls(tuple(inp["size"]) if inp.get("size") else None, tuple(out["size"]), names, palette, std)


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


class TensorRTBackend:
    """A TensorRT engine run through cuda-python: device buffers, pinned host buffers, one stream,
    ``set_tensor_address`` + ``execute_async_v3``. The engine's sidecar is checked before loading."""

    name = "tensorrt"

    def __init__(self, path: str | Path, plugin_lib: str | None = None) -> None:
        from .engine_sidecar import EngineError, Sidecar, current_machine, import_tensorrt, sidecar_path

        path = Path(path)
        if not path.is_file():
            raise BackendError(f"{path}: no such engine file")
        try:
            trt = import_tensorrt()
            from cuda.bindings import runtime as cudart
            sidecar_file = sidecar_path(path)
            if not sidecar_file.is_file():
                raise BackendError(f"{path}: no sidecar {sidecar_file.name}; rebuild it with dannet-export engine")
            sidecar, machine = Sidecar.read(sidecar_file), current_machine()
        except (EngineError, ImportError) as e:
            raise BackendError(str(e) if isinstance(e, EngineError) else "the tensorrt backend needs cuda-python: "
                               "pip install cuda-python") from None
        if (sidecar.tensorrt_version, sidecar.gpu_name, sidecar.compute_capability) != \
                (machine.tensorrt_version, machine.gpu_name, machine.compute_capability):
            raise BackendError(f"{path}: built for {sidecar.gpu_name} with TensorRT {sidecar.tensorrt_version}, this "
                               f"is {machine.gpu_name} with {machine.tensorrt_version}; rebuild it here")
        if sidecar.plugin_version:
            from .plugin_library import PluginLibraryError, load_plugin_library

            try:
                load_plugin_library(plugin_lib)
            except PluginLibraryError as e:
                raise BackendError(str(e)) from None
        self.cudart, logger = cudart, trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{path}: TensorRT could not deserialise the engine")
        self.context = self.engine.create_execution_context()
        self.stream = self._check(cudart.cudaStreamCreate())
        out = sidecar.outputs[0]
        height, width = out["shape"][1], out["shape"][2]
        self.packed = "int32" in out["dtype"].lower() and sidecar.plugin_version is not None
        inp = sidecar.inputs[0]["shape"]
        self.info = ModelInfo(tuple(inp[1:3]) if min(inp) > 0 else None, (height, width), tuple(sidecar.class_names),
                              weights_std=sidecar.weights_std)
        self.buffers: dict[tuple, tuple] = {}

    def _check(self, result):
        err, *value = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise BackendError(f"CUDA error {err}")
        return value[0] if value else None

    def _buffers(self, frames_shape: tuple[int, ...]) -> tuple:
        """Device and pinned host buffers for this input shape (allocated once per shape)."""
        if frames_shape not in self.buffers:
            self.context.set_input_shape("frame", frames_shape)
            out_shape = tuple(self.context.get_tensor_shape("labels"))
            in_bytes, out_bytes = int(np.prod(frames_shape)), int(np.prod(out_shape)) * 4
            d_in, d_out = self._check(self.cudart.cudaMalloc(in_bytes)), self._check(self.cudart.cudaMalloc(out_bytes))
            h_in = self._check(self.cudart.cudaMallocHost(in_bytes))
            h_out = self._check(self.cudart.cudaMallocHost(out_bytes))
            host_in = np.ctypeslib.as_array((ctypes.c_uint8 * in_bytes).from_address(h_in)).reshape(frames_shape)
            host_out = np.ctypeslib.as_array((ctypes.c_uint8 * out_bytes).from_address(h_out))
            self.buffers[frames_shape] = (d_in, d_out, host_in, host_out, out_shape)
        return self.buffers[frames_shape]

    def infer(self, frames: np.ndarray) -> np.ndarray:
        d_in, d_out, host_in, host_out, out_shape = self._buffers(frames.shape)
        kind = self.cudart.cudaMemcpyKind
        host_in[...] = frames
        self._check(self.cudart.cudaMemcpyAsync(d_in, host_in.ctypes.data, host_in.nbytes,
                                                kind.cudaMemcpyHostToDevice, self.stream))
        self.context.set_tensor_address("frame", d_in)
        self.context.set_tensor_address("labels", d_out)
        if not self.context.execute_async_v3(self.stream):
            raise BackendError("TensorRT execution failed")
        self._check(self.cudart.cudaMemcpyAsync(host_out.ctypes.data, d_out, host_out.nbytes,
                                                kind.cudaMemcpyDeviceToHost, self.stream))
        self._check(self.cudart.cudaStreamSynchronize(self.stream))
        labels = host_out.view(np.int32).reshape(out_shape)
        if out_shape[-1] != self.info.output_size[1]:  # pack4: four uint8 labels per int32, a view
            return labels.view(np.uint8)[..., : self.info.output_size[1]]
        return labels.view(np.uint8)[..., ::4]  # int32 labels < 256: their low bytes, a strided view


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
        self.module = program.module().to(self.device)
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

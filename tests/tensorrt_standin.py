"""A strict stand-in for TensorRT's Python API and cuda-python's runtime API, for CPU tests of the code that
drives them (runtime/backends.py, runtime/plugin_library.py, export/engine.py) on machines without either.

It enforces what TensorRT and CUDA enforce, and runs engines with their real semantics, so code that misuses
the API or misreads an engine fails here rather than on first contact with a GPU:

- ``tensorrt``: only the members tests/tensorrt_api.py lists exist (that manifest is checked against the real
  bindings of every supported TensorRT). An engine's tensors are those of the ONNX graph it was built from.
  Input shapes must be set, within the optimisation profile, before output shapes are known and before
  execution; every I/O tensor needs an address, and its bytes at the current shapes must lie in one live
  device allocation. The ONNX parser accepts only what TensorRT 10.3's parser does for the ops in
  ``ONNX_OPS``, and a plugin node only when its creator is registered; the plugin registry refuses a creator
  registered twice.
- ``cuda.bindings.runtime``: device memory is a registry of bounds-checked allocations at fake addresses;
  pinned host memory is real memory that the registry knows. Every copy and every engine read and write is
  checked against the allocation it falls in; freed memory is unusable. Work on a stream runs when the stream
  is synchronised (or memory freed), as on a GPU: a result read before ``cudaStreamSynchronize`` is stale.
- Engines compute what the real ones do: a portable-tail graph runs in ONNX Runtime; a plugin-tail graph runs
  its body in ONNX Runtime up to ``logits``, then ``runtime.reweight_argmax`` (the kernel's NumPy twin:
  ``reweight_argmax_confidence`` where the node has ``confidence=1``), and writes int32 labels (and confidence
  levels) or pack4 exactly as the plugin does. Every output tensor of the engine is written.

Failures that TensorRT reports come back as TensorRT returns them (False, None, a parser error) and are logged
in ``StandIn.log``; misuse that real hardware or TensorRT would turn into a crash, corrupt memory or a
meaningless value raises ``ContractViolation``. Tests install a fresh ``StandIn`` (one "process") with
``StandIn.install``; product code never imports this module.
"""
from __future__ import annotations

import functools
import importlib.machinery
import json
import operator
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, NamedTuple

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tensorrt_api import API

VERSION = "10.3.0"
GPU_NAME, COMPUTE_CAPABILITY = "Stand-in Orin", (8, 7)
CREATOR = ("ReweightArgmax", "1", "dannet")  # what any plugin library loaded into the stand-in registers
PLAN_MAGIC = b"dannet-edge stand-in plan\n"
DEVICE_BASE = 1 << 56  # fake device addresses, far from any host address


class ContractViolation(AssertionError):
    """Use of TensorRT or CUDA that would crash, corrupt memory or give meaningless values on real hardware."""


# --- the manifest: nothing beyond tests/tensorrt_api.py ------------------------------------------------------

def _refuse(owner: str, name: str) -> None:
    if not name.startswith("_") and name not in API.get(owner, ()):
        raise AttributeError(f"stand-in TensorRT: {owner}.{name} is not in tests/tensorrt_api.py (add it there, "
                             "checked against the real bindings, before using it)")


class _StrictType(type):
    def __getattribute__(cls, name: str):
        _refuse(type.__getattribute__(cls, "__name__"), name)
        return type.__getattribute__(cls, name)


class _Strict(metaclass=_StrictType):
    """A TensorRT binding class: public members only where the manifest lists them (by the real class name)."""

    def __init_subclass__(cls) -> None:
        extra = {n for n in vars(cls) if not n.startswith("_") and n not in API.get(cls.__name__, ())}
        assert not extra, f"stand-in {cls.__name__} defines {sorted(extra)}, which tests/tensorrt_api.py lacks"

    def __getattribute__(self, name: str):
        _refuse(type(self).__name__, name)
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value) -> None:
        _refuse(type(self).__name__, name)
        object.__setattr__(self, name, value)


def _enum(name: str, values: dict[str, int] | None = None) -> type:
    """A binding enum with the members the manifest lists; members compare by identity, like pybind11's."""
    cls = _StrictType(name, (_Strict,), {"__repr__": lambda self: f"{name}.{self._member}",
                                         "__int__": lambda self: self._value})
    for index, member in enumerate(sorted(API.get(name, ()))):
        value = object.__new__(cls)
        object.__setattr__(value, "_member", member)
        object.__setattr__(value, "_value", (values or {}).get(member, index))
        type.__setattr__(cls, member, value)
    return cls


DataType = _enum("DataType")
TensorIOMode = _enum("TensorIOMode")
NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
MemoryPoolType = _enum("MemoryPoolType")
DeviceType = _enum("DeviceType")
BuilderFlag = _enum("BuilderFlag")
ONNX_TO_TRT = {TensorProto.UINT8: "UINT8", TensorProto.INT32: "INT32"}  # the I/O types our engines have
NUMPY_OF = {"UINT8": np.uint8, "INT32": np.int32}


class Dims(_Strict):
    """A shape as the bindings return it: a sequence of ints, -1 where unknown."""

    def __init__(self, dims) -> None:
        object.__setattr__(self, "_dims", tuple(int(d) for d in dims))

    def __iter__(self):
        return iter(self._dims)

    def __len__(self) -> int:
        return len(self._dims)

    def __getitem__(self, index):
        return self._dims[index]

    def __repr__(self) -> str:
        return f"Dims{self._dims}"


# --- TensorRT's ONNX parser: what it accepts for the ops our graphs use --------------------------------------

FLOATS = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16}
INTS = {TensorProto.INT32, TensorProto.INT64}
ANY = FLOATS | INTS | {TensorProto.BOOL}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


class _Node:
    """A node with what the rules ask about it: input/output types, constant inputs, attributes, shapes."""

    def __init__(self, node: onnx.NodeProto, graph: "_TypedGraph") -> None:
        self.node, self.graph = node, graph
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def type(self, name: str) -> int | None:
        return self.graph.types.get(name)

    def input_types(self, which: tuple[int, ...] | None) -> list[tuple[str, int | None]]:
        inputs = list(self.node.input)
        picked = range(len(inputs)) if which is None else [i for i in which if i < len(inputs)]
        return [(inputs[i], self.type(inputs[i])) for i in picked if inputs[i]]

    def given(self, index: int) -> str:
        return self.node.input[index] if index < len(self.node.input) else ""

    def constant(self, index: int) -> bool:
        return self.given(index) in self.graph.constants

    def text(self, name: str, default: str) -> str:
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value


def _cast_rule(n: _Node) -> list[str]:
    # NvInferRuntimeBase.h, DataType::kUINT8: "kUINT8 conversions are only supported for {kFLOAT, kHALF}",
    # and uint8 only as network inputs and outputs (onnx-tensorrt operators.md)
    to, source = n.attrs["to"], n.type(n.node.input[0])
    problems = [] if to in ANY | {TensorProto.UINT8} else [f"to {_name(to)}: not a TensorRT type"]
    if TensorProto.UINT8 in (to, source) and {to, source} - {TensorProto.UINT8} - {TensorProto.FLOAT,
                                                                                   TensorProto.FLOAT16}:
        problems.append(f"{_name(source)} -> {_name(to)}: uint8 converts only to/from FLOAT or FLOAT16")
    if to == TensorProto.UINT8 and n.node.output[0] not in n.graph.outputs:
        problems.append("to UINT8 inside the network: uint8 is supported only as network input or output")
    return problems


def _maxpool_rule(n: _Node) -> list[str]:
    problems = []
    if len(n.attrs.get("kernel_shape", [])) not in (2, 3):
        problems.append("2D or 3D pooling only")
    if any(d != 1 for d in n.attrs.get("dilations", [])):
        problems.append("dilations must be empty or all ones")
    if len([o for o in n.node.output if o]) > 1:
        problems.append("the Indices output is unsupported")
    return problems


def _resize_rule(n: _Node) -> list[str]:
    problems = []
    if n.text("mode", "nearest") not in ("nearest", "linear"):
        problems.append(f"mode {n.text('mode', 'nearest')!r} (nearest, linear only)")
    if n.text("coordinate_transformation_mode", "half_pixel") not in RESIZE_COORDINATES:
        problems.append(f"coordinate_transformation_mode {n.text('coordinate_transformation_mode', '')!r}")
    if n.text("nearest_mode", "round_prefer_floor") not in RESIZE_NEAREST:
        problems.append(f"nearest_mode {n.text('nearest_mode', '')!r}")
    if n.text("keep_aspect_ratio_policy", "stretch") != "stretch":
        problems.append("keep_aspect_ratio_policy must be stretch")
    if n.attrs.get("antialias", 0):
        problems.append("antialiasing is not supported")
    rank = len(n.graph.shapes.get(n.node.input[0]) or [])
    if n.given(2) and "axes" in n.attrs and list(n.attrs["axes"]) != list(range(rank)):
        problems.append("with a scales tensor, axes must be an iota of length rank(input)")
    return problems


def _constant_input(index: int, what: str) -> Callable[[_Node], list[str]]:
    def rule(n: _Node) -> list[str]:
        return [what] if n.given(index) and not n.constant(index) else []
    return rule


def _clip_rule(n: _Node) -> list[str]:
    return [f"{bound} must be an initializer" for index, bound in ((1, "min"), (2, "max"))
            if n.given(index) and not n.constant(index)]


def _squeeze_rule(n: _Node) -> list[str]:
    if n.given(1):
        return _constant_input(1, "axes must be an initializer")(n)
    shape = n.graph.shapes.get(n.node.input[0])
    if shape is None or any(d is None for d in shape):  # the importer reads the axes off the static shape
        return ["without axes, the input shape must be static"]
    return []


def _constant_rule(n: _Node) -> list[str]:
    unsupported = {"sparse_value", "value_string", "value_strings"} & set(n.attrs)
    return [f"{', '.join(sorted(unsupported))} unsupported"] if unsupported else []


def _plugin_rule(n: _Node) -> list[str]:
    # found through the plugin registry by op type, plugin_version and plugin_namespace (TRT_custom_ops.md)
    version, namespace = n.text("plugin_version", ""), n.text("plugin_namespace", "")
    return [] if (n.node.op_type, version, namespace) == CREATOR else [f"plugin {n.node.op_type} {version!r} "
                                                                       f"{namespace!r} is not ours"]


def _qdq_rule(n: _Node) -> list[str]:
    """QuantizeLinear/DequantizeLinear: explicit quantisation is symmetric int8 ("zero_point must be 0"), with
    the scale and zero point as initializers (onnx-tensorrt operators.md)."""
    if not (len(n.node.input) > 2 and n.constant(1) and n.constant(2)):
        return ["scale and zero point must be initializers"]
    if n.type(n.node.input[2]) != TensorProto.INT8:
        return ["only int8 (zero point 0)"]
    return []


#: op -> (types the data inputs may have, which inputs are data (None: all), extra rule). Types and
#: restrictions from onnx-tensorrt's docs/operators.md for TensorRT 10.x and its Changelog.md up to 10.3
#: (Slice: tensor axes since 10.3; Pad: axes an initializer until 10.4; Squeeze/Unsqueeze: constant axes until
#: 10.7), and TensorRT's layer docs (NvInfer.h: IIdentityLayer/ICastLayer; NvInferRuntimeBase.h: kUINT8).
#: An op that is not here fails the check until its TensorRT support has been looked up and added.
ONNX_OPS: dict[tuple[str, str], tuple[set[int], tuple[int, ...] | None, Callable[[_Node], list[str]] | None]] = {
    ("", "Add"): (FLOATS | INTS, None, None),
    ("", "Sub"): (FLOATS | INTS, None, None),
    ("", "Mul"): (FLOATS | INTS, None, None),
    ("", "Div"): (FLOATS | INTS, None, None),
    ("", "Exp"): (FLOATS, None, None),
    ("", "Less"): (FLOATS | INTS, None, None),
    ("", "GreaterOrEqual"): (FLOATS | INTS, None, None),
    ("", "And"): ({TensorProto.BOOL}, None, None),
    ("", "ArgMax"): (FLOATS | INTS, (0,), None),
    ("", "Cast"): (ANY | {TensorProto.UINT8}, (0,), _cast_rule),
    ("", "Clip"): (FLOATS | INTS, (0,), _clip_rule),
    ("", "Concat"): (ANY, None, None),
    ("", "Constant"): (set(), (), _constant_rule),
    ("", "Conv"): (FLOATS, None, None),
    ("", "ConvTranspose"): (FLOATS, None, None),
    ("", "Floor"): (FLOATS, None, None),
    ("", "IsNaN"): (FLOATS, None, None),
    ("", "MatMul"): (FLOATS, None, None),
    ("", "MaxPool"): (FLOATS, (0,), _maxpool_rule),
    ("", "Pad"): (FLOATS | INTS, (0,), _constant_input(3, "axes must be an initializer")),
    ("", "QuantizeLinear"): (FLOATS, (0,), _qdq_rule),
    ("", "DequantizeLinear"): ({TensorProto.INT8}, (0,), _qdq_rule),
    ("", "Range"): (FLOATS | INTS, None, None),
    ("", "Reciprocal"): (FLOATS, None, None),
    ("", "ReduceMax"): (FLOATS | INTS, (0,), _constant_input(1, "axes must be an initializer")),
    ("", "ReduceSum"): (FLOATS | INTS, (0,), _constant_input(1, "axes must be an initializer")),
    ("", "Relu"): (FLOATS | INTS, None, None),
    ("", "Reshape"): (ANY, (0,), None),
    ("", "Resize"): (FLOATS, (0,), _resize_rule),
    ("", "Shape"): (ANY, (0,), None),
    ("", "Slice"): (ANY, (0,), None),
    ("", "Squeeze"): (ANY, (0,), _squeeze_rule),
    ("", "Tanh"): (FLOATS, None, None),
    ("", "Transpose"): (ANY, (0,), None),
    ("", "Unsqueeze"): (ANY, (0,), _constant_input(1, "axes must be a constant tensor")),
    ("", "Where"): (FLOATS | INTS | {TensorProto.BOOL}, None, None),
    ("dannet", "ReweightArgmax"): ({TensorProto.FLOAT, TensorProto.FLOAT16}, (0,), _plugin_rule),
}
#: the default-domain opsets TensorRT 10.x parses (operators.md: "opset 9 to opset 20")
OPSETS = range(9, 21)


def _name(elem_type: int | None) -> str:
    return "unknown" if elem_type is None else TensorProto.DataType.Name(elem_type)


class _TypedGraph:
    """A graph's tensors with their element types and shapes (ONNX shape inference), and its constants."""

    def __init__(self, model: onnx.ModelProto) -> None:
        light = onnx.ModelProto()
        light.CopyFrom(model)
        for weights in light.graph.initializer:  # inference needs their types and shapes; small ones may be shapes
            if len(weights.raw_data) > 4096:
                weights.ClearField("raw_data")
        graph = onnx.shape_inference.infer_shapes(light).graph
        self.graph = graph
        self.types: dict[str, int] = {}
        self.shapes: dict[str, list[int | None] | None] = {}
        for info in [*graph.input, *graph.value_info, *graph.output]:
            tensor = info.type.tensor_type
            self.types[info.name] = tensor.elem_type
            self.shapes[info.name] = ([d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
                                      if tensor.HasField("shape") else None)
        self.constants = {i.name for i in graph.initializer}
        for init in graph.initializer:
            self.types[init.name], self.shapes[init.name] = init.data_type, list(init.dims)
        self.constants |= {node.output[0] for node in graph.node if node.op_type == "Constant"}
        self.outputs = {o.name for o in graph.output}


class Problem(NamedTuple):
    """Why TensorRT's ONNX parser would refuse a node (node "" for the graph as a whole)."""

    node: str
    op: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op}): {self.reason}" if self.node else self.reason


def onnx_problems(model: onnx.ModelProto) -> list[Problem]:
    """What TensorRT 10.3's ONNX parser would refuse in ``model``."""
    graph = _TypedGraph(model)
    problems = [Problem("", "", f"opset {o.version} of the default domain (TensorRT parses {OPSETS.start}-"
                                f"{OPSETS.stop - 1})")
                for o in model.opset_import if o.domain in ("", "ai.onnx") and o.version not in OPSETS]
    for node in graph.graph.node:
        rule = ONNX_OPS.get((node.domain if node.domain != "ai.onnx" else "", node.op_type))
        if rule is None:
            problems.append(Problem(node.name, node.op_type, "not in the table of ops TensorRT 10.3 is known to "
                                                             "parse (look its support up, then add it)"))
            continue
        allowed, data_inputs, check = rule
        n = _Node(node, graph)
        problems += [Problem(node.name, node.op_type, f"input {tensor} is {_name(elem_type)}, TensorRT takes "
                                                      f"{', '.join(sorted(_name(t) for t in allowed))}")
                     for tensor, elem_type in n.input_types(data_inputs) if elem_type not in allowed]
        problems += [Problem(node.name, node.op_type, reason) for reason in (check(n) if check else [])]
    return problems


# --- CUDA -------------------------------------------------------------------------------------------------------

class _CudaEnum(int):
    """cuda-python's enums are IntEnums with a ``name``."""

    def __new__(cls, name: str, value: int):
        member = super().__new__(cls, value)
        member.name = name
        return member

    def __repr__(self) -> str:
        return f"<{self.name}: {int(self)}>"


def _cuda_enum(name: str, members: dict[str, int]) -> type:
    return type(name, (), {key: _CudaEnum(key, value) for key, value in members.items()})


cudaError_t = _cuda_enum("cudaError_t", {"cudaSuccess": 0, "cudaErrorInvalidValue": 1,
                                         "cudaErrorMemoryAllocation": 2, "cudaErrorInsufficientDriver": 35,
                                         "cudaErrorNoDevice": 100,
                                         "cudaErrorIllegalAddress": 700})
cudaMemcpyKind = _cuda_enum("cudaMemcpyKind", {"cudaMemcpyHostToHost": 0, "cudaMemcpyHostToDevice": 1,
                                               "cudaMemcpyDeviceToHost": 2, "cudaMemcpyDeviceToDevice": 3,
                                               "cudaMemcpyDefault": 4})
SUCCESS = cudaError_t.cudaSuccess


class cudaStream_t:
    """A stream handle; ``int()`` gives the value that TensorRT's ``execute_async_v3`` takes."""

    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __int__(self) -> int:
        return self._handle

    __index__ = __int__


class cudaDeviceProp:
    def __init__(self) -> None:
        self.name = GPU_NAME.encode() + b"\0" * (256 - len(GPU_NAME))
        self.major, self.minor = COMPUTE_CAPABILITY


class Memory:
    """Every allocation made through the stand-in: device memory (fake addresses backed by host arrays) and
    pinned host memory (real arrays at their own addresses). Freed arrays are kept, unusable, so that a stale
    host view never points at memory Python reused."""

    def __init__(self) -> None:
        self.live: dict[str, dict[int, np.ndarray]] = {"device": {}, "host": {}}
        self.freed: list[np.ndarray] = []
        self._next_device = DEVICE_BASE

    def allocate(self, kind: str, nbytes: int) -> int:
        if nbytes <= 0:
            raise ContractViolation(f"allocating {nbytes} bytes of {kind} memory")
        array = np.zeros(nbytes, dtype=np.uint8)
        if kind == "device":
            address, self._next_device = self._next_device, self._next_device + ((nbytes + 4095) // 4096 + 1) * 4096
        else:
            address = array.ctypes.data
        self.live[kind][address] = array
        return address

    def release(self, kind: str, address: int) -> None:
        if address not in self.live[kind]:
            raise ContractViolation(f"freeing {kind} address {address:#x}, which is not a live allocation")
        self.freed.append(self.live[kind].pop(address))

    def bytes_at(self, kind: str, address: int, nbytes: int, what: str) -> np.ndarray:
        """The ``nbytes`` at ``address`` as a uint8 array over the allocation they must lie in."""
        if not isinstance(address, int) or isinstance(address, bool):
            raise ContractViolation(f"{what}: address {address!r} is not an int")
        for base, array in self.live[kind].items():
            if base <= address < base + array.size:
                if nbytes < 0 or address + nbytes > base + array.size:
                    raise ContractViolation(f"{what}: {nbytes} bytes at {address:#x} overrun the {array.size}-byte "
                                            f"{kind} allocation at {base:#x} by {address + nbytes - base - array.size}")
                return array[address - base: address - base + nbytes]
        raise ContractViolation(f"{what}: {address:#x} is not in any live {kind} allocation (never allocated, "
                                "or freed)")


class CudaRuntime:
    """``cuda.bindings.runtime``, the part the project uses. ``driver``: "present"; "missing" (calls return
    cudaErrorInsufficientDriver, as cuda-python's runtime API does on a machine without libcuda); "unloadable"
    (calls raise RuntimeError, as its loader does where it looks for libcuda and finds none)."""

    def __init__(self, memory: Memory, driver: str = "present") -> None:
        self.memory, self.driver = memory, driver
        self.streams: dict[int, list[Callable[[], None]]] = {}
        self._next_stream = 1

    #: the functions the project calls, with how many values follow the error in what they return
    FUNCTIONS = {"cudaGetDeviceCount": 1, "cudaGetDeviceProperties": 1, "cudaMalloc": 1, "cudaMallocHost": 1,
                 "cudaFree": 0, "cudaFreeHost": 0, "cudaMemcpyAsync": 0, "cudaStreamCreate": 1,
                 "cudaStreamSynchronize": 0, "cudaStreamDestroy": 0}

    def module(self) -> ModuleType:
        module = _module("cuda.bindings.runtime")
        module.cudaError_t, module.cudaMemcpyKind, module.cudaStream_t = cudaError_t, cudaMemcpyKind, cudaStream_t
        for name, values in self.FUNCTIONS.items():
            setattr(module, name, self._call(getattr(self, name), values))
        return module

    def _call(self, function: Callable, values: int) -> Callable:
        @functools.wraps(function)
        def call(*args):
            if self.driver == "unloadable":
                raise RuntimeError('"cuda" is an NVIDIA driver library and can only be found via system search '
                                   "(stand-in: no libcuda on this machine)")
            if self.driver == "missing":
                return (cudaError_t.cudaErrorInsufficientDriver,) + (None,) * values
            return function(*args)
        return call

    def stream(self, stream) -> list[Callable[[], None]]:
        handle = int(stream)
        if handle not in self.streams:
            raise ContractViolation(f"stream {handle} is not a live stream (never created, or destroyed)")
        return self.streams[handle]

    def run_pending(self) -> None:
        """What an implicitly synchronising call (cudaFree, cudaFreeHost) does first: finish all queued work."""
        for queue in self.streams.values():
            while queue:
                queue.pop(0)()

    def cudaGetDeviceCount(self):
        return SUCCESS, 1

    def cudaGetDeviceProperties(self, device: int):
        if device != 0:
            return cudaError_t.cudaErrorInvalidValue, None
        return SUCCESS, cudaDeviceProp()

    def cudaMalloc(self, size: int):
        return SUCCESS, self.memory.allocate("device", size)

    def cudaMallocHost(self, size: int):
        return SUCCESS, self.memory.allocate("host", size)

    def cudaFree(self, devPtr: int):
        self.run_pending()
        self.memory.release("device", devPtr)
        return SUCCESS,

    def cudaFreeHost(self, ptr: int):
        self.run_pending()
        self.memory.release("host", ptr)
        return SUCCESS,

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind, stream):
        sides = {int(cudaMemcpyKind.cudaMemcpyHostToDevice): ("device", "host"),
                 int(cudaMemcpyKind.cudaMemcpyDeviceToHost): ("host", "device")}
        if int(kind) not in sides:
            raise ContractViolation(f"cudaMemcpyAsync kind {kind!r}: the stand-in copies host<->device only")
        to, source = sides[int(kind)]
        what = f"cudaMemcpyAsync {source} -> {to} of {count} bytes"
        self.memory.bytes_at(to, dst, count, what)
        self.memory.bytes_at(source, src, count, what)

        def copy() -> None:  # checked again when it runs: the memory may have been freed meanwhile
            self.memory.bytes_at(to, dst, count, what)[:] = self.memory.bytes_at(source, src, count, what)
        self.stream(stream).append(copy)
        return SUCCESS,

    def cudaStreamCreate(self):
        handle, self._next_stream = self._next_stream, self._next_stream + 1
        self.streams[handle] = []
        return SUCCESS, cudaStream_t(handle)

    def cudaStreamSynchronize(self, stream):
        queue = self.stream(stream)
        while queue:
            queue.pop(0)()
        return SUCCESS,

    def cudaStreamDestroy(self, stream):
        self.cudaStreamSynchronize(stream)
        del self.streams[int(stream)]
        return SUCCESS,


# --- engines: the real semantics -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _semantics(onnx_path: str, modified: float) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """frames -> every output of the engine by name, as the real engine computes them (cached per file
    version)."""
    import onnxruntime as ort

    from runtime.reweight_argmax import pack4, reweight_argmax, reweight_argmax_confidence

    model = onnx.load(onnx_path)
    plugin = [n for n in model.graph.node if (n.domain, n.op_type) == ("dannet", "ReweightArgmax")]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not plugin:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in model.graph.output]
        return lambda frames: dict(zip(names, session.run(names, {"frame": frames})))
    node = plugin[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    model.graph.node.remove(node)
    del model.graph.output[:]
    logits_type = _TypedGraph(model).types[node.input[0]]
    model.graph.output.append(helper.make_tensor_value_info(node.input[0], logits_type, None))
    kept = [o for o in model.opset_import if o.domain != "dannet"]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    body = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(frames: np.ndarray) -> dict[str, np.ndarray]:
        arguments = (body.run(None, {"frame": frames})[0], np.asarray(attrs["weights"], np.float32),
                     (attrs["out_height"], attrs["out_width"]), bool(attrs["align_corners"]), attrs["mode"])
        values = reweight_argmax_confidence(*arguments) if attrs.get("confidence", 0) else \
            (reweight_argmax(*arguments),)
        return {name: pack4(v) if attrs["pack4"] else v.astype(np.int32) for name, v in zip(node.output, values)}
    return run


class _Plan:
    """What an engine is: the ONNX graph it was built from, its I/O tensors and its optimisation profile."""

    def __init__(self, onnx_path: str, profile: dict[str, list[int]] | None, model: onnx.ModelProto | None = None,
                 modified: float | None = None) -> None:
        self.onnx_path, self.profile = onnx_path, profile
        self.modified = Path(onnx_path).stat().st_mtime if modified is None else modified  # the graph's version
        model = model or onnx.load(onnx_path, load_external_data=False)
        self.has_plugin = any((n.domain, n.op_type) == ("dannet", "ReweightArgmax") for n in model.graph.node)
        self.tensors: dict[str, tuple[object, str, tuple[int, ...]]] = {}  # name -> (mode, type, dims)
        for infos, mode in ((model.graph.input, TensorIOMode.INPUT), (model.graph.output, TensorIOMode.OUTPUT)):
            for info in infos:
                tensor = info.type.tensor_type
                if tensor.elem_type not in ONNX_TO_TRT:
                    raise ContractViolation(f"{info.name}: {_name(tensor.elem_type)} I/O is not one of the stand-in's")
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
                self.tensors[info.name] = (mode, ONNX_TO_TRT[tensor.elem_type], dims)

    def serialize(self) -> bytes:
        return PLAN_MAGIC + json.dumps({"tensorrt": VERSION, "onnx": self.onnx_path, "profile": self.profile,
                                        "modified": self.modified}).encode()


class ICudaEngine(_Strict):
    def __init__(self, standin: "StandIn", plan: _Plan) -> None:
        object.__setattr__(self, "_standin", standin)
        object.__setattr__(self, "_plan", plan)

    def _tensor(self, name: str) -> tuple[object, str, tuple[int, ...]]:
        if name not in self._plan.tensors:
            raise ContractViolation(f"the engine has no tensor {name!r} (it has {sorted(self._plan.tensors)}); "
                                    "TensorRT would log an error and return a meaningless value")
        return self._plan.tensors[name]

    def _run(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        return _semantics(self._plan.onnx_path, self._plan.modified)(frames)

    @property
    def num_io_tensors(self) -> int:
        return len(self._plan.tensors)

    def get_tensor_name(self, index: int) -> str:
        if not 0 <= index < len(self._plan.tensors):
            raise ContractViolation(f"get_tensor_name({index}): the engine has {len(self._plan.tensors)} tensors")
        return list(self._plan.tensors)[index]

    def get_tensor_mode(self, name: str):
        return self._tensor(name)[0]

    def get_tensor_dtype(self, name: str):
        return getattr(DataType, self._tensor(name)[1])

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._tensor(name)[2])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if self._tensor(name)[0] is not TensorIOMode.INPUT or self._plan.profile is None or profile_index != 0:
            raise ContractViolation(f"get_tensor_profile_shape({name!r}, {profile_index}): no such profile input")
        return [Dims(self._plan.profile[key]) for key in ("min", "opt", "max")]

    def create_execution_context(self) -> "IExecutionContext":
        return IExecutionContext(self)


def _as_int(value, what: str) -> int:
    """What the bindings' int parameters take (pybind11: an int, or anything with ``__index__``)."""
    try:
        return operator.index(value)
    except TypeError:
        raise ContractViolation(f"{what}: TensorRT takes an int (or an object with __index__)") from None


class IExecutionContext(_Strict):
    def __init__(self, engine: ICudaEngine) -> None:
        object.__setattr__(self, "_engine", engine)
        plan = engine._plan
        inputs = {n: dims for n, (mode, _, dims) in plan.tensors.items() if mode is TensorIOMode.INPUT}
        object.__setattr__(self, "_shapes", {n: dims for n, dims in inputs.items() if min(dims) >= 0})
        object.__setattr__(self, "_addresses", {})

    def _input(self, name: str) -> tuple[int, ...]:
        mode, _, dims = self._engine._tensor(name)
        if mode is not TensorIOMode.INPUT:
            raise ContractViolation(f"{name} is not an input of the engine")
        return dims

    def set_input_shape(self, name: str, shape) -> bool:
        dims, shape = self._input(name), tuple(int(d) for d in shape)
        profile = self._engine._plan.profile
        low, high = (profile["min"], profile["max"]) if profile else (dims, dims)
        fits = len(shape) == len(dims) and all(d in (-1, s) for d, s in zip(dims, shape)) and \
            all(lo <= s <= hi for lo, s, hi in zip(low, shape, high))
        if not fits:
            self._engine._standin.log.append(f"IExecutionContext::setInputShape: {name} {shape} is outside "
                                             f"{tuple(low)}..{tuple(high)}")
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        mode, _, dims = self._engine._tensor(name)
        if mode is TensorIOMode.INPUT:
            return Dims(self._shapes.get(name, dims))
        if set(self._shapes) != {n for n, t in self._engine._plan.tensors.items() if t[0] is TensorIOMode.INPUT}:
            return Dims(dims)  # unknown until every input shape is set
        batch = next(iter(self._shapes.values()))[0]
        return Dims(batch if d < 0 else d for d in dims)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._engine._tensor(name)
        self._addresses[name] = _as_int(memory, f"set_tensor_address({name!r}, {memory!r})")
        return True

    def _nbytes(self, name: str) -> int:
        _, dtype, _ = self._engine._tensor(name)
        return int(np.prod(tuple(self.get_tensor_shape(name)))) * np.dtype(NUMPY_OF[dtype]).itemsize

    def execute_async_v3(self, stream_handle: int) -> bool:
        standin, plan = self._engine._standin, self._engine._plan
        queue = standin.cuda.stream(_as_int(stream_handle, f"execute_async_v3({stream_handle!r})"))
        missing = [n for n, t in plan.tensors.items() if t[0] is TensorIOMode.INPUT and n not in self._shapes]
        missing_addresses = [n for n in plan.tensors if n not in self._addresses]
        if missing or missing_addresses:
            standin.log.append(f"IExecutionContext::enqueueV3: input shapes not set for {missing}, no address for "
                               f"{missing_addresses}")
            return False
        # what TensorRT will read and write: each tensor's bytes at the current shapes, from its address on
        access = {n: (self._addresses[n], self._nbytes(n), tuple(self.get_tensor_shape(n))) for n in plan.tensors}
        for name, (address, nbytes, shape) in access.items():
            standin.memory.bytes_at("device", address, nbytes, f"execute_async_v3: {name} {shape}")
        (frame_name,) = [n for n, t in plan.tensors.items() if t[0] is TensorIOMode.INPUT]
        output_names = [n for n, t in plan.tensors.items() if t[0] is TensorIOMode.OUTPUT]

        def run() -> None:
            address, nbytes, shape = access[frame_name]
            frames = standin.memory.bytes_at("device", address, nbytes, "engine reads frame").reshape(shape).copy()
            computed = self._engine._run(frames)
            if set(computed) != set(output_names):
                raise ContractViolation(f"the engine computed {sorted(computed)}, its outputs are {output_names}")
            for name in output_names:
                values, (address, nbytes, shape) = computed[name], access[name]
                dtype = NUMPY_OF[plan.tensors[name][1]]
                if values.shape != shape or values.dtype != dtype:
                    raise ContractViolation(f"the engine computed {name} {values.dtype} {values.shape}, expected "
                                            f"{shape}")
                written = standin.memory.bytes_at("device", address, nbytes, f"engine writes {name}")
                written[:] = np.ascontiguousarray(values).view(np.uint8).ravel()  # row-major, as TensorRT's
        queue.append(run)
        return True


class Logger(_Strict):
    WARNING = "WARNING"

    def __init__(self, min_severity: str = "WARNING") -> None:
        if min_severity != "WARNING":
            raise ContractViolation(f"Logger({min_severity!r}): use a trt.Logger severity")


class IPluginCreatorV3One(_Strict):
    """The ReweightArgmax creator, as a registry returns it."""


class IPluginRegistry(_Strict):
    def __init__(self, standin: "StandIn") -> None:
        object.__setattr__(self, "_standin", standin)
        object.__setattr__(self, "_creators", {})

    def load_library(self, plugin_path: str):
        """Like TensorRT's: registers the library's creators; a creator already registered makes it fail."""
        standin = self._standin
        if not isinstance(plugin_path, str):
            raise ContractViolation(f"load_library({plugin_path!r}): the path must be a str")
        standin.library_loads.append(plugin_path)
        if not Path(plugin_path).is_file():
            standin.log.append(f"IPluginRegistry::loadLibrary: cannot open {plugin_path}")
            return None
        if CREATOR in self._creators:
            standin.log.append(f"IPluginRegistry::registerCreator: {'/'.join(CREATOR)} is already registered")
            return None
        self._creators[CREATOR] = IPluginCreatorV3One()
        return object()  # the library handle

    def get_creator(self, name: str, version: str, plugin_namespace: str = ""):
        return self._creators.get((name, version, plugin_namespace))


class Runtime(_Strict):
    _standin: "StandIn"

    def __init__(self, logger: Logger) -> None:
        if not isinstance(logger, Logger):
            raise ContractViolation(f"Runtime({logger!r}): needs a trt.Logger")

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        standin = self._standin
        if not serialized_engine.startswith(PLAN_MAGIC):
            standin.log.append("Runtime::deserializeCudaEngine: not an engine (magic tag mismatch)")
            return None
        saved = json.loads(serialized_engine[len(PLAN_MAGIC):])
        if saved["tensorrt"] != VERSION:
            standin.log.append(f"Runtime::deserializeCudaEngine: built with TensorRT {saved['tensorrt']}, this is "
                               f"{VERSION}")
            return None
        plan = _Plan(saved["onnx"], saved["profile"], modified=saved["modified"])
        if plan.has_plugin and standin.registry.get_creator(*CREATOR) is None:
            standin.log.append(f"Runtime::deserializeCudaEngine: plugin creator {'/'.join(CREATOR)} not found")
            return None
        return ICudaEngine(standin, plan)


# --- building: Builder, network, ONNX parser, config ----------------------------------------------------------

class ITensor(_Strict):
    def __init__(self, name: str, dtype, dims: tuple[int, ...]) -> None:
        object.__setattr__(self, "_fields", (name, dtype, Dims(dims)))

    @property
    def name(self) -> str:
        return self._fields[0]

    @property
    def dtype(self):
        return self._fields[1]

    @property
    def shape(self) -> Dims:
        return self._fields[2]


class INetworkDefinition(_Strict):
    def __init__(self) -> None:
        object.__setattr__(self, "_plan", None)  # set by a successful parse

    def _tensors(self, mode) -> list[ITensor]:
        plan = self._plan
        tensors = plan.tensors.items() if plan else ()
        return [ITensor(name, getattr(DataType, dtype), dims) for name, (m, dtype, dims) in tensors if m is mode]

    @property
    def num_inputs(self) -> int:
        return len(self._tensors(TensorIOMode.INPUT))

    @property
    def num_outputs(self) -> int:
        return len(self._tensors(TensorIOMode.OUTPUT))

    def get_input(self, index: int) -> ITensor:
        return self._tensors(TensorIOMode.INPUT)[index]

    def get_output(self, index: int) -> ITensor:
        return self._tensors(TensorIOMode.OUTPUT)[index]


class ParserError(_Strict):
    def __init__(self, problem: Problem) -> None:
        object.__setattr__(self, "_problem", problem)

    def desc(self) -> str:
        return self._problem.reason

    def node_name(self) -> str:
        return self._problem.node

    def node_operator(self) -> str:
        return self._problem.op


class OnnxParser(_Strict):
    _standin: "StandIn"

    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
        if not isinstance(network, INetworkDefinition) or not isinstance(logger, Logger):
            raise ContractViolation("OnnxParser(network, logger)")
        object.__setattr__(self, "_network", network)
        object.__setattr__(self, "_errors", [])

    def parse_from_file(self, model: str) -> bool:
        """Parses what TensorRT 10.3 parses (``ONNX_OPS``); a plugin node needs its creator registered."""
        graph = onnx.load(model)
        problems = onnx_problems(graph)
        if self._standin.registry.get_creator(*CREATOR) is None:
            problems += [Problem(n.name, n.op_type, "plugin creator not found (load the plugin library first)")
                         for n in graph.graph.node if n.domain == CREATOR[2]]
        self._errors[:] = [ParserError(problem) for problem in problems]
        if not problems:
            object.__setattr__(self._network, "_plan", _Plan(str(Path(model).resolve()), None, graph))
        return not problems

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]


def timing_cache_header(gpu_name: str = GPU_NAME) -> bytes:
    """How a serialised timing cache begins: with the GPU it was made on (TensorRT's header records the device's
    properties). An empty cache is this header alone; each build with the cache attached adds its timings."""
    return f"stand-in timing cache made on {gpu_name}\n".encode()


class ITimingCache(_Strict):
    def __init__(self, serialized: bytes) -> None:
        object.__setattr__(self, "_serialized", bytes(serialized) or timing_cache_header())

    def serialize(self) -> bytes:
        return self._serialized


class IOptimizationProfile(_Strict):
    def __init__(self) -> None:
        object.__setattr__(self, "_shapes", {})

    def set_shape(self, input: str, min, opt, max) -> None:
        shapes = [tuple(int(d) for d in s) for s in (min, opt, max)]
        if not all(a <= b <= c for a, b, c in zip(*shapes)) or len({len(s) for s in shapes}) != 1:
            raise ContractViolation(f"set_shape({input!r}, {shapes}): needs min <= opt <= max, one rank")
        self._shapes[input] = dict(zip(("min", "opt", "max"), shapes))


class IBuilderConfig(_Strict):
    def __init__(self) -> None:
        object.__setattr__(self, "_profiles", [])
        object.__setattr__(self, "_flags", {BuilderFlag.TF32})  # TensorRT's default (NvInfer.h: "Enabled by default")
        object.__setattr__(self, "default_device_type", None)  # the GPU (a member the manifest does not list)
        object.__setattr__(self, "DLA_core", -1)  # TensorRT's default: none
        object.__setattr__(self, "_timing_cache", None)

    def set_flag(self, flag) -> None:
        if not isinstance(flag, BuilderFlag):
            raise ContractViolation(f"set_flag({flag!r}): needs a trt.BuilderFlag")
        self._flags.add(flag)

    def clear_flag(self, flag) -> None:
        if not isinstance(flag, BuilderFlag):
            raise ContractViolation(f"clear_flag({flag!r}): needs a trt.BuilderFlag")
        self._flags.discard(flag)

    def get_flag(self, flag) -> bool:
        return flag in self._flags

    def set_memory_pool_limit(self, pool_type, pool_size: int) -> None:
        if pool_type is not MemoryPoolType.WORKSPACE or pool_size <= 0:
            raise ContractViolation(f"set_memory_pool_limit({pool_type!r}, {pool_size})")

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        """False, and not attached, for a cache made on another GPU unless ``ignore_mismatch`` (NvInfer.h)."""
        if not isinstance(cache, ITimingCache) or not (ignore_mismatch or
                                                       cache._serialized.startswith(timing_cache_header())):
            return False
        object.__setattr__(self, "_timing_cache", cache)
        return True

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1


def _profile_fits(dims: tuple[int, ...], shapes: dict[str, tuple[int, ...]] | None) -> bool:
    """A profile for an input: same rank, and min = max = the dimension wherever it is static."""
    return shapes is not None and len(shapes["min"]) == len(dims) and all(
        d < 0 or lo == hi == d for d, lo, hi in zip(dims, shapes["min"], shapes["max"]))


class Builder(_Strict):
    _standin: "StandIn"

    def __init__(self, logger: Logger) -> None:
        if not isinstance(logger, Logger):
            raise ContractViolation(f"Builder({logger!r}): needs a trt.Logger")

    @property
    def num_DLA_cores(self) -> int:
        return self._standin.dla_cores

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition()

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
        """The plan; None (and a logged error) where a dynamic input has no profile that fits it."""
        plan = network._plan
        if plan is None:
            raise ContractViolation("build_serialized_network: the network is empty (parse it first)")
        if config.default_device_type is DeviceType.DLA and not 0 <= config.DLA_core < self.num_DLA_cores:
            self._standin.log.append(f"Builder::buildSerializedNetwork: DLA core {config.DLA_core} of "
                                     f"{self.num_DLA_cores}")
            return None
        self._standin.built_with.append(config)
        if config._timing_cache is not None:  # the tactics it timed, kept for the next build
            object.__setattr__(config._timing_cache, "_serialized",
                               config._timing_cache._serialized + f"timings for {plan.onnx_path}\n".encode())
        dynamic = {n: dims for n, (mode, _, dims) in plan.tensors.items()
                   if mode is TensorIOMode.INPUT and min(dims) < 0}
        if not dynamic:
            return plan.serialize()
        profiles = [p._shapes for p in config._profiles]
        if len(profiles) != 1 or not all(_profile_fits(dims, profiles[0].get(n)) for n, dims in dynamic.items()):
            self._standin.log.append(f"Builder::buildSerializedNetwork: dynamic inputs {sorted(dynamic)} need one "
                                     "optimisation profile that fits their static dimensions")
            return None
        profile = {key: list(shape) for key, shape in profiles[0][next(iter(dynamic))].items()}
        return _Plan(plan.onnx_path, profile, modified=plan.modified).serialize()


# --- one process's TensorRT and CUDA ---------------------------------------------------------------------------

def _module(name: str, kind: type = ModuleType) -> ModuleType:
    """A module as the import system makes them (``importlib.util.find_spec`` finds it, torch asks)."""
    module = kind(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, origin="tests/tensorrt_standin.py")
    return module


class _StrictModule(ModuleType):
    def __getattr__(self, name: str):
        _refuse("tensorrt", name)
        raise AttributeError(f"stand-in TensorRT: tensorrt.{name} is in the manifest but the stand-in does not "
                             "implement it yet")


class StandIn:
    """A fresh "process": TensorRT with an empty plugin registry, CUDA with no allocations or streams."""

    def __init__(self, driver: str = "present", dla_cores: int = 0) -> None:
        self.dla_cores = dla_cores  # Jetson AGX/NX Orin have two; desktop GPUs none
        self.log: list[str] = []  # the errors TensorRT would have printed
        self.library_loads: list[str] = []  # every IPluginRegistry.load_library call
        self.built_with: list["IBuilderConfig"] = []  # the config of every build_serialized_network call
        self.memory = Memory()
        self.cuda = CudaRuntime(self.memory, driver)
        self.registry = IPluginRegistry(self)
        self.tensorrt = _module("tensorrt", _StrictModule)
        namespace = {"__version__": VERSION, "Logger": Logger, "DataType": DataType, "TensorIOMode": TensorIOMode,
                     "NetworkDefinitionCreationFlag": NetworkDefinitionCreationFlag, "MemoryPoolType": MemoryPoolType,
                     "DeviceType": DeviceType, "BuilderFlag": BuilderFlag,
                     "get_plugin_registry": lambda: self.registry}
        for cls in (Runtime, Builder, OnnxParser):  # the classes that need this "process"
            namespace[cls.__name__] = _StrictType(cls.__name__, (cls,), {"_standin": self})
        for name, value in namespace.items():
            _refuse("tensorrt", name)
            setattr(self.tensorrt, name, value)

    def install(self, monkeypatch: pytest.MonkeyPatch, cuda: bool = True) -> "StandIn":
        """Make ``import tensorrt`` (and, with ``cuda``, ``from cuda.bindings import runtime``) find the stand-in
        for the rest of the test; ``cuda.bindings.driver`` and the rest of cuda-python are then absent."""
        monkeypatch.setitem(sys.modules, "tensorrt", self.tensorrt)
        if cuda:
            for name in [n for n in sys.modules if n == "cuda" or n.startswith("cuda.")]:  # the real cuda-python
                monkeypatch.delitem(sys.modules, name)
            package, bindings, runtime = _module("cuda"), _module("cuda.bindings"), self.cuda.module()
            package.__path__, bindings.__path__ = [], []
            package.bindings, bindings.runtime = bindings, runtime
            for name, module in (("cuda", package), ("cuda.bindings", bindings), ("cuda.bindings.runtime", runtime)):
                monkeypatch.setitem(sys.modules, name, module)
        return self

"""``export.build_engine``: a TensorRT engine from the exported ONNX graph, with a JSON sidecar.

One code path for TensorRT 10.x (JetPack 6) and 11.x: a strongly typed network, so precision comes
from the ONNX graph's types (an fp16 export gives an fp16 engine; TensorRT 11 has no precision
flags), the plugin library loaded before parsing when the graph has the ReweightArgmax node, an
optimisation profile for dynamic shapes, timing-cache reuse, DLA with GPU fallback.

Engines only run where they were built (same TensorRT, same GPU). The sidecar records what an
engine was built from and for; ``engine_problems`` compares it with the ONNX file and the machine,
and ``build_engine`` reuses a matching engine, rebuilds a stale one, or refuses.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .onnx_export import read_metadata, sha256_of
from .tails import PLUGIN_OP, PLUGIN_VERSION


class EngineError(RuntimeError):
    """An engine that cannot be built or used; one line saying why and what to do."""


@dataclass
class Machine:
    """What an engine is bound to."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


@dataclass
class Sidecar:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    plugin_version: str | None = None
    class_names: list[str] = field(default_factory=list)
    weights_std: float | None = None
    dla_core: int | None = None
    created: str = ""

    def write(self, path: Path) -> None:
        _atomic_write(path, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def read(cls, path: Path) -> "Sidecar":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise EngineError(f"{path}: unreadable engine sidecar ({e}); rebuild the engine") from None


def sidecar_path(engine: str | Path) -> Path:
    return Path(f"{engine}.json")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def engine_problems(engine: str | Path, onnx_path: str | Path, machine: Machine) -> list[str]:
    """Why ``engine`` may not be used for ``onnx_path`` on ``machine`` (empty: it may)."""
    engine = Path(engine)
    if not engine.is_file():
        return ["no engine file"]
    sidecar_file = sidecar_path(engine)
    if not sidecar_file.is_file():
        return [f"no sidecar {sidecar_file.name}: its origin is unknown"]
    sidecar = Sidecar.read(sidecar_file)
    problems = []
    if sidecar.onnx_sha256 != sha256_of(onnx_path):
        problems.append(f"built from another ONNX file ({sidecar.onnx_sha256[:12]}...)")
    if sidecar.tensorrt_version != machine.tensorrt_version:
        problems.append(f"built with TensorRT {sidecar.tensorrt_version}, this is {machine.tensorrt_version}")
    if (sidecar.gpu_name, sidecar.compute_capability) != (machine.gpu_name, machine.compute_capability):
        problems.append(f"built for {sidecar.gpu_name} (sm_{sidecar.compute_capability}), this is "
                        f"{machine.gpu_name} (sm_{machine.compute_capability})")
    return problems


def decide(engine: str | Path, onnx_path: str | Path, machine: Machine, rebuild: str = "auto") -> str:
    """``"reuse"`` or ``"build"``; with ``rebuild="never"`` a stale engine is an error, never run."""
    if rebuild not in ("auto", "always", "never"):
        raise EngineError(f"--rebuild must be auto, always or never, got {rebuild!r}")
    if rebuild == "always":
        return "build"
    problems = engine_problems(engine, onnx_path, machine)
    if not problems:
        return "reuse"
    if rebuild == "never" and Path(engine).is_file():
        raise EngineError(f"{engine}: refusing a foreign engine: {'; '.join(problems)} (rebuild it, or --rebuild auto)")
    return "build"


def parse_shape(text: str) -> tuple[int, ...]:
    """``1x540x960x3`` -> (1, 540, 960, 3)."""
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EngineError(f"shape {text!r}: expected NxHxWx3, e.g. 1x540x960x3") from None
    if len(shape) != 4 or shape[3] != 3 or min(shape) <= 0:
        raise EngineError(f"shape {text!r}: expected NxHxWx3 with positive sizes")
    return shape


def _tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError("TensorRT is not installed: pip install tensorrt (desktop GPUs; JetPack ships it), "
                          "or run the ONNX graph with ONNX Runtime") from None
    return trt


def current_machine() -> Machine:
    """TensorRT version and the GPU of this machine (needs TensorRT and a CUDA device)."""
    trt = _tensorrt()
    try:
        from cuda.bindings import driver
    except ImportError:
        raise EngineError("building engines needs cuda-python: pip install cuda-python") from None
    err, = driver.cuInit(0)
    err2, count = driver.cuDeviceGetCount()
    if int(err) or int(err2) or count == 0:
        raise EngineError("no CUDA GPU found: TensorRT engines are built on the GPU that will run them")
    _, dev = driver.cuDeviceGet(0)
    _, name = driver.cuDeviceGetName(64, dev)
    attr = driver.CUdevice_attribute
    _, major = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
    _, minor = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
    return Machine(trt.__version__, name.split(b"\0")[0].decode(), f"{major}{minor}")


def _has_plugin_node(onnx_path: Path) -> bool:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(node.op_type == PLUGIN_OP for node in model.graph.node)


def build_engine(onnx_path: str | Path, out: str | Path, *, plugin_lib: str | None = None,
                 workspace_gb: float | None = None, timing_cache: str | None = None, dla_core: int | None = None,
                 shapes: dict[str, tuple[int, ...]] | None = None, rebuild: str = "auto",
                 say: Callable[[str], None] = print) -> Path:
    """Build (or reuse) a TensorRT engine for ``onnx_path``; ``shapes`` = {"min"/"opt"/"max": NxHxWx3}
    for graphs exported with dynamic shapes."""
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.is_file():
        raise EngineError(f"--onnx {onnx_path}: no such file")
    if workspace_gb is not None and workspace_gb <= 0:
        raise EngineError(f"--workspace-gb must be positive, got {workspace_gb}")
    metadata = read_metadata(onnx_path)
    dynamic = json.loads(metadata.get("dannet.input", "{}")).get("size") is None
    if dynamic and not shapes:
        raise EngineError(f"{onnx_path} has dynamic shapes: give --min-shape, --opt-shape and --max-shape")
    trt = _tensorrt()
    machine = current_machine()
    if decide(out, onnx_path, machine, rebuild) == "reuse":
        say(f"{out}: up to date for {machine.gpu_name} / TensorRT {machine.tensorrt_version}; reusing it")
        return out
    logger = trt.Logger(trt.Logger.WARNING)
    plugin_version = None
    if _has_plugin_node(onnx_path):
        from runtime.plugin_library import PluginLibraryError, load_plugin_library

        try:
            load_plugin_library(plugin_lib)
        except PluginLibraryError as e:
            raise EngineError(str(e)) from None
        plugin_version = PLUGIN_VERSION
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        first = errors[0] if errors else None
        where = f" at node {first.node_name()!r} ({first.node_operator()})" if first is not None else ""
        raise EngineError(f"{onnx_path}: TensorRT's ONNX parser failed{where}: "
                          f"{first.desc() if first is not None else 'unknown error'}")
    config = builder.create_builder_config()
    if workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    cache = None
    if timing_cache:
        blob = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    if dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise EngineError(f"--dla-core {dla_core}: this GPU has no DLA (Jetson AGX/NX Orin have two)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape("frame", shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(profile)
    say(f"building a TensorRT {machine.tensorrt_version} engine for {machine.gpu_name} from {onnx_path} "
        f"(this takes minutes)")
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    _atomic_write(out, bytes(serialized))
    if cache is not None:
        _atomic_write(Path(timing_cache), bytes(cache.serialize()))
    io = [{"name": network.get_input(i).name, "shape": list(network.get_input(i).shape),
           "dtype": str(network.get_input(i).dtype)} for i in range(network.num_inputs)]
    outputs = [{"name": network.get_output(i).name, "shape": list(network.get_output(i).shape),
                "dtype": str(network.get_output(i).dtype)} for i in range(network.num_outputs)]
    Sidecar(onnx_sha256=sha256_of(onnx_path), tensorrt_version=machine.tensorrt_version, gpu_name=machine.gpu_name,
            compute_capability=machine.compute_capability, precision=metadata.get("dannet.precision", "fp32"),
            inputs=io, outputs=outputs, plugin_version=plugin_version,
            class_names=json.loads(metadata.get("dannet.class_names", "[]")),
            weights_std=float(metadata["dannet.weights_std"]) if "dannet.weights_std" in metadata else None,
            dla_core=dla_core, created=time.strftime("%Y-%m-%dT%H:%M:%S")).write(sidecar_path(out))
    say(f"wrote {out} and {sidecar_path(out).name} in {time.perf_counter() - started:.0f} s")
    return out

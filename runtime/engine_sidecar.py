"""TensorRT engine sidecars: what an engine was built from and for, and whether it may run here.

Engines only run where they were built (same TensorRT, same GPU). ``dannet-export engine`` writes
``ENGINE.json`` beside each engine; the runtime checks it before loading, so a stale or foreign
engine is rebuilt or refused with a clear message, never run. Pure Python (no TensorRT needed).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        atomic_write(path, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def read(cls, path: Path) -> "Sidecar":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise EngineError(f"{path}: unreadable engine sidecar ({e}); rebuild the engine") from None


def sidecar_path(engine: str | Path) -> Path:
    return Path(f"{engine}.json")


def atomic_write(path: Path, data: bytes) -> None:
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


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError("TensorRT is not installed: pip install tensorrt (desktop GPUs; JetPack ships it), "
                          "or run the ONNX graph with ONNX Runtime") from None
    return trt


def current_machine() -> Machine:
    """TensorRT version and the GPU of this machine (needs TensorRT and a CUDA device)."""
    trt = import_tensorrt()
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

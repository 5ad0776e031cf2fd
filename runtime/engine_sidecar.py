"""TensorRT engine sidecars: what an engine was built from and for, and whether it may run here.

Engines only run where they were built (same TensorRT, same GPU). ``dannet-export engine`` writes
``ENGINE.json`` beside each engine; the runtime checks it before loading, so a stale or foreign
engine is rebuilt or refused with a clear message, never run. Pure Python (no TensorRT needed).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .atomic import atomic_write
from .backends import size_text
from .errors import DannetError


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class EngineError(DannetError, RuntimeError):
    """An engine that cannot be built or used; one line saying why and what to do."""


class UnreadableSidecar(EngineError):
    """A sidecar that is not one (cut short, edited by hand, another file): its engine's origin is unknown, so the
    runtime refuses the engine, and ``dannet-export engine --rebuild auto`` rebuilds it as if it had no sidecar."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: unreadable engine sidecar ({why}); rebuild the engine")
        self.path, self.why = path, why


@dataclass
class Machine:
    """What an engine is bound to."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


#: the optimisation profile's shapes, as ``--min-shape``, ``--opt-shape`` and ``--max-shape`` give them
PROFILE_KEYS = ("min", "opt", "max")


@dataclass(frozen=True)
class BuildOptions:
    """What ``dannet-export engine`` is asked for, beyond the graph and the machine, that changes the engine it
    builds; a cached engine is reused only if it was built with the same. The timing cache is not one of them: it
    makes building faster (TensorRT keeps its tactics' timings there), not a different engine for the asking."""

    shapes: dict[str, tuple[int, ...]] | None = None  # the profile of a dynamic graph: PROFILE_KEYS -> NxHxWx3
    dla_core: int | None = None
    workspace_gb: float | None = None

    def flags(self) -> dict[str, str | None]:
        """Each option as its flag's value is written (None: not given); equal text means an equal option."""
        shapes = self.shapes or {}
        profile = {f"--{key}-shape": size_text(shapes[key]) if key in shapes else None
                   for key in PROFILE_KEYS}
        return {**profile, "--dla-core": None if self.dla_core is None else str(self.dla_core),
                "--workspace-gb": None if self.workspace_gb is None else f"{self.workspace_gb:g}"}

    def differences(self, asked: "BuildOptions") -> list[str]:
        """How an engine built with these options differs from what ``asked`` wants, one phrase per flag."""
        built, wanted = self.flags(), asked.flags()
        return [f"built with {_given(flag, built[flag])}, asked for {_given(flag, wanted[flag])}"
                for flag in built if built[flag] != wanted[flag]]


def _given(flag: str, value: str | None) -> str:
    return f"no {flag}" if value is None else f"{flag} {value}"


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
    #: H, W of the label map (the graph's ``dannet.output`` size): pack4 engines output ceil(W/4) int32 columns,
    #: so the runtime cannot read W from the engine
    output_size: list[int] | None = None
    class_names: list[str] = field(default_factory=list)
    weights_std: float | None = None
    #: the graph's ``dannet.weights``: the class weights its tail applies ([] where the graph records none; None in a
    #: sidecar from before this field, whose engine is rebuilt so that the runtime learns them)
    weights: list[float] | None = None
    #: the graph's ``dannet.reweight``: logits or probs (None: not recorded, a sidecar from before this field)
    reweight: str | None = None
    #: the graph's ``dannet.align_corners``: how its tail upsamples (None: not recorded, an older sidecar)
    align_corners: bool | None = None
    #: the graph's ``dannet.checkpoint_sha256``: which checkpoint the engine computes (dannet-bench compare)
    checkpoint_sha256: str | None = None
    #: the graph's ``dannet.light_sha256``: the relighting file exported with it ("" for none; None: not recorded)
    light_sha256: str | None = None
    dla_core: int | None = None
    #: the optimisation profile it was built with (dynamic graphs): PROFILE_KEYS -> NxHxWx3
    profile: dict[str, list[int]] | None = None
    workspace_gb: float | None = None
    created: str = ""

    def build_options(self) -> BuildOptions:
        """The options the engine was built with (a sidecar from before they were all recorded gives None for
        those it lacks, so its engine is rebuilt where they are asked for)."""
        shapes = {key: tuple(shape) for key, shape in self.profile.items()} if self.profile else None
        return BuildOptions(shapes, self.dla_core, self.workspace_gb)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    def write(self, path: Path) -> None:
        atomic_write(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> "Sidecar":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise UnreadableSidecar(path, str(e)) from None


def sidecar_path(engine: str | Path) -> Path:
    return Path(f"{engine}.json")


def engine_problems(engine: str | Path, onnx_path: str | Path, machine: Machine,
                    options: BuildOptions = BuildOptions()) -> list[str]:
    """Why ``engine`` may not be used for ``onnx_path`` on ``machine`` as built with ``options`` (empty: it may);
    ``UnreadableSidecar`` where its sidecar cannot be read."""
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
    if sidecar.output_size is None:
        problems.append("its sidecar does not record the label map size (made by an older dannet-export)")
    if sidecar.weights is None:
        problems.append("its sidecar does not record the class weights (made by an older dannet-export)")
    if sidecar.tensorrt_version != machine.tensorrt_version:
        problems.append(f"built with TensorRT {sidecar.tensorrt_version}, this is {machine.tensorrt_version}")
    if (sidecar.gpu_name, sidecar.compute_capability) != (machine.gpu_name, machine.compute_capability):
        problems.append(f"built for {sidecar.gpu_name} (sm_{sidecar.compute_capability}), this is "
                        f"{machine.gpu_name} (sm_{machine.compute_capability})")
    built = sidecar.build_options()
    if sidecar.profile is None and options.shapes is not None:  # a dynamic engine from before profiles were recorded
        problems.append("its sidecar does not record the optimisation profile (made by an older dannet-export)")
        built = replace(built, shapes=options.shapes)
    return problems + built.differences(options)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError("TensorRT is not installed: pip install tensorrt (desktop GPUs; JetPack ships it), "
                          "or run the ONNX graph with ONNX Runtime") from None
    return trt


def import_cuda_runtime():
    """cuda-python's runtime API (``cuda.bindings.runtime``: cuda-python 12.6.1 and later, 13.x)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        raise EngineError("TensorRT engines need cuda-python: pip install 'dannet-edge[trt]' (cuda-python 12: "
                          "JetPack 6 and every CUDA 12/13 driver), or [trt-cu13] on CUDA 13 drivers") from None
    return runtime


def cuda_error_name(err) -> str:
    """``cudaErrorInsufficientDriver`` rather than ``35``."""
    return getattr(err, "name", str(err))


def no_gpu(why: str) -> EngineError:
    return EngineError(f"no usable CUDA driver/GPU: {why}, use --backend onnxruntime")


def _query(call, *args):
    """One CUDA runtime query's value; a missing driver or GPU becomes an EngineError.

    The runtime API reports a missing driver as an error code (``cudaErrorInsufficientDriver``); cuda-python's
    loader raises a RuntimeError instead where it looks for libcuda and finds none (its driver API does, 13.x).
    """
    try:
        err, value = call(*args)
    except RuntimeError as e:
        raise no_gpu(str(e).splitlines()[0][:200]) from None
    if int(err) != 0:
        raise no_gpu(cuda_error_name(err))
    return value


def current_machine() -> Machine:
    """TensorRT version and the GPU of this machine (needs TensorRT, a CUDA driver and a GPU)."""
    trt = import_tensorrt()
    cudart = import_cuda_runtime()
    if _query(cudart.cudaGetDeviceCount) == 0:
        raise no_gpu("no CUDA device")
    properties = _query(cudart.cudaGetDeviceProperties, 0)
    name = properties.name
    name = name.split(b"\0")[0].decode() if isinstance(name, bytes) else name
    return Machine(trt.__version__, name.strip(), f"{properties.major}{properties.minor}")

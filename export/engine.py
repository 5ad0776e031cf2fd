"""``export.build_engine``: a TensorRT engine from the exported ONNX graph, with a JSON sidecar.

One code path for TensorRT 10.x (JetPack 6) and 11.x: a strongly typed network, so precision comes
from the ONNX graph's types (an fp16 export gives an fp16 engine; TensorRT 11 has no precision
flags), the plugin library loaded before parsing when the graph has the ReweightArgmax node, an
optimisation profile for dynamic shapes, timing-cache reuse, DLA with GPU fallback. An INT8 graph from
``dannet-export int8`` is a Q/DQ graph: strongly typed, TensorRT builds it by explicit quantisation (its
docs: no precision flags with strong typing), so it takes the same path; its Q/DQ are checked first.

Engines only run where they were built (same TensorRT, same GPU). The sidecar records what an
engine was built from and for, and with which options (profile, DLA core, workspace); ``engine_problems``
compares it with the ONNX file, the machine and the options asked for, and ``build_engine`` reuses a
matching engine, rebuilds a stale one (saying why), or refuses.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx
from onnx import TensorProto, numpy_helper

from runtime.atomic import atomic_write, atomic_write_all, check_writable
from runtime.backends import DYNAMIC_EXPORT_SIZES, recorded_flag, size_text
from runtime.engine_sidecar import (PROFILE_KEYS, BuildOptions, EngineError, Machine, Sidecar, UnreadableSidecar,
                                    current_machine, engine_problems, import_tensorrt, sha256_of, sidecar_path)

from .onnx_export import read_metadata
from .tails import PLUGIN_OP, PLUGIN_VERSION


@dataclass(frozen=True)
class Decision:
    """What ``build_engine`` does about the engine at ``--out``: ``"reuse"`` it or ``"build"`` one, and why it
    builds (what makes the engine there unfit, so that a rebuild of minutes is never a surprise)."""

    action: str
    reasons: tuple[str, ...] = ()


def decide(engine: str | Path, onnx_path: str | Path, machine: Machine, rebuild: str = "auto",
           options: BuildOptions = BuildOptions()) -> Decision:
    """Reuse ``engine`` only if it was built from ``onnx_path`` on ``machine`` with ``options``; with
    ``rebuild="never"`` an engine that was not is an error, never run. An unreadable sidecar tells as little as a
    missing one: the engine's origin is unknown."""
    if rebuild not in ("auto", "always", "never"):
        raise EngineError(f"--rebuild must be auto, always or never, got {rebuild!r}")
    if rebuild == "always":
        return Decision("build", ("--rebuild always",))
    try:
        problems = engine_problems(engine, onnx_path, machine, options)
    except UnreadableSidecar as e:
        problems = [f"unreadable sidecar {e.path.name} ({e.why}): its origin is unknown"]
    if not problems:
        return Decision("reuse")
    if rebuild == "never" and Path(engine).is_file():
        raise EngineError(f"{engine}: refusing a foreign engine: {'; '.join(problems)} (rebuild it, or --rebuild auto)")
    return Decision("build", tuple(problems))


def parse_shape(text: str) -> tuple[int, ...]:
    """``1x540x960x3`` -> (1, 540, 960, 3)."""
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EngineError(f"expected NxHxWx3 (e.g. 1x540x960x3), got {text!r}") from None
    if len(shape) != 4 or shape[3] != 3 or min(shape) <= 0:
        raise EngineError(f"expected NxHxWx3 with positive sizes (e.g. 1x540x960x3), got {text!r}")
    return shape


def check_profile(onnx_path: Path, input_size: list[int] | None, shapes: dict[str, tuple[int, ...]] | None) -> None:
    """The optimisation profile fits the graph: none for a static graph (``input_size``, whose frames are fixed),
    and for a dynamic one all three shapes, min <= opt <= max, and frame sizes the graph takes."""
    flags = "--min-shape, --opt-shape and --max-shape"
    if input_size is not None:
        if shapes:
            raise EngineError(f"{flags}: {onnx_path} is a static graph (its frames are {size_text(input_size)}); "
                              "they are for graphs exported with --dynamic")
        return
    if not shapes:
        raise EngineError(f"{onnx_path} has dynamic shapes: give {flags}")
    low, opt, high = (shapes[key] for key in PROFILE_KEYS)
    if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
        raise EngineError(f"{flags} {size_text(low)}, {size_text(opt)}, {size_text(high)}: each dimension needs "
                          "min <= opt <= max")
    for key, shape in zip(PROFILE_KEYS, (low, opt, high)):
        if not DYNAMIC_EXPORT_SIZES.takes(shape[1:3]):
            nearest = DYNAMIC_EXPORT_SIZES.nearest(shape[1:3])
            raise EngineError(f"--{key}-shape {size_text(shape)}: {onnx_path} takes frames with "
                              f"{DYNAMIC_EXPORT_SIZES} (e.g. {shape[0]}x{size_text(nearest)}x3)")


def _has_plugin_node(onnx_path: Path) -> bool:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(node.op_type == PLUGIN_OP for node in model.graph.node)


def quantization_problems(model: onnx.ModelProto) -> list[str]:
    """Why TensorRT would refuse the graph's Q/DQ nodes (empty: none, or none there). Its explicit quantisation is
    symmetric signed int8: a QuantizeLinear/DequantizeLinear needs an int8 zero point that is 0 and a constant
    scale (onnx-tensorrt docs/operators.md; dannet-export int8 --target tensorrt, its default, writes exactly that)."""
    constants = {init.name: init for init in model.graph.initializer}
    problems = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if node.input[1] not in constants:
            problems.append(f"{node.name} ({node.op_type}): its scale is not a constant")
        elif zero is None or zero.data_type != TensorProto.INT8 or numpy_helper.to_array(zero).any():
            problems.append(f"{node.name} ({node.op_type}): not symmetric int8 (zero point "
                            f"{'missing' if zero is None else TensorProto.DataType.Name(zero.data_type)}, expected "
                            "INT8 zeros)")
    return problems


def _attach_timing_cache(config, path: Path):
    """The timing cache in ``path`` (a fresh one if there is none), attached to ``config``. TensorRT refuses a cache
    whose header records another GPU; building without it would write that cache back unchanged, so it would never
    learn this GPU: a fresh cache takes its place, which the build fills and which then replaces the file."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        print(f"warning: --timing-cache {path}: TensorRT refuses it here (made on another GPU?); building with a "
              "fresh cache, which replaces it", file=sys.stderr, flush=True)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)  # an empty cache records no other GPU
    return cache


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
    check_writable(out, "--out")  # before minutes of building, not after them
    check_writable(sidecar_path(out), "--out (its sidecar)")
    if timing_cache:
        check_writable(timing_cache, "--timing-cache")
    metadata = read_metadata(onnx_path)
    if "dannet.output" not in metadata:
        raise EngineError(f"--onnx {onnx_path}: not a dannet-export graph (no dannet.* metadata)")
    output_size = json.loads(metadata["dannet.output"])["size"]  # the runtime needs it to read pack4 labels
    precision = metadata.get("dannet.precision", "fp32")
    # a Q/DQ graph (dannet-export int8) builds as it is: strongly typed, explicit quantisation, no INT8 flag
    if problems := quantization_problems(onnx.load(str(onnx_path), load_external_data=False)):
        raise EngineError(f"--onnx {onnx_path}: TensorRT takes symmetric int8 Q/DQ only: {problems[0]}"
                          f"{f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''}; re-quantise "
                          "with dannet-export int8 --target tensorrt")
    input_size = json.loads(metadata.get("dannet.input", "{}")).get("size")
    check_profile(onnx_path, input_size, shapes)
    trt = import_tensorrt()
    machine = current_machine()
    options = BuildOptions(shapes, dla_core, workspace_gb)
    decision = decide(out, onnx_path, machine, rebuild, options)
    if decision.action == "reuse":
        say(f"{out}: up to date for {machine.gpu_name} / TensorRT {machine.tensorrt_version}; reusing it")
        return out
    if out.is_file():
        say(f"{out}: rebuilding it: {'; '.join(decision.reasons)}")
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
    if precision == "fp32":
        # fp32 means fp32: TF32, on by default, would round an fp32 graph's conv and matmul inputs to 10-bit
        # mantissas on Ampere and newer GPUs (Orin included), and the fp32 engine is the reference FP16 and INT8
        # are measured against (dannet-bench miou). INT8 engines keep TensorRT's default: the convs they leave
        # in fp32 (the relighting output at full resolution, the classifier) may use TF32 for speed.
        config.clear_flag(trt.BuilderFlag.TF32)
    if workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    cache = _attach_timing_cache(config, Path(timing_cache)) if timing_cache else None  # kept until built
    if dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise EngineError(f"--dla-core {dla_core}: this GPU has no DLA (Jetson AGX/NX Orin have two)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if shapes:
        profile = builder.create_optimization_profile()
        profile.set_shape("frame", shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(profile)
    say(f"building a TensorRT {machine.tensorrt_version} engine for {machine.gpu_name} from {onnx_path} "
        f"(this takes minutes)")
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    if cache is not None:
        atomic_write(timing_cache, bytes(cache.serialize()))
    io = [{"name": network.get_input(i).name, "shape": list(network.get_input(i).shape),
           "dtype": str(network.get_input(i).dtype)} for i in range(network.num_inputs)]
    outputs = [{"name": network.get_output(i).name, "shape": list(network.get_output(i).shape),
                "dtype": str(network.get_output(i).dtype)} for i in range(network.num_outputs)]
    sidecar = Sidecar(
        onnx_sha256=sha256_of(onnx_path), tensorrt_version=machine.tensorrt_version, gpu_name=machine.gpu_name,
        compute_capability=machine.compute_capability, precision=precision,
        inputs=io, outputs=outputs, plugin_version=plugin_version,
        output_size=output_size, class_names=json.loads(metadata.get("dannet.class_names", "[]")),
        weights_std=float(metadata["dannet.weights_std"]) if "dannet.weights_std" in metadata else None,
        weights=json.loads(metadata["dannet.weights"]) if "dannet.weights" in metadata else [],
        reweight=metadata.get("dannet.reweight") or None,
        align_corners=recorded_flag(metadata.get("dannet.align_corners")),
        checkpoint_sha256=metadata.get("dannet.checkpoint_sha256") or None,
        light_sha256=metadata.get("dannet.light_sha256"),
        dla_core=dla_core, profile={key: list(shape) for key, shape in shapes.items()} if shapes else None,
        workspace_gb=workspace_gb, created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    # the sidecar last, the old one removed first: an engine is never left beside the sidecar of another one (one
    # without a sidecar is rebuilt by --rebuild auto, refused by the runtime)
    atomic_write_all({out: bytes(serialized), sidecar_path(out): sidecar.to_json()})
    say(f"wrote {out} and {sidecar_path(out).name} in {time.perf_counter() - started:.0f} s")
    return out

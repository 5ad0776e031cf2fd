"""Every part of TensorRT's Python API that this project uses: the single list that is checked against the
real ``tensorrt`` bindings of each supported version (tests/test_tensorrt_api.py) and that the strict stand-in
module (tests/tensorrt_standin.py) exposes, and nothing else, to CPU tests.

``API`` maps a binding class, by the name the real bindings give it (``type(obj).__name__``), to the members
the project reads, calls or assigns on it; the key ``"tensorrt"`` is the module itself. Enum members count as
members of their enum class. ``KEYWORDS`` maps ``"Class.method"`` to the keyword arguments the project passes
to it (positional arguments are not listed: the bindings' signatures only check their count).

How to keep it complete: whenever code in runtime/, export/, benchmarks/ or tests/ starts using a new
TensorRT name, add it here in the same change. Module-level names (``trt.X``, ``trt.X.Y``) are found by an
AST scan in tests/test_tensorrt_api.py, which fails on any that are missing; members of objects TensorRT
returns (``engine.create_execution_context``) cannot be found by a scan, so the stand-in refuses every member
not listed here, and a CPU test that uses an unlisted one fails until it is added.
"""
from __future__ import annotations

API: dict[str, frozenset[str]] = {
    "tensorrt": frozenset({
        "__version__", "Logger", "Runtime", "Builder", "OnnxParser", "get_plugin_registry",
        "NetworkDefinitionCreationFlag", "MemoryPoolType", "DeviceType", "BuilderFlag", "TensorRTPhase",
        "PluginField", "PluginFieldCollection", "PluginFieldType", "float32", "DataType", "TensorIOMode",
    }),
    # trt.Logger(trt.Logger.WARNING): the severity enum's members are also class attributes of Logger
    "Logger": frozenset({"WARNING"}),
    "Runtime": frozenset({"deserialize_cuda_engine"}),
    "ICudaEngine": frozenset({"create_execution_context", "num_io_tensors", "get_tensor_name", "get_tensor_mode",
                              "get_tensor_dtype", "get_tensor_shape", "get_tensor_profile_shape"}),
    "IExecutionContext": frozenset({"set_input_shape", "get_tensor_shape", "set_tensor_address",
                                    "execute_async_v3"}),
    "Builder": frozenset({"create_network", "create_builder_config", "create_optimization_profile",
                          "build_serialized_network", "num_DLA_cores"}),
    "INetworkDefinition": frozenset({"add_input", "add_plugin_v3", "mark_output", "get_input", "get_output",
                                     "num_inputs", "num_outputs"}),
    "ITensor": frozenset({"name", "shape", "dtype"}),
    "IPluginV3Layer": frozenset({"get_output"}),
    "OnnxParser": frozenset({"parse_from_file", "get_error", "num_errors"}),
    "ParserError": frozenset({"desc", "node_name", "node_operator"}),
    "IBuilderConfig": frozenset({"set_memory_pool_limit", "create_timing_cache", "set_timing_cache",
                                 "add_optimization_profile", "set_flag", "clear_flag", "get_flag",
                                 "default_device_type", "DLA_core"}),
    "IOptimizationProfile": frozenset({"set_shape"}),
    "ITimingCache": frozenset({"serialize"}),
    "IPluginRegistry": frozenset({"load_library", "get_creator"}),
    "IPluginCreatorV3One": frozenset({"create_plugin"}),
    "NetworkDefinitionCreationFlag": frozenset({"STRONGLY_TYPED"}),
    "MemoryPoolType": frozenset({"WORKSPACE"}),
    "DeviceType": frozenset({"DLA"}),
    "BuilderFlag": frozenset({"GPU_FALLBACK", "TF32"}),
    "TensorRTPhase": frozenset({"BUILD"}),
    "PluginFieldType": frozenset({"FLOAT32", "INT32"}),
    "DataType": frozenset({"UINT8", "INT32"}),
    "TensorIOMode": frozenset({"INPUT", "OUTPUT"}),
}

KEYWORDS: dict[str, frozenset[str]] = {
    "IBuilderConfig.set_timing_cache": frozenset({"ignore_mismatch"}),
}

"""DANNet Edge export: ONNX graphs from camera frame to labels, and TensorRT engines.

``to_onnx`` and ``build_engine`` are what ``dannet-export`` runs; the runtime and benchmarks reuse them.
"""
from .engine import EngineError, build_engine, decide, engine_problems
from .onnx_export import ExportError, ExportSpec, read_metadata, to_onnx

__all__ = ["to_onnx", "ExportSpec", "ExportError", "read_metadata", "build_engine", "EngineError", "decide",
           "engine_problems"]

"""DANNet Edge export: ONNX graphs from camera frame to labels, and TensorRT engines.

``to_onnx``, ``to_torch_program`` and ``build_engine`` are what ``dannet-export`` runs; benchmarks reuse them.
"""
from .engine import EngineError, build_engine, decide, engine_problems
from .onnx_export import ExportError, ExportSpec, read_metadata, to_onnx
from .torch_program import to_torch_program

__all__ = ["to_onnx", "to_torch_program", "ExportSpec", "ExportError", "read_metadata", "build_engine", "EngineError",
           "decide", "engine_problems"]

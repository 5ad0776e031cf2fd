"""``dannet-bench latency``: per-stage latency and throughput of the runtime on one model and backend.

Stages, as a frame goes through ``runtime.segmenter.Segmenter``: preprocess (resize the camera frame
to the network input), inference (the backend, host<->device copies included), postprocess (labels
to the display size), overlay (palette blended over the frame). Frames are generated night street
scenes at ``--input-size`` (the camera size). Wall-clock timing around synchronous calls; the
TensorRT backend synchronises its stream inside ``infer``, so the inference stage is complete GPU time.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from runtime.arguments import integer, size_hw
from runtime.atomic import atomic_write
from runtime.errors import DannetError

from .cli import check_outputs, command_parser, cpu_name, provenance

if TYPE_CHECKING:
    from runtime.segmenter import Segmenter

STAGES = ("preprocess", "inference", "postprocess", "overlay")


def percentiles(ms: np.ndarray) -> dict[str, float]:
    return {"min": float(ms.min()), "p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def device_name(backend) -> str:
    if backend.name == "tensorrt":
        from runtime.engine_sidecar import current_machine

        return current_machine().gpu_name
    providers = getattr(backend, "providers", [])
    if "CUDAExecutionProvider" in providers:
        return "CUDA GPU (ONNX Runtime CUDA provider)"
    return f"CPU: {cpu_name()}"


def open_with_threads(model: str, backend: str, threads: int) -> Segmenter:
    """The model to time, with ``--threads`` (0: the library's default) applied where it means something.

    ONNX Runtime takes intra-op threads per session, so they are an option of its backend. PyTorch's are a
    setting of the process (``torch.set_num_threads``), which is this command's own when it runs as
    ``dannet-bench``. A TensorRT engine computes on the GPU and the other stages are single-threaded, so a thread
    count would change nothing measured: it is refused, not silently ignored, lest a user compare runs that
    differ in nothing but the label."""
    from runtime.backends import resolve_backend
    from runtime.segmenter import Segmenter

    kind = resolve_backend(model, backend)
    if threads and kind == "tensorrt":
        raise DannetError(f"--threads {threads}: sets ONNX Runtime's or PyTorch's CPU threads; {model} runs in "
                          "TensorRT on the GPU, where it would change nothing (leave --threads out)")
    seg = Segmenter(model, backend, **({"threads": threads} if threads and kind == "onnxruntime" else {}))
    if threads and kind == "torch":
        import torch

        torch.set_num_threads(threads)
    return seg


def main(argv: list[str] | None = None) -> None:
    from runtime.cli import add_model_arguments

    from .compare import night_frames

    parser = command_parser("latency", __doc__)
    add_model_arguments(parser, help="the model to time")
    parser.add_argument("--input-size", type=size_hw, metavar="HxW",
                        help="camera frame, height first (default: the model's input size)")
    parser.add_argument("--output-size", type=size_hw, metavar="HxW",
                        help="display size for labels/overlay, height first (default: the model's)")
    parser.add_argument("--iters", type=integer(1), default=50, help="timed frames, >= 1 (default 50)")
    parser.add_argument("--warmup", type=integer(0), default=5, help="untimed frames first, >= 0 (default 5)")
    parser.add_argument("--threads", type=integer(0, 1024), default=0,
                        help="CPU inference threads: ONNX Runtime's intra-op threads, or PyTorch's "
                             "(torch.set_num_threads); refused for TensorRT engines (0: the library's default)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a chart (PNG) here")
    args = parser.parse_args(argv)
    check_outputs(args)

    seg = open_with_threads(args.model, args.backend, args.threads)
    frame_size = args.input_size or seg.info.input_size
    if frame_size is None:
        raise DannetError(f"--input-size: {args.model} takes frames of any size; give the camera's frame size")
    display = args.output_size or tuple(seg.info.output_size)
    frames = night_frames(min(args.iters + args.warmup, 8), frame_size, frame_size)
    times = {stage: [] for stage in STAGES}
    for i in range(args.warmup + args.iters):
        frame = frames[i % len(frames)]
        t0 = time.perf_counter()
        x = seg.prepare(frame)
        t1 = time.perf_counter()
        labels = seg.backend.infer(x[None]).labels[0]
        t2 = time.perf_counter()
        if labels.shape != display:
            labels = np.asarray(Image.fromarray(np.ascontiguousarray(labels)).resize(display[::-1], Image.NEAREST))
        t3 = time.perf_counter()
        seg.overlay(frame, labels)
        t4 = time.perf_counter()
        if i >= args.warmup:
            for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[stage].append(seconds * 1e3)
    stage_ms = {stage: np.asarray(v) for stage, v in times.items()}
    total = sum(stage_ms.values())
    backend = seg.backend
    versions = {}
    for module in ("onnxruntime", "tensorrt", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    result = {"model": str(args.model), "backend": backend.name, "device": device_name(backend),
              "providers": getattr(backend, "providers", None), "versions": versions, "precision": seg.info.precision,
              "int8_in_fp32": getattr(backend, "int8_in_fp32", False),  # Q/DQ pairs in fp32 (runtime.cpu_int8)
              "threads": args.threads, "frame_size": list(frame_size),
              "network_input": list(seg.info.network_size(frame_size)), "output_size": list(display),
              "iters": args.iters,
              "stages_ms": {stage: percentiles(v) for stage, v in stage_ms.items()},
              "end_to_end_ms": percentiles(total), "throughput_fps": float(1e3 / np.median(total)),
              "overhead_vs_inference": float(np.median(total) / np.median(stage_ms["inference"]))}
    print(f"{backend.name} on {result['device']}, frame {frame_size[0]}x{frame_size[1]} -> network "
          f"{result['network_input'][0]}x{result['network_input'][1]} -> labels {display[0]}x{display[1]}, "
          f"{args.iters} iterations")
    print(f"{'stage':<12} " + " ".join(f"{k:>8}" for k in ("min", "p50", "p90", "p99", "max")) + "   (ms)")
    for stage, stats in [*result["stages_ms"].items(), ("end-to-end", result["end_to_end_ms"])]:
        print(f"{stage:<12} " + " ".join(f"{stats[k]:>8.1f}" for k in ("min", "p50", "p90", "p99", "max")))
    print(f"throughput {result['throughput_fps']:.2f} frames/s (1 / median end-to-end); end-to-end is "
          f"{result['overhead_vs_inference']:.3f}x the bare inference (the baseline, same run)")
    if args.json:
        atomic_write(args.json, json.dumps({**provenance(args), **result}, indent=1))
    if args.plot:
        plot(result, Path(args.plot))


def plot(result: dict, path: Path) -> None:
    from .plotting import pyplot, save

    plt = pyplot("latency")
    stages = result["stages_ms"]
    fig, ax = plt.subplots(figsize=(7, 3))
    names = list(stages)
    p50 = [stages[n]["p50"] for n in names]
    spread = [[p - stages[n]["min"] for n, p in zip(names, p50)], [stages[n]["p99"] - p for n, p in zip(names, p50)]]
    ax.barh(names, p50, xerr=spread, color="tab:blue", capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel("ms per frame (bar: median, whiskers: min .. p99)")
    ax.set_title(f"{result['backend']} on {result['device'][:40]}: {result['throughput_fps']:.1f} frames/s")
    save(fig, path)


if __name__ == "__main__":
    main()

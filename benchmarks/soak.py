"""Soak test of the camera pipeline: many frames from a live ``test://`` source through ONNX Runtime.

Resident memory is sampled while it runs and reported at the start (after warm-up), the middle and the
end (flat within 5 % is the goal: the ratio end / start), with frames dropped by the live queue (inference
behind the source) and frames lost before it (gaps in GStreamer's frame numbers). Throughput is given as
a ratio to bare inference in the same run (1 / mean inference time): how much the other stages cost
once they overlap with it. Not a unit test: it takes minutes.

    python -m benchmarks.soak --frames 10000 --json benchmarks/results/soak_cpu.json
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

from runtime.arguments import size_hw
from runtime.atomic import atomic_write

#: figures are taken once this many frames have been captured (allocators and ORT arenas settle)
WARMUP_FRAMES = 200


def rss_mib() -> float:
    """This process's resident set size (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def small_model(folder: Path, size: tuple[int, int]) -> Path:
    """An untrained PSPNet-ResNet18 + relighting graph: memory behaviour does not depend on the weights."""
    import torch

    from export import ExportSpec, to_onnx
    from train.checkpoint import save_checkpoint
    from train.models import RelightNet, build_segmenter

    torch.manual_seed(0)
    ckpt = save_checkpoint(folder / "soak.pth", {"segmenter": build_segmenter("pspnet", backbone="resnet18").eval(),
                                                 "light": RelightNet(channels=16).eval()}, arch="pspnet",
                           config={"model": {"backbone": "resnet18"}})
    return to_onnx(ckpt, folder / "soak.onnx", ExportSpec(input_size=size, output_size=size), say=lambda s: None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="portable ONNX graph (default: a small untrained one, 64x128)")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=60.0, help="test:// frames per second (default 60)")
    parser.add_argument("--size", type=size_hw, default=(96, 160), metavar="HxW",
                        help="test:// frame size, height first (default 96x160)")
    parser.add_argument("--output", default="null://", help="output URI (default null://)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    height, width = args.size

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else small_model(Path(tmp), (64, 128))
        import onnxruntime  # noqa: F401  loaded before GStreamer initialises (see runtime/gst.py)

        from runtime.pipeline import Pipeline, PipelineOptions
        from runtime.segmenter import Segmenter
        from runtime.sinks import open_sink
        from runtime.sources import CaptureOptions, open_source
        from runtime.uris import parse_input, parse_output

        segmenter = Segmenter(model)
        source = open_source(parse_input("test://"), CaptureOptions((height, width), args.rate))
        pipeline = Pipeline(segmenter, source, open_sink(parse_output(args.output)),
                            PipelineOptions(max_frames=args.frames, stats_interval_s=10))
        samples: list[tuple[int, float]] = []  # (frames captured, RSS MiB)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                samples.append((pipeline.stats.counts["captured"], rss_mib()))

        sampler = threading.Thread(target=sample, daemon=True)
        started = time.perf_counter()
        sampler.start()
        summary = pipeline.run()
        done.set()
        sampler.join()
        seconds = time.perf_counter() - started

    def rss_at(frames: int) -> float:
        return next((rss for count, rss in samples if count >= frames), samples[-1][1])

    start, middle, end = rss_at(WARMUP_FRAMES), rss_at(args.frames // 2), samples[-1][1]
    inference_s = summary["stages"]["inference"]["mean_ms"] / 1e3
    result = {
        "frames": summary["captured"], "processed": summary["processed"], "dropped": summary["dropped"],
        "lost_upstream": summary["lost_upstream"], "seconds": round(seconds, 1),
        "rss_mib": {"start": round(start, 1), "middle": round(middle, 1), "end": round(end, 1),
                    "max": round(max(r for _, r in samples), 1)},
        "rss_growth_start_to_end": round(end / start - 1, 4),
        "fps_out": summary["fps_out"], "throughput_vs_inference_only": round(summary["fps_out"] * inference_s, 3),
        "stages_ms": {stage: {k: v for k, v in s.items() if k != "count"} for stage, s in summary["stages"].items()},
        "source": f"test:// {height}x{width} (HxW) at {args.rate:g} fps", "output": args.output,
        "model": str(args.model or "untrained PSPNet-ResNet18 + relighting, 64x128"),
        "backend": segmenter.backend.name, "machine": f"{platform.node()} ({platform.processor() or platform.machine()})",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"\nsoak: {result['frames']} frames in {seconds:.0f} s: {result['processed']} processed, "
          f"{result['dropped']} dropped by the live queue, {result['lost_upstream']} lost upstream")
    print(f"RSS MiB: start {start:.1f} (after {WARMUP_FRAMES} frames), middle {middle:.1f}, end {end:.1f} "
          f"-> {100 * result['rss_growth_start_to_end']:+.1f}% (goal: within 5%)")
    print(f"throughput: {summary['fps_out']:.1f} frames/s out = {result['throughput_vs_inference_only']:.2f}x "
          f"bare inference (1 / mean inference time, same run)")
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

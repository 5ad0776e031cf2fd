"""Soak test of the camera pipeline: many frames from live ``test://`` cameras through ONNX Runtime, one camera
as ``dannet-run --input test://`` runs it (runtime/pipeline.py's ``Pipeline``), several as ``dannet-run --input
... --input ...`` does (runtime/multicam.py's ``MultiCamera``, each camera its own test pattern).

Resident memory is sampled while it runs and reported at the start (after warm-up), the middle and the
end (flat within 5 % is the goal: the ratio end / start), with frames dropped by the live queues (inference
behind the sources) and frames lost before them (gaps in GStreamer's frame numbers), in total and per camera.
Throughput is given as a ratio to bare inference in the same run (frames per inference call over the mean
call time): how much the other stages, and sharing inference between cameras, cost once they overlap with
it. Not a unit test: it takes minutes.

    dannet-bench soak --frames 10000 --json benchmarks/results/soak_cpu.json
    dannet-bench soak --cameras 4 --frames 18000 --json benchmarks/results/soak_multicam_cpu.json
"""
from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

from runtime.arguments import integer, number, size_hw
from runtime.atomic import atomic_write
from runtime.multicam import MultiCamera
from runtime.pipeline import Pipeline, PipelineOptions
from runtime.segmenter import Segmenter
from runtime.sinks import open_sink
from runtime.sources import CaptureOptions, open_source
from runtime.uris import parse_input, parse_output

from .cli import check_outputs, command_parser, provenance
from .multicam import PATTERNS

#: figures are taken once this many frames per camera have been captured (allocators and ORT arenas settle)
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


def camera_report(report: dict) -> dict:
    """One camera's counters, frames/s and stage latencies from a run summary."""
    keys = ("input", "captured", "processed", "dropped", "lost_upstream", "written", "fps_out")
    stages = {stage: {k: v for k, v in s.items() if k != "count"} for stage, s in report["stages"].items()}
    return {**{key: report[key] for key in keys}, "stages_ms": stages}


def mean_inference_s(reports: list[dict]) -> float:
    """The mean time of the inference call a frame went through, over every camera's frames."""
    calls = [report["stages"]["inference"] for report in reports]
    return sum(c["mean_ms"] * c["count"] for c in calls) / sum(c["count"] for c in calls) / 1e3


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("soak", __doc__)
    parser.add_argument("--model", help="portable ONNX graph (default: a small untrained one, 64x128)")
    parser.add_argument("--cameras", type=integer(1, 64), default=1, metavar="N",
                        help="live test:// cameras, each its own pattern (default 1: the single-camera pipeline)")
    parser.add_argument("--frames", type=integer(2 * WARMUP_FRAMES), default=10_000,
                        help=f"frames per camera, >= {2 * WARMUP_FRAMES}: memory is measured from the {WARMUP_FRAMES}th "
                             "on, and the middle figure halfway (default 10000)")
    parser.add_argument("--rate", type=number(0, 1000, low_open=True), default=60.0,
                        help="test:// frames per second, in (0, 1000] (default 60)")
    parser.add_argument("--size", type=size_hw, default=(96, 160), metavar="HxW",
                        help="test:// frame size, height first (default 96x160)")
    parser.add_argument("--output", default="null://",
                        help="output URI (default null://; with several cameras null:// only)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    check_outputs(args, ("json",))
    if args.cameras > 1 and parse_output(args.output).kind != "null":
        parser.error(f"--output {args.output}: several cameras cannot share one output; use null://")
    height, width = args.size
    uris = [f"test://{PATTERNS[i % len(PATTERNS)]}" for i in range(args.cameras)]

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else small_model(Path(tmp), (64, 128))
        import onnxruntime  # noqa: F401  loaded before GStreamer initialises (see runtime/gst.py)

        segmenter = Segmenter(model)
        sources = [open_source(parse_input(uri), CaptureOptions((height, width), args.rate)) for uri in uris]
        sinks = [open_sink(parse_output(args.output)) for _ in uris]
        options = PipelineOptions(max_frames=args.frames, stats_interval_s=10)
        runner: Pipeline | MultiCamera  # what dannet-run runs for that many inputs; both count per Camera
        if args.cameras == 1:
            runner = Pipeline(segmenter, sources[0], sinks[0], options)
            cameras = [runner.camera]
        else:
            runner = MultiCamera(segmenter, sources, sinks, options)
            cameras = runner.cameras
        samples: list[tuple[int, float]] = []  # (frames captured by all cameras, RSS MiB)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                samples.append((sum(camera.stats.counts["captured"] for camera in cameras), rss_mib()))

        sampler = threading.Thread(target=sample, daemon=True)
        started = time.perf_counter()
        sampler.start()
        summary = runner.run()
        done.set()
        sampler.join()
        seconds = time.perf_counter() - started
        samples.append((summary["captured"], rss_mib()))  # the end, however short the run

    def rss_at(frames: int) -> float:
        return next((rss for count, rss in samples if count >= frames), samples[-1][1])

    start, middle, end = (rss_at(WARMUP_FRAMES * args.cameras), rss_at(args.frames * args.cameras // 2),
                          samples[-1][1])
    reports = summary["cameras"] if args.cameras > 1 else [{"input": uris[0], **summary}]
    mean_batch = summary.get("mean_batch", 1.0)  # frames per inference call (the single-camera pipeline: 1)
    result = {
        "cameras": args.cameras, "frames": summary["captured"], "processed": summary["processed"],
        "dropped": summary["dropped"], "lost_upstream": summary["lost_upstream"], "written": summary["written"],
        "seconds": round(seconds, 1),
        "rss_mib": {"start": round(start, 1), "middle": round(middle, 1), "end": round(end, 1),
                    "max": round(max(r for _, r in samples), 1)},
        "rss_growth_start_to_end": round(end / start - 1, 4),
        "fps_out": summary["fps_out"], "mean_batch": mean_batch,
        "throughput_vs_inference_only": round(summary["fps_out"] * mean_inference_s(reports) / mean_batch, 3),
        "per_camera": [camera_report(report) for report in reports],
        "source": f"{args.cameras} x test:// {height}x{width} (HxW) at {args.rate:g} fps", "output": args.output,
        "model": str(args.model or "untrained PSPNet-ResNet18 + relighting, 64x128"),
        "backend": segmenter.backend.name,
    }
    print(f"\nsoak: {args.cameras} camera(s), {result['frames']} frames in {seconds:.0f} s: {result['processed']} "
          f"processed, {result['dropped']} dropped by the live queues, {result['lost_upstream']} lost upstream")
    for index, camera in enumerate(result["per_camera"]):
        end_to_end = camera["stages_ms"]["end_to_end"]
        print(f"  camera {index} {camera['input']}: {camera['captured']} captured, {camera['processed']} processed, "
              f"{camera['dropped']} dropped, {camera['lost_upstream']} lost upstream, {camera['fps_out']:.1f} "
              f"frames/s out, end-to-end p50 {end_to_end['p50_ms']:.0f} ms, p99 {end_to_end['p99_ms']:.0f} ms")
    print(f"RSS MiB: start {start:.1f} (after {WARMUP_FRAMES} frames per camera), middle {middle:.1f}, end {end:.1f} "
          f"-> {100 * result['rss_growth_start_to_end']:+.1f}% (goal: within 5%)")
    print(f"throughput: {summary['fps_out']:.1f} frames/s out = {result['throughput_vs_inference_only']:.2f}x "
          f"bare inference (frames per call / mean call time, same run)")
    if args.json:
        atomic_write(args.json, json.dumps({**provenance(args), **result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

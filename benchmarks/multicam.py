"""Several cameras through one model: total and per-camera frames/s and latency, batched vs one camera at a
time (runtime/multicam.py), for 1, 2 and 4 live ``test://`` cameras, video files or image folders.

Each configuration runs ``--seconds`` of frames per camera into ``null://``: live ``test://`` cameras at
``--rate`` (frames the model cannot keep up with are dropped), or ``--seconds`` x ``--rate`` frames per camera,
made before the runs, which the cameras read as fast as they are inferred, every frame kept (the throughput of
offline work): with ``--source file`` an H.264 file per camera, with ``--source images`` a folder of PNG frames
per camera (read with Pillow: no GStreamer needed, as on a GPU machine that has none). Total frames/s is every
picture written over the run's time; a camera's share is its own; latency is each camera's end-to-end p50/p99
(arrival of the frame to its picture written; for a file or folder this includes the wait in its queue).
"Batched" stacks the cameras' frames into one call of a dynamic-batch graph; "one at a time" makes one call per
frame, as a batch-1 graph must. The gain of batching is the batched total over the one-at-a-time total for the
same cameras (issue #15's goal on a GPU: >= 2x with 4 cameras; on the CPU no loss, as inference already fills the
cores). Every batch size is warmed up first, and the two modes take turns going first from one camera count to
the next.

    dannet-bench multicam --json benchmarks/results/multicam_cpu.json
    dannet-bench multicam --source file --json benchmarks/results/multicam_files_cpu.json
    dannet-bench multicam --backend torch --size 256x512 --rate 240   # on a GPU: a .pt2 program on CUDA
"""
from __future__ import annotations

import json
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from runtime.arguments import integer, number, size_hw
from runtime.atomic import atomic_write
from runtime.backends import BACKENDS, DYNAMIC_EXPORT_SIZES
from runtime.errors import DannetError, Interrupted
from runtime.multicam import MultiCamera
from runtime.pipeline import PipelineOptions
from runtime.segmenter import Segmenter
from runtime.sinks import NullSink, open_sink
from runtime.sources import CaptureOptions, Frame, open_source
from runtime.uris import parse_input, parse_output

from .cli import check_outputs, command_parser, provenance

PATTERNS = ("ball", "smpte", "snow", "checkers-8")  # a different picture per camera
SOURCES = ("test", "file", "images")


def dynamic_model(folder: Path, size: tuple[int, int], program: bool = False) -> Path:
    """An untrained PSPNet-ResNet18 + relighting model with a dynamic batch (speed does not depend on weights):
    an ONNX graph, or with ``program`` a .pt2 program (the torch backend, on CUDA where there is a GPU). Every
    camera gives frames of ``size``, so only the batch need vary: a program's always does, and its frame size
    stays fixed (symbolic heights and widths cost it a third more time to export and twice the time to load);
    an ONNX graph's batch varies only with its height and width (``--dynamic``)."""
    import torch

    from export import ExportSpec, to_onnx, to_torch_program
    from train.checkpoint import save_checkpoint
    from train.models import RelightNet, build_segmenter

    torch.manual_seed(0)
    ckpt = save_checkpoint(folder / "multicam.pth", {"segmenter": build_segmenter("pspnet", backbone="resnet18").eval(),
                                                     "light": RelightNet(channels=16).eval()}, arch="pspnet",
                           config={"model": {"backbone": "resnet18"}})
    spec = ExportSpec(input_size=size, output_size=size, dynamic=not program)
    if program:
        return to_torch_program(ckpt, folder / "multicam.pt2", spec, say=lambda s: None)
    return to_onnx(ckpt, folder / "multicam.onnx", spec, say=lambda s: None)


def camera_picture(camera: int, index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame ``index`` of camera ``camera``: a gradient of its own, moving from frame to frame (H x W x 3 uint8)."""
    y, x = np.mgrid[0:size[0], 0:size[1]]
    return np.repeat(((x * (camera + 1) + y + 4 * index) % 256).astype(np.uint8)[..., None], 3, axis=2)


def make_clips(folder: Path, cameras: int, frames: int, size: tuple[int, int], rate: float) -> list[str]:
    """An H.264 .mkv per camera of ``frames`` frames at ``size``, written through dannet-run's own file output:
    the inputs of ``--source file``."""
    clips = []
    for camera in range(cameras):
        sink = open_sink(parse_output(str(folder / f"camera{camera}.mkv")), say=lambda s: None)
        sink.start(size[1], size[0], Fraction(rate).limit_denominator(1001))
        for i in range(frames):
            picture = camera_picture(camera, i, size)
            sink.write(picture, Frame(picture, i, 0.0, 0.0), i / rate)
        sink.close()
        clips.append(str(folder / f"camera{camera}.mkv"))
    return clips


def make_frame_folders(folder: Path, cameras: int, frames: int, size: tuple[int, int]) -> list[str]:
    """A folder of ``frames`` PNG frames per camera (the fastest zlib level: decoding them should cost the
    cameras little): the inputs of ``--source images``."""
    folders = []
    for camera in range(cameras):
        frames_folder = folder / f"camera{camera}"
        frames_folder.mkdir()
        for i in range(frames):
            Image.fromarray(camera_picture(camera, i, size)).save(frames_folder / f"{i:06d}.png", compress_level=1)
        folders.append(str(frames_folder))
    return folders


def measure(segmenter: Segmenter, cameras: int, batched: bool, seconds: float, rate: float,
            size: tuple[int, int], inputs: list[str] | None = None) -> dict:
    """One configuration: its summary's totals, batching figures and per-camera rate and latency; the cameras are
    live ``test://`` ones, or the first ``cameras`` of ``inputs`` (video files or image folders). A SIGINT or
    SIGTERM during it (which ends the run early) ends the benchmark: a cut run's figures are not figures."""
    capture = CaptureOptions(size, rate)
    uris = inputs[:cameras] if inputs else [f"test://{PATTERNS[i % len(PATTERNS)]}" for i in range(cameras)]
    sources = [open_source(parse_input(uri), capture) for uri in uris]
    options = PipelineOptions(max_frames=frames_per_camera(seconds, rate), stats_interval_s=0)
    runner = MultiCamera(segmenter, sources, [NullSink() for _ in sources], options, say=lambda s: None,
                         batched=batched)
    summary = runner.run()
    if runner.control.signals:
        raise Interrupted(runner.control.signals[0])
    per_camera = [{"fps_out": c["fps_out"], "written": c["written"], "dropped": c["dropped"],
                   "p50_ms": c["stages"]["end_to_end"]["p50_ms"], "p99_ms": c["stages"]["end_to_end"]["p99_ms"]}
                  for c in summary["cameras"]]
    return {"cameras": cameras, "batched": batched, "fps_out": summary["fps_out"],
            "inference_calls": summary["inference_calls"], "mean_batch": summary["mean_batch"],
            "per_camera": per_camera}


def make_inputs(source: str, folder: Path, cameras: int, frames: int, size: tuple[int, int],
                rate: float) -> list[str] | None:
    """The cameras' inputs for ``--source``: None for live ``test://`` cameras (made by each run)."""
    if source == "file":
        return make_clips(folder, cameras, frames, size, rate)
    if source == "images":
        return make_frame_folders(folder, cameras, frames, size)
    return None


def frames_per_camera(seconds: float, rate: float) -> int:
    """The frames each camera gives in ``seconds`` at ``rate``: at least 1 (the pipeline reads 0 as no limit)."""
    return max(1, round(seconds * rate))


def warm_up(segmenter: Segmenter, size: tuple[int, int], cameras: int) -> None:
    """One untimed call at every batch size the runs will make, 1 to the cameras (or the model's largest batch): the
    first call of a batch size allocates and plans (ONNX Runtime, CUDA), and partial batches of a camera count
    are as common as full ones."""
    largest = min(cameras, segmenter.backend.max_batch or cameras)
    for count in range(1, largest + 1):
        segmenter.backend.infer(np.zeros((count, *segmenter.info.network_size(size), 3), np.uint8))


def device_of(backend) -> str:
    """Where inference ran: the torch device, ONNX Runtime's first provider, or TensorRT's GPU."""
    if backend.name == "torch":
        return str(backend.device)
    if backend.name == "onnxruntime":
        return backend.providers[0]
    return "TensorRT (GPU)"


def batching_gains(results: list[dict]) -> dict[str, float]:
    """Per camera count: batched total frames/s over one-at-a-time total frames/s."""
    total = {(r["cameras"], r["batched"]): r["fps_out"] for r in results}
    return {str(n): round(total[n, True] / max(total[n, False], 1e-9), 3)
            for n in dict.fromkeys(r["cameras"] for r in results)}


def camera_counts(text: str) -> list[int]:
    """``--cameras 1,2,4``: the first count is the baseline of the "vs" column."""
    return [integer(1, len(PATTERNS) * 4)(n) for n in text.split(",")]


def row(result: dict, single: float) -> str:
    shares = " / ".join(f"{c['fps_out']:.1f}" for c in result["per_camera"])
    latency = " / ".join(f"{c['p50_ms']:.0f}, {c['p99_ms']:.0f}" for c in result["per_camera"])
    return (f"| {result['cameras']} | {'batched' if result['batched'] else 'one at a time'} | "
            f"{result['fps_out']:.1f} | {result['fps_out'] / single:.2f}x | {result['mean_batch']:.2f} | {shares} | "
            f"{latency} |")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("multicam", __doc__)
    parser.add_argument("--model", help="a dynamic-batch portable ONNX graph, .pt2 or engine with a batch profile "
                                        "(default: a small untrained model at --size)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: from the model file's type; without --model, torch makes the default model a .pt2 "
                             "program (on CUDA where there is a GPU), otherwise an ONNX graph for ONNX Runtime")
    parser.add_argument("--cameras", type=camera_counts, default=[1, 2, 4], metavar="N,N,...",
                        help="camera counts, comma-separated (default 1,2,4); batched and one-at-a-time runs take "
                             "turns going first from one count to the next (with one count, batched goes first)")
    parser.add_argument("--source", choices=SOURCES, default="test",
                        help="test: live test:// cameras at --rate (default); file: a video file per camera, "
                             "read as fast as it is inferred, every frame kept; images: the same with a folder of "
                             "PNG frames per camera (no GStreamer needed)")
    parser.add_argument("--seconds", type=number(0, low_open=True), default=10.0,
                        help="frames per camera, in seconds at --rate: a live camera's run, or each file's or "
                             "folder's length (default 10)")
    parser.add_argument("--rate", type=number(0, 1000, low_open=True), default=30.0,
                        help="test:// frames per second; files and folders hold --seconds x --rate frames "
                             "(default 30)")
    parser.add_argument("--size", type=size_hw, default=(64, 128), metavar="HxW",
                        help="frame size, height first (default 64x128)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.backend == "tensorrt" and not args.model:
        parser.error("--backend tensorrt: give --model ENGINE (built with a batch profile); the default model is "
                     "made for onnxruntime or torch")
    if not args.model and not DYNAMIC_EXPORT_SIZES.takes(args.size):
        parser.error(f"--size {args.size[0]}x{args.size[1]}: the default model takes {DYNAMIC_EXPORT_SIZES} "
                     f"(e.g. {'x'.join(map(str, DYNAMIC_EXPORT_SIZES.nearest(args.size)))})")
    check_outputs(args, ("json",))
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or dynamic_model(Path(folder), args.size, program=args.backend == "torch")
        with Segmenter(model, args.backend) as segmenter:
            if segmenter.backend.max_batch == 1:  # its "batched" rows would time one camera at a time twice
                raise DannetError(f"--model {model}: takes one frame per call (batch 1), so nothing would be "
                                  "batched; export it with --dynamic (or build the engine with a batch profile)")
            inputs = make_inputs(args.source, Path(folder), max(args.cameras),
                                 frames_per_camera(args.seconds, args.rate), args.size, args.rate)
            warm_up(segmenter, args.size, max(args.cameras))
            turns = [(True, False) if i % 2 == 0 else (False, True) for i in range(len(args.cameras))]
            results = [measure(segmenter, n, batched, args.seconds, args.rate, args.size, inputs)
                       for n, modes in zip(args.cameras, turns) for batched in modes]
            ran_on = {"backend": segmenter.backend.name, "device": device_of(segmenter.backend)}
        results.sort(key=lambda r: (args.cameras.index(r["cameras"]), not r["batched"]))
    single = next(r["fps_out"] for r in results if r["cameras"] == args.cameras[0] and not r["batched"])
    print(f"| cameras | inference | total frames/s | vs {args.cameras[0]} camera(s) | frames per call | frames/s per camera | "
          "p50, p99 ms per camera |\n| --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        print(row(result, single))
    gains = batching_gains(results)
    print("batched / one at a time: " + ", ".join(f"{n} camera(s) {gain:.2f}x" for n, gain in gains.items()))
    if args.json:
        flags = {k: v for k, v in vars(args).items() if k != "command_line"} | {"size": list(args.size)}
        atomic_write(args.json, json.dumps({**provenance(args), **ran_on, "args": flags,
                                            "results": results, "batched_vs_one_at_a_time": gains}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

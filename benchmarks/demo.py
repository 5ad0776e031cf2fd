"""The demo behind ``make demo``: DANNet Edge end to end on a CPU, in a few minutes.

1. generate Cityscapes-style day data and Dark Zurich-style day/night pairs;
2. pre-train a small PSPNet on the day data, then adapt it with DANNet (cached: a second run reuses it);
3. export it as one ONNX graph, uint8 camera frame in, labels out;
4. run the graph with ONNX Runtime on the generated, labelled night images: mIoU and an overlay PNG;
5. render a synthetic night drive as an H.264 video and run ``dannet-run`` on it (GStreamer in and out):
   an overlay video, and a summary with frames per second and per-stage latency.

Everything lands in ``demo-output/``; ``summary.json`` holds the figures.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from runtime.atomic import atomic_write

OUT = Path("demo-output")
SIZE = (128, 256)
CLIP_SCENES, CLIP_FRAMES_PER_SCENE, CLIP_RATE = 4, 25, 10


def step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def main() -> None:
    from export import ExportSpec, to_onnx
    from runtime.segmenter import Segmenter
    from train.cli import main as train_main
    from train.data import dataset_samples
    from train.data.synth import generate
    from train.metrics import ConfusionMeter

    started = time.perf_counter()
    data = OUT / "synth"
    t = step("1/5 synthetic data")
    for layout in ("cityscapes", "darkzurich"):
        if not (data / layout).is_dir():
            generate(data / layout, layout, count=60, size=SIZE, seed=0)
    print(f"   {data}: day images, day/night pairs, labelled night val ({time.perf_counter() - t:.0f} s)")

    common = ["--config", "synthetic-cpu", "--set", f"data.source.root={data / 'cityscapes'}",
              "--set", f"data.target.root={data / 'darkzurich'}", "--set", "run.val_every=0"]
    for name, argv in (("pretrain", ["pretrain", *common, "--set", "pretrain.iterations=200"]),
                       ("dannet", ["adapt", *common, "--init", str(OUT / "pretrain" / "final.pth"),
                                   "--set", "optim.iterations=60"])):
        t = step(f"2/5 training: {name} (cached after the first run)")
        if (OUT / name / "final.pth").is_file():
            print(f"   reusing {OUT / name / 'final.pth'}")
            continue
        code = train_main([*argv, "--out", str(OUT / name)] + (["--resume"] if (OUT / name).is_dir() else []))
        if code != 0:
            raise SystemExit(code)
        print(f"   {OUT / name / 'final.pth'} ({time.perf_counter() - t:.0f} s)")

    t = step("3/5 export: frame -> labels ONNX graph")
    onnx_path = OUT / "dannet.onnx"
    if not onnx_path.is_file():
        to_onnx(OUT / "dannet" / "final.pth", onnx_path, ExportSpec(input_size=SIZE, output_size=SIZE),
                say=lambda s: print(f"   {s}"))

    t = step("4/5 ONNX Runtime on generated, labelled night images")
    segmenter = Segmenter(onnx_path)
    meter, tiles, seconds = ConfusionMeter(), [], []
    for sample in dataset_samples("synthetic", data):
        frame = np.asarray(Image.open(sample.image).convert("RGB"))
        start = time.perf_counter()
        labels = segmenter.process(frame)
        seconds.append(time.perf_counter() - start)
        meter.update(labels, np.asarray(Image.open(sample.label)))
        if len(tiles) < 4:
            tiles.append(np.concatenate([frame, segmenter.overlay(frame, labels)], axis=1))
    Image.fromarray(np.concatenate(tiles, axis=0)).save(OUT / "overlay.png")
    print(f"   {len(seconds)} night images: mIoU {100 * meter.miou:.1f}%, "
          f"{1 / np.median(seconds):.1f} frames/s (median {1e3 * np.median(seconds):.0f} ms, ONNX Runtime CPU)")
    print(f"   overlay: {OUT / 'overlay.png'}")

    step("5/5 dannet-run on a synthetic night drive (GStreamer: H.264 in, overlay H.264 out)")
    clip = OUT / "night_drive.mp4"
    if not clip.is_file():
        write_clip(clip)
    stats = OUT / "run_stats.jsonl"
    command = [sys.executable, "-m", "runtime.cli", "--model", str(onnx_path), "--input", str(clip),
               "--output", str(OUT / "night_drive_overlay.mp4"), "--visualize", "both", "--legend",
               "--stats-interval", "2", "--stats-json", str(stats)]
    print("   $ dannet-run " + " ".join(command[3:]), flush=True)
    if subprocess.run(command).returncode != 0:
        raise SystemExit("demo: dannet-run failed (its message is above)")
    run = json.loads(stats.read_text().splitlines()[-1])
    summary = {"miou_night_val": round(100 * meter.miou, 2), "night_val_images": len(seconds),
               "run": {k: run[k] for k in ("captured", "written", "dropped", "elapsed_s", "fps_out")},
               "latency_ms": {stage: {k: v for k, v in s.items() if k != "count"} for stage, s in run["stages"].items()},
               "backend": "onnxruntime (CPU)", "input_size": list(SIZE)}
    atomic_write(OUT / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"\n== summary ({OUT / 'summary.json'})")
    print(f"   mIoU on generated night val: {summary['miou_night_val']:.1f}% ({len(seconds)} images)")
    print(f"   dannet-run: {run['written']} frames at {run['fps_out']:.1f} frames/s end to end, {run['dropped']} dropped")
    for stage, s in summary["latency_ms"].items():
        print(f"   {stage:<12} p50 {s['p50_ms']:7.1f} ms   p90 {s['p90_ms']:7.1f} ms")
    print(f"   videos: {clip} -> {OUT / 'night_drive_overlay.mp4'} (overlay | mask | legend)")
    print(f"\ndone in {time.perf_counter() - started:.0f} s; everything is in {OUT}/")


def write_clip(path: Path) -> None:
    """The synthetic night drive as H.264, through the runtime's own GStreamer output."""
    from tqdm import tqdm

    from runtime.sinks import open_sink
    from runtime.sources import Frame
    from runtime.uris import parse_output
    from train.data.synth import night_drive

    sink, count = open_sink(parse_output(str(path))), CLIP_SCENES * CLIP_FRAMES_PER_SCENE
    sink.start(SIZE[1], SIZE[0], Fraction(CLIP_RATE))
    frames = night_drive(CLIP_SCENES, CLIP_FRAMES_PER_SCENE, SIZE, seed=1)
    for i, (image, _) in enumerate(tqdm(frames, total=count, desc="   rendering", unit="frame")):
        sink.write(image, Frame(image, i, 0.0, 0.0), i / CLIP_RATE)
    sink.close()
    print(f"   {path}: {count} frames at {CLIP_RATE} frames/s")


if __name__ == "__main__":
    main()

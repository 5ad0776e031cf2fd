"""The demo behind ``make demo``: DANNet Edge end to end on a CPU, in a few minutes.

1. generate Cityscapes-style day data and Dark Zurich-style day/night pairs;
2. pre-train a small PSPNet on the day data, then adapt it with DANNet (cached: a second run reuses it);
3. export it as one ONNX graph, uint8 camera frame in, labels out;
4. run the graph with ONNX Runtime on generated night images: mIoU, throughput, and an overlay PNG.

Everything lands in ``demo-output/``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path("demo-output")
SIZE = (128, 256)


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
    t = step("1/4 synthetic data")
    for layout in ("cityscapes", "darkzurich"):
        if not (data / layout).is_dir():
            generate(data / layout, layout, count=60, size=SIZE, seed=0)
    print(f"   {data}: day images, day/night pairs, labelled night val ({time.perf_counter() - t:.0f} s)")

    common = ["--config", "synthetic-cpu", "--set", f"data.source.root={data / 'cityscapes'}",
              "--set", f"data.target.root={data / 'darkzurich'}", "--set", "run.val_every=0"]
    for name, argv in (("pretrain", ["pretrain", *common, "--set", "pretrain.iterations=200"]),
                       ("dannet", ["adapt", *common, "--init", str(OUT / "pretrain" / "final.pth"),
                                   "--set", "optim.iterations=60"])):
        t = step(f"2/4 training: {name} (cached after the first run)")
        if (OUT / name / "final.pth").is_file():
            print(f"   reusing {OUT / name / 'final.pth'}")
            continue
        code = train_main([*argv, "--out", str(OUT / name)] + (["--resume"] if (OUT / name).is_dir() else []))
        if code != 0:
            raise SystemExit(code)
        print(f"   {OUT / name / 'final.pth'} ({time.perf_counter() - t:.0f} s)")

    t = step("3/4 export: frame -> labels ONNX graph")
    onnx_path = OUT / "dannet.onnx"
    if not onnx_path.is_file():
        to_onnx(OUT / "dannet" / "final.pth", onnx_path, ExportSpec(input_size=SIZE, output_size=SIZE),
                say=lambda s: print(f"   {s}"))

    t = step("4/4 ONNX Runtime on generated night images")
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
    print(f"\ndone in {time.perf_counter() - started:.0f} s; everything is in {OUT}/")


if __name__ == "__main__":
    main()

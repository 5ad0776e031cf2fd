"""Generator throughput: images/s per layout on one core, against the PNG-writing floor.

The baseline, measured in the same run, writes already-rendered images of the same size with the
same PNG settings: the ratio says how much rendering costs on top of the unavoidable I/O.

    python -m benchmarks.synth_speed --size 256x512 --count 40
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime.arguments import size_hw
from train.data.synth import LAYOUTS, _save_png, generate, images_written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=size_hw, default=(256, 512))
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the requirement reads
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (*args.size, 3), dtype=np.uint8) for _ in range(8)]
        labels = [rng.integers(0, 19, args.size, dtype=np.uint8) for _ in range(8)]
        n = 0
        start = time.perf_counter()
        for i in range(args.count):
            _save_png(frames[i % 8], Path(tmp, "floor", f"{i}.png"))
            _save_png(labels[i % 8], Path(tmp, "floor", f"{i}_label.png"))
            n += 1
        floor = n / (time.perf_counter() - start)
        print(f"size {args.size[0]}x{args.size[1]}, one core; PNG-writing floor: {floor:.1f} img/s")
        for layout in LAYOUTS:
            start = time.perf_counter()
            generate(Path(tmp, layout), layout, args.count, args.size, seed=0)
            rate = images_written(layout, args.count) / (time.perf_counter() - start)
            print(f"  {layout:<13} {rate:6.1f} img/s   ({floor / rate:.2f}x the time of writing alone)")


if __name__ == "__main__":
    main()

"""Generator throughput: images/s per layout on one core, against the PNG-writing floor.

The baseline, measured in the same run, writes again every PNG the generator just wrote (images and
labels, decoded first, written with the same PNG settings): the ratio says how much rendering costs on
top of the I/O the same output needs anyway.

    python -m benchmarks.synth_speed --size 256x512 --count 40
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from runtime.arguments import integer, size_hw
from runtime.errors import Parser, debug_requested, run_command
from train.data.synth import LAYOUTS, _save_png, check_size, generate, images_written


def writing_alone_s(pngs: list[Path], folder: Path) -> float:
    """Seconds to write ``pngs`` again (decoded beforehand, not timed) with the generator's PNG settings."""
    arrays = [np.asarray(Image.open(path)) for path in pngs]
    start = time.perf_counter()
    for i, array in enumerate(arrays):
        _save_png(array, folder / f"{i}.png")
    return time.perf_counter() - start


def main() -> None:
    parser = Parser(prog="python -m benchmarks.synth_speed", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=size_hw, default=(256, 512), metavar="HxW")
    parser.add_argument("--count", type=integer(1), default=40, help="images per layout, >= 1 (default 40)")
    args = parser.parse_args()
    check_size(args.size)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the requirement reads
    print(f"size {args.size[0]}x{args.size[1]}, {args.count} images per layout, one core")
    with tempfile.TemporaryDirectory() as tmp:
        for layout in LAYOUTS:
            out = Path(tmp, layout)
            start = time.perf_counter()
            generate(out, layout, args.count, args.size, seed=0)
            spent = time.perf_counter() - start
            pngs = sorted(out.rglob("*.png"))
            floor = writing_alone_s(pngs, Path(tmp, "floor", layout))
            rate = images_written(layout, args.count) / spent
            print(f"  {layout:<13} {rate:6.1f} img/s   {spent / floor:.2f}x the time of writing its "
                  f"{len(pngs)} PNGs alone")


if __name__ == "__main__":  # one line on stderr and an exit code for what the user can act on, as the commands
    sys.exit(run_command("python -m benchmarks.synth_speed", main, debug_requested(sys.argv)))

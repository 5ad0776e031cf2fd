"""What the confidence output costs on the CPU: one checkpoint exported twice (labels only, labels + confidence),
both graphs run by ONNX Runtime in the same process on the same frame, alternately, so that both see the same
machine load; median milliseconds of each and their ratio, per size.

    dannet-bench confidence-cost --checkpoint demo-output/dannet/final.pth \\
        --size 128x256:128x256 --size 540x960:1080x1920

The portable tail computes the confidence from the upsampled scores it already has (ReduceMax, Sub, Exp,
ReduceSum, Reciprocal, x255, +0.5, Floor, Cast: a few passes over the C x H x W scores), so the cost grows with
the output size, not with the network.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime.arguments import add_network_flags, integer, size_hw
from runtime.atomic import atomic_write
from runtime.errors import EXIT_FAILED, DannetError
from runtime.turns import in_turn

from .cli import check_outputs, command_parser, provenance


def sizes_of(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """``540x960:1080x1920`` -> ((540, 960), (1080, 1920)): network input, then label map."""
    inp, _, out = text.partition(":")
    return size_hw(inp), size_hw(out or inp)


def median_ms(times: list[float]) -> float:
    return float(np.median(times) * 1e3)


def measure(checkpoint: str, network: dict[str, str | None], input_size: tuple[int, int],
            output_size: tuple[int, int], runs: int, warmup: int, threads: int, folder: Path) -> dict:
    """Both exports at one size, timed alternately on one frame; the labels must be identical. ``network``:
    ``to_onnx``'s ``light``, ``arch`` and ``backbone``."""
    from export import ExportError, ExportSpec, to_onnx
    from runtime.backends import OnnxRuntimeBackend

    backends = {}
    for name, confidence in (("labels", False), ("labels+confidence", True)):
        try:
            path = to_onnx(checkpoint, folder / f"{name}_{input_size[0]}x{input_size[1]}.onnx",
                           ExportSpec(input_size=input_size, output_size=output_size, confidence=confidence),
                           say=lambda s: None, **network)
        except ExportError as error:  # it names dannet-export's flags: say which of ours set them
            sizes = f"{input_size[0]}x{input_size[1]}:{output_size[0]}x{output_size[1]}"
            raise ExportError(f"--size {sizes}: {error}") from None
        backends[name] = OnnxRuntimeBackend(path, threads=threads)
    frame = np.random.default_rng(0).integers(0, 256, (1, *input_size, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {name: [] for name in backends}
    results = {}
    for i in range(warmup + runs):
        for name in in_turn(list(backends), i):  # who goes first alternates
            started = time.perf_counter()
            results[name] = backends[name].infer(frame)
            if i >= warmup:
                times[name].append(time.perf_counter() - started)
    if not np.array_equal(results["labels"].labels, results["labels+confidence"].labels):
        raise DannetError(f"--checkpoint {checkpoint}: its two exports gave different labels at "
                          f"{input_size[0]}x{input_size[1]}; the confidence output must not change them "
                          "(a bug: report it)", EXIT_FAILED)
    medians = {name: median_ms(t) for name, t in times.items()}
    return {"input_size": list(input_size), "output_size": list(output_size), "runs": runs,
            "median_ms": medians, "min_ms": {name: float(min(t) * 1e3) for name, t in times.items()},
            "ratio": medians["labels+confidence"] / medians["labels"],
            "extra_ms": medians["labels+confidence"] - medians["labels"]}


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("confidence-cost", __doc__)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint dannet-export takes")
    add_network_flags(parser)
    parser.add_argument("--size", type=sizes_of, action="append", metavar="HxW[:HxW]",
                        help="network input and label map, e.g. 540x960:1080x1920 (repeatable; default that one)")
    parser.add_argument("--runs", type=integer(1), default=20, help="timed runs per graph (default 20)")
    parser.add_argument("--warmup", type=integer(0), default=3, help="untimed runs first (default 3)")
    parser.add_argument("--threads", type=integer(0, 1024), default=0, help="ONNX Runtime threads (0: its default)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    check_outputs(args, ("json",))
    network = {"light": args.light, "arch": args.arch, "backbone": args.backbone}
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        for input_size, output_size in args.size or [((540, 960), (1080, 1920))]:
            row = measure(args.checkpoint, network, input_size, output_size, args.runs, args.warmup,
                          args.threads, Path(folder))
            rows.append(row)
            m = row["median_ms"]
            print(f"{input_size[0]}x{input_size[1]} -> {output_size[0]}x{output_size[1]}: labels {m['labels']:.1f} ms, "
                  f"labels + confidence {m['labels+confidence']:.1f} ms (median of {row['runs']}): "
                  f"x{row['ratio']:.3f}, +{row['extra_ms']:.1f} ms", flush=True)
    result = {"checkpoint": args.checkpoint, "threads": args.threads,
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "rows": rows}
    print(f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {result['load_average_after'][0]:.2f} {result['load_average_after'][1]:.2f} "
          f"{result['load_average_after'][2]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        atomic_write(args.json, json.dumps({**provenance(args), **result}, indent=1).encode())


if __name__ == "__main__":
    main()

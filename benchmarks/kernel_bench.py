"""ReweightArgmax kernel vs PyTorch's interpolate + mul + argmax on a GPU, in one run; and what the
confidence output costs (the labels-only kernel vs the kernel with confidence, same run).

Both paths start from the same fp32 logits in GPU memory and end with uint8 labels in GPU memory.
Times are medians per launch, from CUDA events around runs of back-to-back launches, the paths
taking turns (``interleaved_medians``); "GB/s" counts the bytes the fused kernel must move (logits read once,
labels written once) divided by each path's time, next to the device's theoretical bandwidth. The
confidence kernel must give the labels-only kernel's labels, and levels within one of PyTorch's
float64 softmax of the same re-weighted scores ("conf +-1": the share of pixels that are).

    python -m benchmarks.kernel_bench            (or: dannet-bench kernel)
"""
from __future__ import annotations

import json
from typing import Callable

import numpy as np

from runtime.arguments import integer
from runtime.atomic import atomic_write
from runtime.errors import DannetError
from runtime.turns import in_turn

from .cli import check_outputs, command_parser, provenance

#: (classes, logits h, w) -> (labels H, W): DANNet at 1080p, its 540p input size, a 720p camera
DEFAULT_CASES = [((19, 68, 120), (1080, 1920)), ((19, 68, 121), (540, 960)), ((19, 45, 80), (720, 1280))]


def device_bandwidth_gbs() -> float | None:
    """Theoretical DRAM bandwidth from the driver's memory clock and bus width (None if unknown)."""
    from cuda.bindings import driver

    driver.cuInit(0)
    _, dev = driver.cuDeviceGet(0)
    attr = driver.CUdevice_attribute
    err1, clock_khz = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, dev)
    err2, bus_bits = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, dev)
    if int(err1) or int(err2) or not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def cuda_event_timer() -> tuple[Callable[[], None], Callable[[], float]]:
    """A (start, stop) pair on the current CUDA stream: ``stop`` waits for the work queued since ``start`` and
    returns its GPU time in ms."""
    import torch

    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def stop() -> float:
        end.record()
        end.synchronize()
        return begin.elapsed_time(end)
    return begin.record, stop


def interleaved_medians(paths: dict[str, Callable[[], None]], samples: int, launches: int, warmup: int,
                        timer: Callable[[], tuple[Callable[[], None], Callable[[], float]]] = cuda_event_timer
                        ) -> dict[str, float]:
    """Median time per launch of each path, in ms.

    One sample is ``launches`` back-to-back launches between two events, divided by ``launches``: where the
    host queues launches faster than the kernels run, the GPU is kept busy and the Python/ctypes cost of
    building each launch is not counted (one launch between two events counts it, the GPU idling while the
    host builds the call); where it cannot (PyTorch's four dispatches per launch may not), the time is the
    host's, as in a pipeline. Not yet run on a GPU. The paths take turns sample by sample, first path rotating, so that clock
    ramp-up and drift fall on all of them alike; ``warmup`` untimed rounds of every path come first."""
    names = list(paths)
    for _ in range(warmup):
        for name in names:
            paths[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(samples):
        for name in in_turn(names, i):
            start, stop = timer()
            start()
            for _ in range(launches):
                paths[name]()
            times[name].append(stop() / launches)
    return {name: float(np.median(t)) for name, t in times.items()}


def confidence_agreement(scores, confidence) -> tuple[float, float]:
    """How close the kernel's confidence levels (uint8, N x H x W) are to floor(255 p + 0.5) of PyTorch's
    float64 softmax of ``scores`` (N x C x H x W) at its maximum: the share of pixels within one level,
    and the largest difference. One frame at a time (float64 copies of a batch at 1080p are large)."""
    import torch

    within, largest = 0, 0.0
    for frame_scores, frame_levels in zip(scores, confidence):
        expected = torch.floor(torch.softmax(frame_scores.double(), dim=0).amax(0) * 255 + 0.5)
        error = (frame_levels.double() - expected).abs()
        within += int((error <= 1).sum().item())
        largest = max(largest, error.max().item())
    return within / confidence.numel(), largest


def run(cases, batch: int, samples: int, launches: int, warmup: int) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from runtime.classes import TEST_WEIGHTS_STD, class_weights
    from runtime.reweight_argmax_cuda import CudaReweightArgmax, make_params

    if not torch.cuda.is_available():
        raise DannetError("needs a CUDA GPU (torch.cuda.is_available() is False)")
    torch.cuda.init()
    kernel = CudaReweightArgmax(torch.cuda.current_device())
    weights = class_weights(TEST_WEIGHTS_STD)
    w_gpu = torch.from_numpy(weights).cuda().view(1, -1, 1, 1)
    rows = []
    for (c, h, w), size in cases:
        logits = torch.randn(batch, c, h, w, device="cuda") * 4
        labels = torch.empty(batch, *size, dtype=torch.uint8, device="cuda")
        confidence = torch.empty_like(labels)
        params = make_params((batch, c, h, w), weights, size, True, 0)
        stream = torch.cuda.current_stream().cuda_stream

        def fused() -> None:
            kernel.launch(logits.data_ptr(), False, labels.data_ptr(), "uint8", params, stream)

        def fused_with_confidence() -> None:
            kernel.launch(logits.data_ptr(), False, labels.data_ptr(), "uint8", params, stream, confidence.data_ptr())

        def pytorch() -> None:
            up = F.interpolate(logits * w_gpu, size=size, mode="bilinear", align_corners=True)
            labels.copy_(up.argmax(dim=1))

        times = interleaved_medians({"pytorch": pytorch, "kernel": fused, "confidence": fused_with_confidence},
                                    samples, launches, warmup)
        fused()
        labels_only = labels.clone()
        fused_with_confidence()
        scores = F.interpolate(logits * w_gpu, size=size, mode="bilinear", align_corners=True)
        agree = (labels_only.long() == scores.argmax(1)).float().mean().item()
        within_one, max_level_error = confidence_agreement(scores, confidence)
        moved = logits.numel() * 4 + labels.numel()
        rows.append({"case": f"{batch}x{c}x{h}x{w} -> {size[0]}x{size[1]}", "pytorch_ms": times["pytorch"],
                     "kernel_ms": times["kernel"], "kernel_confidence_ms": times["confidence"],
                     "confidence_cost": times["confidence"] / times["kernel"],
                     "speedup": times["pytorch"] / times["kernel"], "kernel_gbs": moved / times["kernel"] / 1e6,
                     "agree": agree, "confidence_same_labels": bool(torch.equal(labels, labels_only)),
                     "confidence_within_one": within_one, "confidence_max_level_error": max_level_error})
    return rows


def table(rows: list[dict], bandwidth: float | None) -> list[str]:
    """The result table's lines: a header, then one line per case."""
    lines = [f"{'case':<30} {'PyTorch ms':>10} {'kernel ms':>10} {'speed-up':>9} {'kernel GB/s':>12} {'of peak':>8} "
             f"{'same labels':>12} {'+conf ms':>9} {'conf cost':>10} {'conf labels':>12} {'conf +-1':>9}"]
    for r in rows:
        peak = f"{100 * r['kernel_gbs'] / bandwidth:.0f}%" if bandwidth else "-"
        lines.append(f"{r['case']:<30} {r['pytorch_ms']:>10.3f} {r['kernel_ms']:>10.3f} {r['speedup']:>8.1f}x "
                     f"{r['kernel_gbs']:>12.1f} {peak:>8} {100 * r['agree']:>11.4f}% "
                     f"{r['kernel_confidence_ms']:>9.3f} {r['confidence_cost']:>9.2f}x "
                     f"{'same' if r['confidence_same_labels'] else 'DIFFERENT':>12} "
                     f"{100 * r['confidence_within_one']:>8.3f}%")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("kernel", __doc__)
    parser.add_argument("--batch", type=integer(1, 64), default=1, help="frames per launch, in [1, 64] (default 1)")
    parser.add_argument("--samples", type=integer(1), default=50,
                        help="timed samples per path, >= 1 (default 50); the paths take turns")
    parser.add_argument("--launches", type=integer(1), default=20,
                        help="back-to-back launches per sample, >= 1 (default 20): one sample is their time / launches")
    parser.add_argument("--warmup", type=integer(0), default=20,
                        help="untimed launches of each path first, >= 0 (default 20)")
    parser.add_argument("--json", help="write the device and the rows here")
    args = parser.parse_args(argv)
    check_outputs(args, ("json",))
    rows = run(DEFAULT_CASES, args.batch, args.samples, args.launches, args.warmup)
    import torch

    bandwidth = device_bandwidth_gbs()
    print(f"device: {torch.cuda.get_device_name()}, theoretical bandwidth: "
          f"{f'{bandwidth:.0f} GB/s' if bandwidth else 'unknown'}")
    print("\n".join(table(rows, bandwidth)))
    if args.json:
        atomic_write(args.json, json.dumps({**provenance(args), "device": torch.cuda.get_device_name(),
                                            "bandwidth_gbs": bandwidth,
                                            "batch": args.batch, "samples": args.samples,
                                            "launches": args.launches, "warmup": args.warmup, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

"""``dannet-bench backbones``: segmentation backbones for deployment, side by side, measured in one run.

For PSPNet on each backbone, with DANNet's relighting net in front of it as deployed (frame -> relight ->
segment), one row of:
- parameters of the inference network (segmenter, relighting net, total): the parameters of the modules
  that an inference forward pass runs; the training-only auxiliary head is not part of the deployed graph;
- GFLOPs of one frame at --input-size through the fused network (``dannet-export``'s frame -> logits
  module, PSP pooling as pooling matrices), counted by PyTorch's FlopCounterMode: FLOPs = 2 x the
  multiply-accumulates of convolutions, transposed convolutions and matrix products. Not counted:
  elementwise ops (input normalisation, BatchNorm, activations, residual adds, biases), pooling,
  padding, the bilinear upsampling inside the network, and the tail (re-weighting, upsampling to the
  output size, argmax);
- CPU latency of the exported graph (``dannet-export``'s, portable tail) in ONNX Runtime: median of
  --iters runs after --warmup, on a generated night frame, the backbones taking turns run by run (not for
  the --size-only backbones);
- night mIoU of a trained checkpoint (--checkpoint BACKBONE=PATH) on the generated night val
  (--night-root, a ``dannet-train synth`` output), evaluated as the demo does: DANNet's test-time
  inference in PyTorch (``dannet-train eval --scale 1``), the images at their own size, with the class
  weights of the exported tail (std 0.16), on --device (the CUDA GPU where there is one).
Without a checkpoint a backbone's networks have random weights: parameters, FLOPs and latency do not
depend on the weights, and its mIoU reads "-". Every figure is also given as a ratio to the baseline
backbone's figure from the same run (row / baseline).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from runtime.arguments import add_device_flag, integer, size_hw
from runtime.atomic import atomic_write
from runtime.classes import REWEIGHTS, TEST_WEIGHTS_STD
from runtime.errors import DannetError
from runtime.turns import in_turn

from .cli import check_outputs, command_parser, provenance

if TYPE_CHECKING:
    from export import ExportSpec
    from runtime.backends import OnnxRuntimeBackend
    from train.data import SegmentationDataset

ARCH = "pspnet"
DEFAULT_BACKBONES = ("resnet18", "efficientnet_lite0", "resnet101")
DEFAULT_BASELINE = "resnet18"
#: too slow for an edge device to be worth timing: its size and FLOPs say enough
DEFAULT_SIZE_ONLY = ("resnet101",)
FLOPS_NOTE = ("GFLOPs: FLOPs = 2 x multiply-accumulates of convolutions, transposed convolutions and matrix "
              "products (PyTorch FlopCounterMode), one frame through relighting + segmentation; not counted: "
              "elementwise ops (normalisation, BatchNorm, activations, adds, biases), pooling, padding, "
              "upsampling, and the tail (re-weighting, resize to the output size, argmax)")
PARAMS_NOTE = "parameters: those the inference forward pass uses (the training-only auxiliary head is left out)"


def backbone_list(text: str) -> list[str]:
    """``--backbones`` / ``--size-only``: comma-separated names, each once (an empty string: none)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated backbone names, each once, got {text!r}")
    return names


def checkpoint_pair(text: str) -> tuple[str, Path]:
    """``--checkpoint BACKBONE=PATH``."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path:
        raise argparse.ArgumentTypeError(f"expected BACKBONE=PATH (e.g. resnet18=runs/r18/final.pth), got {text!r}")
    return name.strip(), Path(path)


def count_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``module`` on ``inputs``, as FlopCounterMode counts them (2 per
    multiply-accumulate of convolutions and matrix products, nothing for other ops). Pass a module and
    inputs on the meta device: shapes alone decide the count, so a 540x960 ResNet-101 costs no compute."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops()


def inference_parameters(module: nn.Module | None, *inputs: torch.Tensor) -> int:
    """Parameters of the modules that one forward pass of ``module`` runs (0 for no module): what a graph
    exported from that forward pass holds. A branch used only in training, such as PSPNet's auxiliary
    head, does not run, so its parameters are not counted. Meta-device inputs cost no compute."""
    if module is None:
        return 0
    ran: set[int] = set()
    # the hooks stay on the module: callers pass a throwaway (meta) copy
    for sub in module.modules():
        sub.register_forward_pre_hook(lambda m, _: ran.add(id(m)))
    with torch.no_grad():
        module(*inputs)
    used = {id(p): p.numel() for m in module.modules() if id(m) in ran for p in m.parameters(recurse=False)}
    return sum(used.values())


@dataclass
class Row:
    """One backbone's figures; ``None`` where it was not measured."""

    backbone: str
    checkpoint: str | None
    params: dict[str, int]
    gflops: dict[str, float]
    latency_ms: dict[str, float] | None = None
    miou: float | None = None
    ratios: dict[str, float | None] = field(default_factory=dict)

    def headline(self) -> dict[str, float | None]:
        """The figures the ratios compare."""
        return {"params": self.params["total"], "gflops": self.gflops["total"],
                "latency": self.latency_ms["median"] if self.latency_ms else None,
                "miou": self.miou}


def size_figures(name: str, checkpoint: Path | None, segmenter: nn.Module, relight: nn.Module | None,
                 size: tuple[int, int]) -> Row:
    """Parameters and GFLOPs of the fused network, counted on a meta-device copy of it."""
    from export.graph import DeploymentModel, replace_adaptive_pooling

    fused = copy.deepcopy(DeploymentModel(segmenter, relight)).to("meta").eval()
    replace_adaptive_pooling(fused)  # as dannet-export does: the PSP pooling as matrix products
    frame = torch.zeros(1, *size, 3, dtype=torch.uint8, device="meta")
    image = torch.zeros(1, 3, *size, device="meta")
    flops = {"segmenter": count_flops(fused.segmenter, image),
             "relight": count_flops(fused.relight, image) if relight is not None else 0,
             "total": count_flops(fused, frame)}
    params = {"segmenter": inference_parameters(fused.segmenter, image),
              "relight": inference_parameters(fused.relight, image)}
    params.update(total=params["segmenter"] + params["relight"],
                  segmenter_training_only=sum(p.numel() for p in segmenter.parameters()) - params["segmenter"])
    return Row(name, str(checkpoint) if checkpoint else None, params, {k: v / 1e9 for k, v in flops.items()})


def load_trained(name: str, path: Path) -> tuple[nn.Module, nn.Module | None]:
    """A checkpoint's networks, refused unless it holds a PSPNet on backbone ``name``."""
    from train.checkpoint import load_checkpoint
    from train.evaluate import load_networks
    from train.models import check_segmenter

    try:
        check_segmenter(ARCH, name)
    except ValueError as e:  # an unknown backbone, or one PSPNet does not take
        raise DannetError(f"--checkpoint {name}={path}: {e}") from None
    ckpt = load_checkpoint(path)
    arch, backbone = ckpt.arch, ckpt.config.get("model", {}).get("backbone")
    if arch not in (None, ARCH) or backbone not in (None, name):
        raise DannetError(f"--checkpoint {name}={path}: holds a {arch or '?'} network on {backbone or '?'}; "
                          f"expected a {ARCH} on {name}")
    segmenter, relight, _, _ = load_networks(str(path), arch=ARCH, backbone=name)
    return segmenter, relight


def build_networks(names: list[str], checkpoints: dict[str, Path]) -> dict[str, tuple[nn.Module, nn.Module | None]]:
    """Each backbone's (segmenter, relighting net): from its checkpoint, else new with random weights."""
    from train.models import RelightNet, build_segmenter

    torch.manual_seed(0)
    networks = {}
    for name in names:
        if name in checkpoints:
            networks[name] = load_trained(name, checkpoints[name])
            continue
        try:
            segmenter = build_segmenter(ARCH, backbone=name)
        except ValueError as e:  # an unknown backbone, or one PSPNet does not take
            raise DannetError(f"--backbones: {e}") from None
        networks[name] = (segmenter.eval(), RelightNet().eval())
    return networks


def night_miou(segmenter: nn.Module, relight: nn.Module | None, night_val: SegmentationDataset, checkpoint: Path,
               weights_std: float, device: torch.device) -> float:
    """mIoU with the test-time class weights of ``weights_std`` from the proportions ``checkpoint``'s run used,
    computed on ``device``; the networks are back on the CPU afterwards, where the export reads them."""
    from train.checkpoint import load_checkpoint
    from train.evaluate import evaluate
    from train.factory import class_weights_of

    weights = class_weights_of(load_checkpoint(checkpoint).config, weights_std)
    networks = [m for m in (segmenter, relight) if m is not None]
    try:
        for m in networks:
            m.to(device)
        return evaluate(segmenter, relight, night_val, torch.from_numpy(weights), device=device).miou
    finally:
        for m in networks:
            m.to("cpu")


def export_graph(segmenter: nn.Module, relight: nn.Module | None, name: str, spec: ExportSpec, folder: Path) -> Path:
    """``dannet-export``'s graph of these networks (through a checkpoint in ``folder``, as a user exports)."""
    from export import to_onnx
    from train.checkpoint import save_checkpoint

    models = {"segmenter": segmenter, **({"light": relight} if relight is not None else {})}
    ckpt = save_checkpoint(folder / f"{name}.pth", models, arch=ARCH, config={"model": {"backbone": name}})
    return to_onnx(ckpt, folder / f"{name}.onnx", spec, say=lambda s: tqdm.write(f"   {name}: {s}", file=sys.stderr))


def onnxruntime_latencies(backends: dict[str, OnnxRuntimeBackend], frame: np.ndarray, warmup: int,
                          iters: int) -> dict[str, dict[str, float]]:
    """Milliseconds per frame through each ONNX Runtime backend: median, min and max of ``iters`` runs. The
    backends take turns, run by run, the first one rotating, so that a machine that gets busier or quieter
    during the measurement (a shared CI machine) weighs on every backbone alike and the ratios stay fair."""
    names = list(backends)
    ms: dict[str, list[float]] = {name: [] for name in names}
    for i in tqdm(range(warmup + iters), desc="   timing (turns)", unit="round", leave=False):
        for name in in_turn(names, i):
            started = time.perf_counter()
            backends[name].infer(frame[None])
            if i >= warmup:
                ms[name].append(1e3 * (time.perf_counter() - started))
    return {name: {"median": float(np.median(t)), "min": float(np.min(t)), "max": float(np.max(t))}
            for name, t in ms.items()}


def add_ratios(rows: list[Row], baseline: str) -> None:
    """Each row's figures over the baseline's (None where either was not measured)."""
    reference = next(row for row in rows if row.backbone == baseline).headline()
    for row in rows:
        row.ratios = {key: value / reference[key] if value is not None and reference[key] else None
                      for key, value in row.headline().items()}


def table(rows: list[Row], baseline: str) -> str:
    """The rows as a text table, columns right-aligned to their widest cell."""
    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    header = ["backbone", "params M: seg", "relight", "total", "GFLOPs: seg", "relight", "total", "ORT ms", "mIoU %",
              f"| x {baseline}: params", "GFLOPs", "ms", "mIoU"]
    lines = [header]
    for row in rows:
        p, g, r = row.params, row.gflops, row.ratios
        lines.append([row.backbone, *(cell(p[k] / 1e6, 2) for k in ("segmenter", "relight", "total")),
                      *(cell(g[k], 1) for k in ("segmenter", "relight", "total")),
                      cell(row.latency_ms["median"] if row.latency_ms else None, 1),
                      cell(None if row.miou is None else 100 * row.miou, 2),
                      *(cell(r[k], 2) for k in ("params", "gflops", "latency", "miou"))])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(line[0].ljust(widths[0])
                     + "".join(f"  {text:>{width}}" for text, width in zip(line[1:], widths[1:])) for line in lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = command_parser("backbones", __doc__)
    parser.add_argument("--backbones", type=backbone_list, default=list(DEFAULT_BACKBONES), metavar="A,B,...",
                        help=f"PSPNet backbones to compare (default: {','.join(DEFAULT_BACKBONES)})")
    parser.add_argument("--baseline", help=f"the backbone every ratio divides by, one of --backbones (default: "
                                           f"{DEFAULT_BASELINE} where listed, else the first)")
    parser.add_argument("--size-only", type=backbone_list, metavar="A,B,...",
                        help="backbones given parameters and GFLOPs only, not timed (default: "
                             f"{','.join(DEFAULT_SIZE_ONLY)} where listed; '' times every backbone)")
    parser.add_argument("--input-size", type=size_hw, default=(540, 960), metavar="HxW",
                        help="network input, height first (default 540x960)")
    parser.add_argument("--output-size", type=size_hw, metavar="HxW",
                        help="labels the timed graph outputs, height first (default: the input size)")
    parser.add_argument("--threads", type=integer(1, 1024), default=len(os.sched_getaffinity(0)),
                        help="ONNX Runtime intra-op threads (default: all cores this process may use)")
    parser.add_argument("--iters", type=integer(1), default=20, help="timed runs per backbone, >= 1 (default 20)")
    parser.add_argument("--warmup", type=integer(0), default=3, help="untimed runs first, >= 0 (default 3)")
    parser.add_argument("--checkpoint", type=checkpoint_pair, action="append", default=[], metavar="BACKBONE=PATH",
                        help="a trained checkpoint of that backbone (repeatable): its networks are measured and "
                             "its night mIoU fills the mIoU column")
    parser.add_argument("--night-root", help="generated night val for the mIoU (a dannet-train synth output)")
    add_device_flag(parser)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    check_outputs(args, ("json",))
    names = set(args.backbones)
    if not names:
        raise DannetError("--backbones: expected at least one backbone name")
    if args.baseline is None:
        args.baseline = DEFAULT_BASELINE if DEFAULT_BASELINE in names else args.backbones[0]
    if args.size_only is None:
        args.size_only = [name for name in DEFAULT_SIZE_ONLY if name in names]
    if args.baseline not in names:
        raise DannetError(f"--baseline {args.baseline}: not one of --backbones ({','.join(args.backbones)})")
    for flag, given in (("--size-only", args.size_only), ("--checkpoint", [name for name, _ in args.checkpoint])):
        for name in given:
            if name not in names:
                raise DannetError(f"{flag} {name}: not one of --backbones ({','.join(args.backbones)})")
    if len({name for name, _ in args.checkpoint}) != len(args.checkpoint):
        raise DannetError("--checkpoint: expected at most one checkpoint per backbone")
    if bool(args.checkpoint) != bool(args.night_root):
        raise DannetError("--checkpoint and --night-root go together: the mIoU is measured on trained checkpoints, "
                          "on the generated night val")
    return args


def versions() -> dict[str, str]:
    found = {"torch": torch.__version__}
    try:
        import onnxruntime
        found["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # a run with every backbone --size-only does without it
        pass
    return found


def main(argv: list[str] | None = None) -> None:
    from export import ExportSpec
    from runtime.backends import OnnxRuntimeBackend
    from train.engine import select_device

    from .compare import night_frames
    from .latency import device_name

    args = parse_args(argv)
    miou_device = select_device(args.device, setting="--device")  # (the latency column is ONNX Runtime's, CPU)
    # every row's tail re-weights alike (the reference's std and mode), whatever its checkpoint's run validated with
    spec = ExportSpec(input_size=args.input_size, output_size=args.output_size or args.input_size,
                      weights_std=TEST_WEIGHTS_STD, reweight=REWEIGHTS[0])
    spec.check(has_relight=True)  # the sizes, before minutes of work
    night_val = None
    if args.night_root:
        from train.data import EvalTransform, build_dataset

        night_val = build_dataset("synthetic", args.night_root, transform=EvalTransform(scale=1.0))
    checkpoints = dict(args.checkpoint)
    networks = build_networks(args.backbones, checkpoints)

    rows = [size_figures(name, checkpoints.get(name), *networks[name], args.input_size) for name in args.backbones]
    for row in rows:
        if row.checkpoint is not None:
            row.miou = night_miou(*networks[row.backbone], night_val, row.checkpoint, spec.weights_std, miou_device)
    timed = [row for row in rows if row.backbone not in args.size_only]
    device = None
    if timed:
        frame = night_frames(1, args.input_size, args.input_size)[0]
        with tempfile.TemporaryDirectory(prefix="dannet-backbones-") as folder, contextlib.ExitStack() as opened:
            backends = {}
            for row in tqdm(timed, desc="export", unit="model"):
                graph = export_graph(*networks[row.backbone], row.backbone, spec, Path(folder))
                backends[row.backbone] = OnnxRuntimeBackend(graph, providers=["CPUExecutionProvider"],
                                                            threads=args.threads)
                opened.callback(backends[row.backbone].close)
            latencies = onnxruntime_latencies(backends, frame, args.warmup, args.iters)
            device = device_name(next(iter(backends.values())))
            for row in timed:
                row.latency_ms = latencies[row.backbone]
    add_ratios(rows, args.baseline)

    (h, w), (oh, ow) = spec.input_size, spec.output_size
    timing = (f"ONNX Runtime on {device}, {args.threads} threads, {oh}x{ow} labels, median of {args.iters} runs after "
              f"{args.warmup} warm-up" if timed else "no latency measured (every backbone is --size-only)")
    print(f"PSPNet backbones with the relighting net at {h}x{w}: parameters, GFLOPs; {timing}; "
          f"ratios: row / {args.baseline}, same run")
    print(table(rows, args.baseline))
    for row in rows:
        if row.checkpoint is not None and row.params["relight"] == 0:
            print(f"note: {row.backbone}: {row.checkpoint} holds no relighting net; measured without one")
    if len({row.params["relight"] for row in rows}) > 1:  # a checkpoint's own, beside the others' default one
        sizes = ", ".join(f"{row.backbone} {row.params['relight'] / 1e6:.2f}M" for row in rows)
        print(f"note: the relighting nets differ ({sizes}): the totals and their ratios count that difference too; "
              "the seg columns compare the backbones alone")
    print(FLOPS_NOTE)
    print(PARAMS_NOTE)
    print(f"mIoU: trained checkpoints on the generated night val ({args.night_root}), PyTorch on {miou_device}"
          if checkpoints else
          "mIoU: not measured (no --checkpoint: the networks have random weights)")
    if args.json:
        result = {"arch": ARCH, "input_size": list(spec.input_size), "output_size": list(spec.output_size),
                  "baseline": args.baseline, "device": device, "threads": args.threads, "iters": args.iters,
                  "warmup": args.warmup, "night_root": args.night_root, "miou_device": str(miou_device),
                  "weights_std": spec.weights_std,
                  "versions": versions(), "flops_note": FLOPS_NOTE, "params_note": PARAMS_NOTE,
                  "rows": [asdict(row) for row in rows]}
        atomic_write(args.json, json.dumps({**provenance(args), **result}, indent=1))


if __name__ == "__main__":
    main()

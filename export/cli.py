"""``dannet-export``: turn a trained DANNet into what the car runs (ONNX graph, TensorRT engine)."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from runtime.arguments import add_network_flags, add_reweighting_flags, integer, number, size_hw
from runtime.backends import DYNAMIC_EXPORT_SIZES
from runtime.errors import Parser, add_debug_flag, command_line, debug_requested, run_command

if TYPE_CHECKING:
    from .onnx_export import ExportSpec


def cmd_onnx(args: argparse.Namespace) -> None:
    from .onnx_export import to_onnx

    to_onnx(args.checkpoint, args.out, spec_of(args, args.tail, args.pack4), light=args.light, arch=args.arch,
            backbone=args.backbone, simplify=not args.no_simplify)


def cmd_pt2(args: argparse.Namespace) -> None:
    from .torch_program import to_torch_program

    to_torch_program(args.checkpoint, args.out, spec_of(args), light=args.light, arch=args.arch,
                     backbone=args.backbone)


def frame_shape(text: str) -> tuple[int, ...]:
    """``--min/--opt/--max-shape``: NxHxWx3, read at parse time so that argparse names the flag in the error."""
    from .engine import EngineError, parse_shape

    try:
        return parse_shape(text)
    except EngineError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_engine(args: argparse.Namespace) -> None:
    from runtime.engine_sidecar import PROFILE_KEYS

    from .engine import EngineError, build_engine

    given = [args.min_shape, args.opt_shape, args.max_shape]
    if any(given) and not all(given):
        raise EngineError("--min-shape, --opt-shape and --max-shape go together")
    shapes = dict(zip(PROFILE_KEYS, given)) if all(given) else None
    build_engine(args.onnx, args.out, plugin_lib=args.plugin_lib, workspace_gb=args.workspace_gb,
                 timing_cache=args.timing_cache, dla_core=args.dla_core, shapes=shapes, rebuild=args.rebuild)


def cmd_int8(args: argparse.Namespace) -> None:
    from .quantize import Int8Spec, to_int8

    keep = None if args.keep_fp32 is None else tuple(filter(None, args.keep_fp32.split(",")))
    spec = Int8Spec(calibration_images=args.calibration_images, eval_images=args.eval_images, method=args.method,
                    per_channel=not args.per_tensor, keep_fp32=keep, max_miou_drop=args.max_miou_drop,
                    target=args.target)
    to_int8(args.onnx, args.out, args.dataset, args.root, spec)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """What to export and how: the flags ``onnx`` and ``pt2`` share."""
    p.add_argument("--checkpoint", required=True, help="our checkpoint, or a released segmentation .pth")
    add_network_flags(p)
    p.add_argument("--input-size", type=size_hw, default=(540, 960), metavar="HxW",
                   help="network input, height first (default 540x960)")
    p.add_argument("--output-size", type=size_hw, default=(1080, 1920), metavar="HxW",
                   help="label map, height first (default 1080x1920)")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="fp16: an FP16-typed graph for strongly typed TensorRT builds (tail in fp32)")
    add_reweighting_flags(p)
    p.add_argument("--half-pixel", action="store_true", help="upsample with align_corners=False (default: True, "
                                                             "as DANNet was evaluated)")
    p.add_argument("--dynamic", action="store_true",
                   help="dynamic batch and H/W (multiples of 4); TensorRT then needs min/opt/max shapes")
    p.add_argument("--confidence", action="store_true",
                   help="a second output 'confidence': per pixel, the winning class's re-weighted softmax "
                        "probability p as a level floor(255 p + 0.5), shaped and typed like the labels")
    add_debug_flag(p)


def spec_of(args: argparse.Namespace, tail: str = "portable", pack4: bool = False) -> "ExportSpec":
    from .onnx_export import ExportSpec

    return ExportSpec(input_size=args.input_size, output_size=args.output_size, tail=tail, precision=args.precision,
                      weights_std=args.weights_std, reweight=args.reweight, align_corners=not args.half_pixel,
                      pack4=pack4, dynamic=args.dynamic, confidence=args.confidence)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dannet-export",
        description="Export a trained DANNet (relighting + segmentation + reweight/upsample/argmax tail) "
                    "to one ONNX graph from camera frame to labels, and build a TensorRT FP16 engine from it.",
        epilog="Exit codes: 0 done, 1 int8: the accuracy gate refused the model, 2 bad flag, checkpoint or graph, "
               "3 int8: bad dataset, 4 output not writable (an existing file is "
               "never left half written), 70 internal error (--debug for the traceback), 130/143 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("onnx", help="one ONNX graph: uint8 NHWC RGB frame in, labels out",
                       description="Input 'frame' (uint8, N x H x W x 3, RGB, at --input-size) -> cast, /255, ImageNet "
                                   "normalisation, NCHW -> relighting R = I + r -> segmentation -> tail -> 'labels' "
                                   "(N x H_out x W_out). Tail 'portable': standard ops, uint8 labels, runs in ONNX "
                                   "Runtime; tail 'plugin': one dannet::ReweightArgmax node for TensorRT, int32 labels "
                                   "(or --pack4: four uint8 labels per int32).")
    add_model_arguments(p)
    p.add_argument("--tail", choices=["portable", "plugin"], default="portable",
                   help="portable: re-weight, upsample and argmax as standard ONNX ops (ONNX Runtime, TensorRT); "
                        "plugin: one dannet::ReweightArgmax node, TensorRT with our plugin only (default portable)")
    p.add_argument("--pack4", action="store_true", help="plugin tail: four uint8 labels per int32 element")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    p.add_argument("--out", required=True, help="output .onnx file")
    p.set_defaults(func=cmd_onnx)

    p = sub.add_parser("pt2", help="a torch.export program for dannet-run --backend torch (the PyTorch reference)",
                       description="The same frame -> labels model as the portable ONNX graph, as a torch.export "
                                   "program (.pt2) with the tail in PyTorch: the runtime's PyTorch backend loads it "
                                   "without the training code.")
    add_model_arguments(p)
    p.add_argument("--out", required=True, help="output .pt2 file")
    p.set_defaults(func=cmd_pt2)

    from .quantize import DEFAULT_KEEP_FP32, KEEP_FP32, METHODS, TARGETS

    p = sub.add_parser("int8", help="INT8 Q/DQ graph (TensorRT and ONNX Runtime, or the CPU only) behind a "
                                    "night-mIoU gate",
                       description="Quantise the fp32 portable-tail graph of dannet-export onnx with ONNX Runtime's "
                                   "static quantisation (QDQ; --target tensorrt: symmetric int8, zero point 0, as "
                                   "TensorRT's explicit quantisation takes it; --target cpu: uint8 activations), "
                                   "calibrated on night images of --dataset; the tail stays fp32. FP32 and INT8 are "
                                   "then evaluated on held-out labelled night images (never the calibration ones); if "
                                   "INT8 loses more than --max-miou-drop points of mIoU, nothing is written and the "
                                   "command fails (exit 1).")
    p.add_argument("--onnx", required=True, help="fp32 portable-tail graph from dannet-export onnx")
    p.add_argument("--dataset", required=True, choices=["darkzurich-val", "synthetic", "acdc-night", "nightdriving"],
                   help="night images: Dark Zurich-style sets calibrate on their unlabelled rgb_anon/train/night "
                        "images (acdc-night: rgb_anon/night/train, labels unused) and evaluate on the labelled val "
                        "ones; nightdriving (no unlabelled split): the first "
                        "half of its images is held out for the gate, calibration on the rest")
    p.add_argument("--root", required=True, help="dataset root folder")
    p.add_argument("--calibration-images", type=integer(1), default=32,
                   help="calibration images, spread over the calibration split (default 32)")
    p.add_argument("--eval-images", type=integer(1), help="held-out labelled images for the gate (default: all; nightdriving: the first half)")
    p.add_argument("--target", choices=TARGETS, default="tensorrt",
                   help="tensorrt (default): symmetric int8 Q/DQ, which TensorRT builds and ONNX Runtime also runs "
                        "(in fp32 on an x86 CPU without VNNI, whose integer kernels saturate on its 8-bit weights); "
                        "cpu: uint8 activations and 7-bit weights, ONNX Runtime's own x86 integer scheme, faster "
                        "there, refused by dannet-export engine")
    p.add_argument("--method", choices=METHODS, default="minmax",
                   help="activation range calibration (default minmax); entropy and percentile hold every activation "
                        "of every calibration image in memory (at 540x960, 16 images needed more than 23 GB)")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    p.add_argument("--keep-fp32", default=None,
                   help=f"comma-separated node groups left fp32 besides the tail: {', '.join(KEEP_FP32)}, or '' "
                        f"(default {','.join(DEFAULT_KEEP_FP32)} where the graph has a relighting net, else none; "
                        "relight groups asked of a graph without one are an error)")
    p.add_argument("--max-miou-drop", type=number(0, 100), default=1.0,
                   help="largest night mIoU loss accepted, in points (default 1.0); FP32's own mIoU must be above "
                        "it, or the gate could not fail and refuses")
    p.add_argument("--out", required=True, help="output .onnx file (left untouched when the gate refuses)")
    add_debug_flag(p)
    p.set_defaults(func=cmd_int8)

    p = sub.add_parser("engine", help="TensorRT engine (strongly typed) + JSON sidecar from an exported graph",
                       description="Build a TensorRT engine from an exported graph on the GPU that will run it "
                                   "(TensorRT 10.x on JetPack 6, or 11.x). Precision follows the graph's types "
                                   "(export with --precision fp16 for an FP16 engine). An up-to-date engine is "
                                   "reused; one built from another ONNX file, TensorRT or GPU, or with other "
                                   "--min/--opt/--max-shape, --dla-core or --workspace-gb, is rebuilt, or refused "
                                   "with --rebuild never.")
    p.add_argument("--onnx", required=True, help="graph from dannet-export onnx")
    p.add_argument("--out", required=True, help="output .engine file (sidecar: OUT.json)")
    p.add_argument("--plugin-lib", help="libdannet_trt_plugins.so (default: $DANNET_PLUGIN_LIB, else the source "
                                        "checkout's build/plugins/ or build/)")
    p.add_argument("--workspace-gb", type=number(0, 1024, low_open=True), help="builder workspace limit in GiB")
    p.add_argument("--timing-cache", help="timing cache file to reuse and update")
    p.add_argument("--dla-core", type=integer(0, 7), help="build for this DLA core (Jetson), with GPU fallback")
    p.add_argument("--min-shape", type=frame_shape, metavar="NxHxWx3",
                   help=f"dynamic graphs only: smallest frames ({DYNAMIC_EXPORT_SIZES})")
    p.add_argument("--opt-shape", type=frame_shape, metavar="NxHxWx3",
                   help="dynamic graphs only: frames to optimise for")
    p.add_argument("--max-shape", type=frame_shape, metavar="NxHxWx3", help="dynamic graphs only: largest frames")
    p.add_argument("--rebuild", choices=["auto", "always", "never"], default="auto")
    add_debug_flag(p)
    p.set_defaults(func=cmd_engine)
    return parser


def main(argv: list[str] | None = None) -> int:
    program = argv is None
    argv = command_line(argv)
    args = build_parser().parse_args(argv)
    return run_command(f"dannet-export {args.command}", lambda: args.func(args), debug_requested(argv), program)


if __name__ == "__main__":
    sys.exit(main())

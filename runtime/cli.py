"""``dannet-run``: segment a camera, stream, video or image folder live and show, save or stream the result."""
from __future__ import annotations

import argparse
import os
import sys

from .arguments import integer, landscape_size_hw, number
from .atomic import check_writable
from .backends import BACKENDS
from .errors import DannetError, DataError, Parser, add_debug_flag, command_line, debug_requested, run_command
from .overlay import MODES
from .sources import CaptureOptions
from .temporal import TEMPORAL_MODES, TemporalOptions


def add_model_arguments(parser: argparse.ArgumentParser, prefix: str = "", required: bool = True,
                        help: str = "the model") -> None:
    """``--{prefix}model`` and ``--{prefix}backend``, as every command that runs an exported model has them."""
    parser.add_argument(f"--{prefix}model", required=required,
                        help=f"{help}: .engine (TensorRT), .onnx with the portable tail (ONNX Runtime) or .pt2 "
                             "(PyTorch; dannet-export pt2)")
    parser.add_argument(f"--{prefix}backend", choices=BACKENDS, default="auto",
                        help="auto: from the model file's type")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dannet-run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run DANNet on a camera, stream, video or image folder and show, save or stream the "
                    "segmentation: TensorRT engines on NVIDIA GPUs, ONNX graphs with ONNX Runtime anywhere.",
        epilog="inputs:   csi://0 (Jetson CSI camera), v4l2:///dev/video0 (USB camera), rtsp://HOST/PATH,\n"
               "          file://clip.mp4 or a path: video, image, image folder, glob ('frames/*.png'),\n"
               "          test:// or test://ball (GStreamer test pattern, live)\n"
               "outputs:  display://0, file://out.mp4 (.mkv .avi .mov), an image folder out/ or pattern\n"
               "          out/%05d.png, rtsp://@:8554/NAME (served here), null://\n"
               "Live inputs drop the oldest frame when inference falls behind; files keep every frame.\n"
               "Confidence (models exported with dannet-export --confidence): per pixel, the winning class's\n"
               "re-weighted softmax probability p as a level floor(255 p + 0.5); --visualize confidence shows it\n"
               "in grey, overlay-confidence darkens the overlay where it is low, --confidence-out writes it.\n"
               "Temporal stability: --temporal hysteresis keeps a pixel's label until a new one was predicted for\n"
               "--temporal-frames K frames in a row (or, with --temporal-confidence P, at confidence >= P); ema\n"
               "averages each pixel's evidence for its label and one challenger (weight 1/K). Both start afresh on a\n"
               "scene cut (--temporal-cut-difference, --temporal-cut), a reconnect or a new size.\n"
               "Several cameras (--input given N times): one capture thread per input, one inference thread. Each\n"
               "step waits for the first frame of any input, then at most --batch-wait-ms for the others, and takes\n"
               "the newest frame of every live input that has one (older ones are dropped) and the next frame of\n"
               "every file; an input with nothing new is skipped, never waited for. A model with a dynamic batch\n"
               "(dannet-export --dynamic, .pt2) infers those frames in one call; a batch-1 model one at a time.\n"
               "A lost input reconnects on its own while the others keep running; one that gives up (--reconnect)\n"
               "ends alone, its output finished, and the run exits 1 once the others end. --output and\n"
               "--confidence-out are given once per input, in the same order (or a single --output null://); no\n"
               "two outputs may share a file, folder or port.\n"
               "Ctrl-C stops cleanly: queued frames go through and the output files are finished (exit 0; 1 if a\n"
               "camera gave up before).\n"
               "An input image that cannot be read is skipped (a warning names it); the others are written.\n"
               "Exit codes: 0 done or stopped, 1 failed while running (input lost for good), 2 bad flag, URI or\n"
               "model, 3 input images skipped as unreadable (the others written; also after a stop), 4 output not\n"
               "writable (e.g. disk full), 130/143 SIGINT/SIGTERM while starting.\n"
               "TensorRT engines with the plugin tail load libdannet_trt_plugins.so from $DANNET_PLUGIN_LIB, else\n"
               "from the source checkout's build/plugins/ or build/.\n\n"
               "example:  dannet-run --model dannet.onnx --input v4l2:///dev/video0 --output display://0")
    add_model_arguments(parser)
    parser.add_argument("--input", required=True, action="append", metavar="URI",
                        help="where frames come from (see below); several times for several cameras")
    parser.add_argument("--output", action="append", metavar="URI",
                        help="where pictures go (default null://); with several --input, one per input in the "
                             "same order, or a single null://")
    parser.add_argument("--visualize", choices=MODES, default="overlay",
                        help="palette over the frame, the palette alone, both side by side; for models exported "
                             "with --confidence: confidence (grey, white = certain) or overlay-confidence (the "
                             "overlay darkened where confidence is low)")
    parser.add_argument("--confidence-out", action="append", metavar="URI",
                        help="also write each frame's confidence levels as 8-bit grey pictures at the model's output "
                             "size, to any output URI (PNG images keep the levels exact; video is lossy); models "
                             "exported with --confidence; with several --input, one per input in the same order")
    parser.add_argument("--alpha", type=number(0, 1), default=0.5, help="overlay opacity in [0, 1] (default 0.5)")
    parser.add_argument("--legend", action="store_true", help="add a panel naming the classes in view")
    parser.add_argument("--stats-json", metavar="FILE", help="write the periodic reports and the summary as JSON lines")
    parser.add_argument("--stats-interval", type=number(0), default=5.0, metavar="S",
                        help="seconds between reports (0: summary only; default 5)")
    add_debug_flag(parser)
    temporal = parser.add_argument_group("temporal stability (see below)")
    temporal.add_argument("--temporal", choices=TEMPORAL_MODES, default="none",
                          help="stabilise the labels from frame to frame (default none)")
    temporal.add_argument("--temporal-frames", type=integer(1, 255), metavar="K",
                          help="hysteresis: frames a new label must persist; ema: weight 1/K of a frame (default "
                               f"{TemporalOptions.frames})")
    temporal.add_argument("--temporal-confidence", type=number(0, 1), metavar="P",
                          help="hysteresis: adopt a new label at once at confidence >= P, in [0, 1] (models "
                               "exported with --confidence)")
    temporal.add_argument("--temporal-cut", type=number(0, 1, low_open=True), metavar="SHARE",
                          help="a scene cut (start afresh): more than SHARE of the pixels predicted other than "
                               f"shown, in (0, 1] (default {TemporalOptions.cut_share:g})")
    temporal.add_argument("--temporal-cut-difference", type=number(0, 255, low_open=True), metavar="LEVELS",
                          help="a scene cut: the frame's mean absolute difference to the previous one above LEVELS, "
                               f"in (0, 255] (default {TemporalOptions.cut_difference:g})")
    capture = parser.add_argument_group("input options")
    capture.add_argument("--input-size", type=landscape_size_hw, metavar="HxW", help="frame size the input delivers, "
                         "height first like every size here, e.g. 720x1280 (cameras: the mode to ask for; files "
                         "and images: scaled)")
    capture.add_argument("--input-rate", type=number(0, 1000, low_open=True), metavar="FPS",
                         help="frame rate the input delivers, in (0, 1000]")
    capture.add_argument("--frames", type=integer(0), default=0, metavar="N",
                         help="stop after N frames (default 0: until the end)")
    capture.add_argument("--loop", type=integer(-1), default=0, metavar="N",
                         help="files and images: play N more times (-1: for ever)")
    capture.add_argument("--reconnect", type=integer(0), default=5, metavar="N",
                         help="live inputs: reconnect attempts after a loss, waiting 1, 2, 4 ... s "
                              "(0: stop cleanly instead; default 5)")
    capture.add_argument("--batch-wait-ms", type=number(0, 1000), default=5.0, metavar="MS",
                         help="several inputs: after the first frame of a step, wait at most MS for the other "
                              "inputs, in [0, 1000] (default 5)")
    capture.add_argument("--queue-size", type=integer(1, 1000), default=2, metavar="N",
                         help="frames waiting between stages, in [1, 1000] (default 2)")
    output = parser.add_argument_group("output options")
    output.add_argument("--codec", choices=["h264", "h265", "mjpeg"], default="h264",
                        help="video files and RTSP (default h264; the hardware encoder where there is one)")
    output.add_argument("--bitrate", type=integer(1, 1_000_000), default=4000, metavar="KBPS",
                        help="kbit/s, in [1, 1000000] (default 4000)")
    return parser


def say(line: str) -> None:
    """Print a report line; if the reader of stdout went away (``| head``), keep running without it."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    program = argv is None  # while the model loads, a signal exits 130/143; then the pipeline takes them over
    argv = command_line(argv)
    args = build_parser().parse_args(argv)
    return run_command("dannet-run", lambda: run_pipeline(args, program), debug_requested(argv), program)


def temporal_options(args: argparse.Namespace) -> TemporalOptions:
    """``--temporal`` and the settings given with it (TemporalOptions' defaults for the others). A setting without
    a stabiliser is refused: it would be ignored, and the user believe the masks stabilised."""
    given = {option: value for option, value in (("frames", args.temporal_frames),
                                                 ("confidence", args.temporal_confidence),
                                                 ("cut_share", args.temporal_cut),
                                                 ("cut_difference", args.temporal_cut_difference)) if value is not None}
    if given and args.temporal == "none":
        flag = {"frames": "--temporal-frames", "confidence": "--temporal-confidence", "cut_share": "--temporal-cut",
                "cut_difference": "--temporal-cut-difference"}[next(iter(given))]
        raise DannetError(f"{flag}: sets the stabiliser, which is off; add --temporal hysteresis or ema")
    return TemporalOptions(args.temporal, **given)


def run_pipeline(args: argparse.Namespace, program: bool) -> None:
    from .pipeline import run

    if args.stats_json:
        check_writable(args.stats_json, "--stats-json")
    outputs, confidence_outs = args.output or ["null://"], args.confidence_out or []
    if len(args.input) > 1:
        return run_cameras(args, outputs, confidence_outs, program)
    for flag, uris in (("--output", outputs), ("--confidence-out", confidence_outs)):
        if len(uris) > 1:
            raise DannetError(f"{flag} given {len(uris)} times for one --input: expected one per input")
    # as the program, the pipeline's signal handlers stay to the end: a late second Ctrl-C or SIGTERM cannot
    # change the exit status the run ended with
    summary = run(
        args.model, args.input[0], outputs[0], backend=args.backend,
        capture=CaptureOptions(args.input_size, args.input_rate), codec=args.codec, bitrate_kbps=args.bitrate,
        confidence_out=confidence_outs[0] if confidence_outs else None, visualize=args.visualize, alpha=args.alpha,
        legend=args.legend, queue_size=args.queue_size, max_frames=args.frames, loop=args.loop,
        reconnect=args.reconnect, stats_interval_s=args.stats_interval, stats_json=args.stats_json, say=say,
        keep_signal_handlers=program, temporal=temporal_options(args))
    check_every_image_read(summary)


def check_every_image_read(summary: dict) -> None:
    """Exit 3 (a data problem) after a run that skipped input images it could not read: the run went on and
    wrote the others, but a script must not take the outputs for complete. Each skipped image was named in a
    warning as it happened."""
    skipped = sum(camera["unreadable"] for camera in summary.get("cameras", [summary]))
    if skipped:
        written = "no frame was written" if summary["written"] == 0 else f"the {summary['written']} others were written"
        raise DataError(f"--input: {skipped} image{'s' if skipped > 1 else ''} could not be read and "
                        f"{'were' if skipped > 1 else 'was'} skipped (named in the warnings above); {written}")


def run_cameras(args: argparse.Namespace, outputs: list[str], confidence_outs: list[str], program: bool) -> None:
    """Several ``--input``: runtime/multicam.py, one output (and one confidence output, if any) per input."""
    from .multicam import run_cameras as run

    summary = run(
        args.model, args.input, outputs, backend=args.backend, capture=CaptureOptions(args.input_size, args.input_rate),
        codec=args.codec, bitrate_kbps=args.bitrate, confidence_outs=confidence_outs,
        batch_wait_s=args.batch_wait_ms / 1000, visualize=args.visualize, alpha=args.alpha, legend=args.legend,
        queue_size=args.queue_size, max_frames=args.frames, loop=args.loop, reconnect=args.reconnect,
        stats_interval_s=args.stats_interval, stats_json=args.stats_json, say=say, keep_signal_handlers=program,
        temporal=temporal_options(args))
    check_every_image_read(summary)


if __name__ == "__main__":
    sys.exit(main())

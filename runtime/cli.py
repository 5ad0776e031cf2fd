"""``dannet-run``: segment a camera, stream, video or image folder live and show, save or stream the result."""
from __future__ import annotations

import argparse
import os
import sys

from .backends import BACKENDS, BackendError
from .gst import MediaError
from .sources import CaptureOptions


def size_wxh(text: str) -> tuple[int, int]:
    """``WxH`` (as cameras are specified) -> (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return h, w


def add_model_arguments(parser: argparse.ArgumentParser, prefix: str = "", required: bool = True,
                        help: str = "the model") -> None:
    """``--{prefix}model`` and ``--{prefix}backend``, as every command that runs an exported model has them."""
    parser.add_argument(f"--{prefix}model", required=required,
                        help=f"{help}: .engine (TensorRT), .onnx with the portable tail (ONNX Runtime) or .pt2 "
                             "(PyTorch; dannet-export pt2)")
    parser.add_argument(f"--{prefix}backend", choices=BACKENDS, default="auto",
                        help="auto: from the model file's type")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dannet-run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run DANNet on a camera, stream, video or image folder and show, save or stream the "
                    "segmentation: TensorRT engines on NVIDIA GPUs, ONNX graphs with ONNX Runtime anywhere.",
        epilog="inputs:   csi://0 (Jetson CSI camera), v4l2:///dev/video0 (USB camera), rtsp://HOST/PATH,\n"
               "          file://clip.mp4 or a path: video, image, image folder, glob ('frames/*.png'),\n"
               "          test:// or test://ball (GStreamer test pattern, live)\n"
               "outputs:  display://0, file://out.mp4 (.mkv .avi .mov), an image folder out/ or pattern\n"
               "          out/%%05d.png, rtsp://@:8554/NAME (served here), null://\n"
               "Live inputs drop the oldest frame when inference falls behind; files keep every frame.\n"
               "Ctrl-C stops cleanly: queued frames go through and the output file is finished (exit 0).\n\n"
               "example:  dannet-run --model dannet.onnx --input v4l2:///dev/video0 --output display://0")
    add_model_arguments(parser)
    parser.add_argument("--input", required=True, metavar="URI", help="where frames come from (see below)")
    parser.add_argument("--output", default="null://", metavar="URI", help="where pictures go (default null://)")
    parser.add_argument("--visualize", choices=["overlay", "mask", "both"], default="overlay",
                        help="palette over the frame, the palette alone, or both side by side")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1] (default 0.5)")
    parser.add_argument("--legend", action="store_true", help="add a panel naming the classes in view")
    parser.add_argument("--stats-json", metavar="FILE", help="write the periodic reports and the summary as JSON lines")
    parser.add_argument("--stats-interval", type=float, default=5.0, metavar="S",
                        help="seconds between reports (0: summary only; default 5)")
    capture = parser.add_argument_group("input options")
    capture.add_argument("--input-size", type=size_wxh, metavar="WxH", help="frame size the input delivers "
                         "(cameras: the mode to ask for; files and images: scaled)")
    capture.add_argument("--input-rate", type=float, metavar="FPS", help="frame rate the input delivers")
    capture.add_argument("--frames", type=int, default=0, help="stop after N frames (default: until the end)")
    capture.add_argument("--loop", type=int, default=0, help="files and images: play N more times (-1: for ever)")
    capture.add_argument("--reconnect", type=int, default=5, metavar="N",
                         help="live inputs: reconnect attempts after a loss, waiting 1, 2, 4 ... s "
                              "(0: stop cleanly instead; default 5)")
    capture.add_argument("--queue-size", type=int, default=2, help="frames waiting between stages (default 2)")
    output = parser.add_argument_group("output options")
    output.add_argument("--codec", choices=["h264", "h265", "mjpeg"], default="h264",
                        help="video files and RTSP (default h264; the hardware encoder where there is one)")
    output.add_argument("--bitrate", type=int, default=4000, metavar="KBPS", help="kbit/s (default 4000)")
    return parser


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha: expected a value in [0, 1], got {args.alpha}")
    for flag, value, low in (("--frames", args.frames, 0), ("--loop", args.loop, -1), ("--reconnect", args.reconnect, 0),
                             ("--queue-size", args.queue_size, 1), ("--bitrate", args.bitrate, 1),
                             ("--stats-interval", args.stats_interval, 0)):
        if value < low:
            parser.error(f"{flag}: expected at least {low}, got {value}")
    if args.input_rate is not None and args.input_rate <= 0:
        parser.error(f"--input-rate: expected frames per second > 0, got {args.input_rate}")


def say(line: str) -> None:
    """Print a report line; if the reader of stdout went away (``| head``), keep running without it."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check(parser, args)
    from .pipeline import run

    try:
        run(args.model, args.input, args.output, backend=args.backend,
            capture=CaptureOptions(args.input_size, args.input_rate), codec=args.codec, bitrate_kbps=args.bitrate,
            visualize=args.visualize, alpha=args.alpha, legend=args.legend, queue_size=args.queue_size, max_frames=args.frames,
            loop=args.loop, reconnect=args.reconnect, stats_interval_s=args.stats_interval, stats_json=args.stats_json,
            say=say)
    except (MediaError, BackendError) as e:
        print(f"dannet-run: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # --stats-json or an image output that cannot be written
        print(f"dannet-run: {e.filename}: {e.strerror}" if e.filename else f"dannet-run: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``dannet-run``: segment a camera stream or video live (GStreamer + TensorRT / ONNX Runtime)."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dannet-run",
        description="Run DANNet on a camera, video, image folder or RTSP stream and show, save or stream "
                    "the segmentation overlay; TensorRT on NVIDIA GPUs, ONNX Runtime elsewhere.",
        epilog="No run option is available in this version yet.",
    )
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

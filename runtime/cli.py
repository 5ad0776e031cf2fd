"""``dannet-run``: segment a camera stream or video live (GStreamer + TensorRT / ONNX Runtime)."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="dannet-run",
        description="Run DANNet on a camera, video, image folder or RTSP stream and show, save or stream "
                    "the segmentation overlay; TensorRT on NVIDIA GPUs, ONNX Runtime elsewhere.",
        epilog="The camera pipeline is not part of this version yet: run exported graphs with ONNX Runtime "
               "(see benchmarks/demo.py) or TensorRT directly.",
    )


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("dannet-run: the camera pipeline is not part of this version yet (see --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

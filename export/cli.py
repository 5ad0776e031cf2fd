"""``dannet-export``: turn a trained DANNet into what the car runs (ONNX graph, TensorRT engine)."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dannet-export",
        description="Export a trained DANNet (relighting + segmentation + reweight/upsample/argmax tail) "
                    "to one ONNX graph from camera frame to labels, and build a TensorRT FP16 engine from it.",
        epilog="No export subcommand is available in this version yet.",
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

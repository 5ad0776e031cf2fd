"""``dannet-bench``: latency and mIoU of DANNet Edge against the reference implementation.

Each subcommand lives in its own module with its own argument parser (``dannet-bench NAME --help``).
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module in this package, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "latency": ("latency", "per-stage latency (preprocess, inference, postprocess, overlay) and throughput"),
    "compare": ("compare", "reference inference loop vs our runtime path: latency, speed-up, label agreement, plot"),
    "miou": ("miou", "mIoU and per-class IoU of an exported model through the runtime; two models: delta"),
    "sweep": ("sweep", "mIoU over the test-time class-weight std (paper Fig. 7), table + plot"),
    "submission": ("submission", "Dark Zurich test submission zip (labelTrainIds, labelTrainIds_invalid, "
                                 "uint16 confidence)"),
    "kernel": ("kernel_bench", "(GPU) the ReweightArgmax kernel vs PyTorch interpolate+mul+argmax: time, GB/s"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dannet-bench",
        description="Measure per-stage latency, throughput and mIoU per backend and dataset, "
                    "side by side with the DANNet reference inference loop.",
        epilog="dannet-bench COMMAND --help explains each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, add_help=False, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in COMMANDS:
        importlib.import_module(f"benchmarks.{COMMANDS[argv[0]][0]}").main(argv[1:])
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``dannet-bench``: latency and mIoU of DANNet Edge against the reference implementation."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dannet-bench",
        description="Measure per-stage latency, throughput and mIoU per backend and dataset, "
                    "side by side with the DANNet reference inference loop.",
        epilog="No benchmark subcommand is available in this version yet.",
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

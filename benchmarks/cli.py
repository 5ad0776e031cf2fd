"""``dannet-bench``: latency and mIoU of DANNet Edge against the reference implementation."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dannet-bench",
        description="Measure per-stage latency, throughput and mIoU per backend and dataset, "
                    "side by side with the DANNet reference inference loop.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("kernel", add_help=False,
                   help="(GPU) the ReweightArgmax kernel vs PyTorch interpolate+mul+argmax: time, GB/s, speed-up")
    sub.add_parser("latency", add_help=False,
                   help="per-stage latency (preprocess, inference, postprocess, overlay) and throughput")
    sub.add_parser("miou", add_help=False,
                   help="mIoU and per-class IoU of an exported model through the runtime; two models: delta")
    sub.add_parser("sweep", add_help=False,
                   help="mIoU over the test-time class-weight std (paper Fig. 7), table + plot")
    sub.add_parser("submission", add_help=False,
                   help="Dark Zurich test submission zip (labelTrainIds, labelTrainIds_invalid, uint16 confidence)")
    sub.add_parser("compare", add_help=False,
                   help="reference inference loop vs the exported graph: latency, speed-up, label agreement, plot")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv[:1] == ["kernel"]:
        from .kernel_bench import main as kernel_main

        kernel_main(argv[1:])
        return 0
    if argv[:1] == ["latency"]:
        from .latency import main as latency_main

        latency_main(argv[1:])
        return 0
    if argv[:1] == ["miou"]:
        from .miou import main as miou_main

        miou_main(argv[1:])
        return 0
    if argv[:1] == ["sweep"]:
        from .sweep import main as sweep_main

        sweep_main(argv[1:])
        return 0
    if argv[:1] == ["submission"]:
        from .submission import main as submission_main

        submission_main(argv[1:])
        return 0
    if argv[:1] == ["compare"]:
        from .compare import main as compare_main

        compare_main(argv[1:])
        return 0
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

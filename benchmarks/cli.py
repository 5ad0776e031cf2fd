"""``dannet-bench``: latency and mIoU of DANNet Edge against the reference implementation.

Each subcommand lives in its own module with its own argument parser (``dannet-bench NAME --help``);
all of them report errors through ``runtime.errors`` (one line, documented exit codes).
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import shlex
import sys
from datetime import datetime
from pathlib import Path

from runtime.atomic import check_writable
from runtime.errors import Parser, add_debug_flag, command_line, debug_requested, run_command, without_leading_debug

#: subcommand -> (module in this package, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "latency": ("latency", "per-stage latency (preprocess, inference, postprocess, overlay) and throughput"),
    "compare": ("compare", "reference inference loop vs our runtime path: latency, speed-up, label agreement, plot"),
    "miou": ("miou", "mIoU and per-class IoU of an exported model through the runtime; two models: delta"),
    "reliability": ("reliability", "does the confidence output predict errors? error rate per confidence bin, ECE, "
                                   "AUROC, reliability diagram"),
    "flicker": ("flicker", "label flicker and mIoU on the generated night drive, with and without each temporal "
                           "stabiliser (dannet-run --temporal), and each stabiliser's cost per frame"),
    "multicam": ("multicam", "several live test:// cameras through one model (dannet-run --input A --input B): total "
                             "and per-camera frames/s and latency, batched vs one at a time"),
    "soak": ("soak", "live test:// cameras through dannet-run's pipeline for many frames: memory over time, drops, "
                     "throughput against bare inference"),
    "confidence-cost": ("confidence_cost", "what the confidence output costs in ONNX Runtime: one checkpoint "
                                           "exported with and without it, timed alternately"),
    "sweep": ("sweep", "mIoU over the test-time class-weight std (paper Fig. 7), table + plot"),
    "submission": ("submission", "Dark Zurich test submission zip (labelTrainIds, labelTrainIds_invalid, "
                                 "uint16 confidence)"),
    "kernel": ("kernel_bench", "(GPU) the ReweightArgmax kernel vs PyTorch interpolate+mul+argmax: time, GB/s, "
                                 "what the confidence output costs"),
    "backbones": ("backbones", "PSPNet backbones for deployment: parameters, GFLOPs, ONNX Runtime CPU latency, "
                               "night mIoU, ratios to a baseline"),
}


class CommandParser(Parser):
    """A subcommand's parser that keeps the command line it parsed (``args.command_line``), for ``provenance``."""

    def parse_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201: argparse's signature
        words = sys.argv[1:] if args is None else list(args)
        parsed = super().parse_args(words, namespace)
        parsed.command_line = shlex.join([*self.prog.split(), *words])
        return parsed


def command_parser(name: str, doc: str | None) -> CommandParser:
    """The argument parser of subcommand ``name``, with the one-line errors and ``--debug`` every command has."""
    parser = CommandParser(prog=f"dannet-bench {name}", description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_flag(parser)
    return parser


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the architecture where it does not say."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (info.read_text().splitlines() if info.exists() else [])
             if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def provenance(args: argparse.Namespace) -> dict[str, object]:
    """What every result file opens with, so that a figure in BENCHMARKS.md can be traced and rerun: when
    (local time with its offset), the command that made it, and the machine."""
    return {"date": datetime.now().astimezone().isoformat(timespec="seconds"), "command": args.command_line,
            "machine": {"host": platform.node(), "cpu": cpu_name(), "cores": os.cpu_count(),
                        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                        "platform": platform.platform(), "python": platform.python_version()}}


def check_outputs(args: argparse.Namespace, flags: tuple[str, ...] = ("json", "plot")) -> None:
    """Files the command will write, checked before the work (a read-only folder found after minutes of it
    is minutes lost)."""
    for flag in flags:
        if getattr(args, flag, None):
            check_writable(getattr(args, flag), f"--{flag.replace('_', '-')}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dannet-bench",
        description="Measure per-stage latency, throughput and mIoU per backend and dataset, "
                    "side by side with the DANNet reference inference loop.",
        epilog="dannet-bench COMMAND --help explains each command. Exit codes: 0 done, 2 bad flag, model or "
               "checkpoint, 3 bad dataset file, 4 output not writable, 70 internal error (--debug for the "
               "traceback), 130/143 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, add_help=False, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    program = argv is None
    argv = command_line(argv)
    words = without_leading_debug(argv)  # --debug before the subcommand: run_command reads it from argv
    if words and words[0] in COMMANDS:
        name = words[0]

        def command() -> None:
            importlib.import_module(f"benchmarks.{COMMANDS[name][0]}").main(words[1:])

        return run_command(f"dannet-bench {name}", command, debug_requested(argv), program)
    build_parser().parse_args(argv)  # --help, or a one-line error: no command, or not one of COMMANDS
    return 0


if __name__ == "__main__":
    sys.exit(main())

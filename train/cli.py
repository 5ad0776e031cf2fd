"""``dannet-train``: the training job's command line (one subcommand per task)."""
from __future__ import annotations

import argparse
import sys

from .checkpoint import CheckpointError, load_checkpoint


def cmd_info(args: argparse.Namespace) -> None:
    ckpt = load_checkpoint(args.checkpoint)
    kind = "released state dict" if ckpt.released else f"dannet-edge checkpoint, iteration {ckpt.iteration}"
    print(f"{ckpt.path}: {kind}" + (f", arch {ckpt.arch}" if ckpt.arch else ""))
    for role, sd in ckpt.models.items():
        params = sum(v.numel() for k, v in sd.items() if v.is_floating_point() and "running_" not in k)
        print(f"  {role:<13} {len(sd):4d} tensors  {params:>12,d} values")
    if ckpt.optimizers:
        print(f"  optimisers: {', '.join(ckpt.optimizers)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dannet-train",
        description="Train DANNet: datasets, Cityscapes pre-training, one-stage day->night adaptation, evaluation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="describe a checkpoint (ours or a released DANNet .pth)",
                       description="Print what a checkpoint holds: format, architecture, networks, iteration.")
    p.add_argument("checkpoint", help="path to a .pth file")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"dannet-train {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

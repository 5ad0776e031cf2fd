"""``dannet-train``: the training job's command line (one subcommand per task)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint


def size_hw(text: str) -> tuple[int, int]:
    """argparse type for ``HxW`` sizes (e.g. ``540x960``)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 256x512), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"expected positive HxW, got {text!r}")
    return h, w


def cmd_synth(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .data.synth import LAYOUTS, generate, images_written

    layouts = LAYOUTS if args.layout == "all" else (args.layout,)
    total = sum(images_written(layout, args.count) for layout in layouts)
    with tqdm(total=total, unit="img", desc="synth", disable=args.quiet) as bar:
        for layout in layouts:
            bar.set_postfix_str(layout)
            generate(Path(args.out) / layout, layout, args.count, args.size, args.seed, progress=bar.update)
    print(f"wrote {total} images under {args.out}/{{{','.join(layouts)}}}")


def cmd_preview(args: argparse.Namespace) -> None:
    from .data import (DarkZurichPairs, EvalTransform, PairTransform, SegmentationDataset, TrainTransform,
                       build_dataset, cityscapes_samples)
    from .data.preview import preview_grid
    from .data.synth import PAIRS_CSV

    root = Path(args.root)
    if args.dataset == "darkzurich-pairs":
        dataset = DarkZurichPairs(root, Path(args.pairs or root / PAIRS_CSV),
                                  PairTransform(crop=args.crop, scale=(0.9, 1.1), resize_to=args.resize))
    elif args.dataset == "cityscapes-train":
        dataset = SegmentationDataset(cityscapes_samples(root, "train"), TrainTransform(crop=(args.crop, args.crop)))
    else:
        dataset = build_dataset(args.dataset, root, transform=EvalTransform(scale=1.0))
    items = [dataset[i] for i in range(min(args.count, len(dataset)))]
    print(f"{args.dataset}: {len(dataset)} samples; preview of {len(items)} -> {preview_grid(items, args.out)}")


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

    p = sub.add_parser(
        "synth", help="generate procedural day/night street scenes in the real datasets' layouts",
        description="Generate procedural street scenes (all 19 Cityscapes classes) written in the layouts of "
                    "Cityscapes (overcast day, labelIds), Dark Zurich (sunny day / night pairs + pairs CSV, night "
                    "val with labelTrainIds and invIds, test), Nighttime Driving (night, coarse labels) and ACDC "
                    "night. Night images have low light, colour cast, lamps, headlights, glare and noise; a pair is "
                    "coarsely misaligned and its traffic differs. --count is the number of training images; val "
                    "and test sets get max(2, count/4). Deterministic per --seed.")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per layout)")
    p.add_argument("--layout", default="all", choices=["cityscapes", "darkzurich", "nightdriving", "acdc", "all"])
    p.add_argument("--count", type=int, default=40, help="training images per layout (default 40)")
    p.add_argument("--size", type=size_hw, default=(256, 512), help="image size HxW (default 256x512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    from .data import DATASETS

    p = sub.add_parser(
        "preview", help="write a PNG grid of samples as a loader produces them",
        description="Load a few samples through a dataset loader and write them as a PNG grid: image and "
                    "colourised label (invalid pixels grey), or night | day for training pairs.",
        epilog="datasets: " + "; ".join(f"{k}: {v}" for k, v in DATASETS.items()) +
               "; darkzurich-pairs: training night/day pairs; cityscapes-train: Cityscapes train with augmentation")
    p.add_argument("--dataset", required=True, choices=[*DATASETS, "darkzurich-pairs", "cityscapes-train"])
    p.add_argument("--root", required=True, help="dataset root folder (as distributed, or a synth layout folder)")
    p.add_argument("--out", default="preview.png", help="output PNG (default preview.png)")
    p.add_argument("--count", type=int, default=4, help="samples to show (default 4)")
    p.add_argument("--pairs", help="pairs CSV for darkzurich-pairs (default ROOT/zurich_dn_pair_train.csv)")
    p.add_argument("--crop", type=int, default=512, help="training crop size for the augmented previews (default 512)")
    p.add_argument("--resize", type=int, default=None, help="resize pair crops to this size (reference: 512)")
    p.set_defaults(func=cmd_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CheckpointError, FileNotFoundError, ValueError) as e:  # DatasetError is a ValueError
        print(f"dannet-train {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

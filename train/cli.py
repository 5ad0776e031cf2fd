"""``dannet-train``: the training job's command line (one subcommand per task)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.arguments import add_device_flag, add_network_flags, add_reweighting_flags, integer, number, size_hw
from runtime.atomic import atomic_write, check_writable
from runtime.errors import Parser, add_debug_flag, command_line, debug_requested, run_command

from .checkpoint import load_checkpoint
from .data import DATASETS, LABELLED_DATASETS


def _train(args: argparse.Namespace, job: str) -> int:
    import torch.distributed as dist

    from .config import load_config
    from .engine import latest_checkpoint, record_config, resume, run, seed_everything, setup_env, start_iteration
    from .factory import resolve_class_proportions

    out = Path(args.out)
    config_source = args.config or (str(out / "config.yaml") if args.resume and (out / "config.yaml").is_file()
                                    else "reference")
    config = load_config(config_source, args.set)
    env = setup_env(config["run"]["device"])
    try:
        recorded = load_config(str(out / "config.yaml")) if args.resume and (out / "config.yaml").is_file() else None
        config = resolve_class_proportions(config, recorded, say=print if env.is_main else lambda _: None,
                                           progress=env.is_main)
        start = start_iteration(out, args.resume)
        seed_everything(config["run"]["seed"], env.rank)
        if job == "pretrain":
            from .pretrain import PretrainTask as Task
            iterations = config["pretrain"]["iterations"]
        else:
            from .dannet import DANNetTask as Task
            iterations = config["optim"]["iterations"]
        task = Task(config, env, [] if args.resume else args.init, start)
        record_config(out, config, env)
        best, trained_s = resume(task, latest_checkpoint(out), env) if args.resume else (None, 0.0)
        if env.is_main:
            where = f"resuming at iteration {start}" if args.resume else "starting"
            print(f"{job}: {config['model']['arch']} ({config['model']['backbone']}) on {env.device}"
                  f"{f' x {env.world_size} processes' if env.distributed else ''}, {where}, {iterations} iterations, "
                  f"config {config_source}, output {out}")
            for line in task.loaded:
                print(f"  init {line}")
            if not args.resume and not any(line.startswith("segmenter") for line in task.loaded):
                start_from = "imagenet[:PATH] (ImageNet weights)" if job == "pretrain" else \
                    "a pretrain run's final.pth (DANNet adapts a model trained on the source)"
                print(f"  note: the segmentation net starts from random weights; --init {start_from}")
        return run(task, config, out, env, start, iterations, best, trained_s)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def cmd_pretrain(args: argparse.Namespace) -> int:
    return _train(args, "pretrain")


def cmd_adapt(args: argparse.Namespace) -> int:
    return _train(args, "adapt")


def cmd_precision(args: argparse.Namespace) -> None:
    import json

    from .config import load_config
    from .engine import select_device
    from .factory import resolve_class_proportions
    from .precision import drift, table

    config = resolve_class_proportions(load_config(args.config, args.set))
    amps = tuple(args.amp or ("bf16", "fp16"))
    print(f"autocast drift against fp32: {config['model']['arch']} ({config['model']['backbone']}), config "
          f"{args.config}, {args.steps} steps, on {select_device(config['run']['device'])}; relative differences")
    if args.json:
        check_writable(args.json, "--json")
    rows = drift(config, args.steps, amps, args.init)
    print(table(rows))
    if args.json:
        atomic_write(args.json, json.dumps(rows, indent=1))


def cmd_eval(args: argparse.Namespace) -> None:
    import json

    import torch

    from .data import EvalTransform, build_dataset
    from .engine import select_device
    from .evaluate import evaluate, networks_of, recorded_reweighting, weights_std_setting
    from .factory import class_weights_of

    if args.json:
        check_writable(args.json, "--json")
    device = select_device(args.device, setting="--device")
    ckpt = load_checkpoint(args.checkpoint)
    segmenter, light, arch, backbone = networks_of(ckpt, args.light, args.arch, args.backbone)
    weights_std, reweight = recorded_reweighting(ckpt, args.weights_std, args.reweight)
    weights = torch.from_numpy(class_weights_of(ckpt.config, weights_std, weights_std_setting(args.weights_std)))
    segmenter.to(device)
    if light is not None:
        light.to(device)
    dataset = build_dataset(args.dataset, args.root, transform=EvalTransform(scale=args.scale))
    scored = f"{len(dataset)} images" if args.max_images is None or args.max_images >= len(dataset) else \
        f"the first {args.max_images} of {len(dataset)} images"
    print(f"evaluating {args.checkpoint} ({arch}, {backbone}{', with relighting' if light else ', no relighting net'}) "
          f"on {args.dataset}: {scored}, input scale {args.scale}, weights std {weights_std}, reweight {reweight}")
    meter = evaluate(segmenter, light, dataset, weights, reweight, device, args.max_images)
    print(meter.table())
    if args.json:
        atomic_write(args.json, json.dumps({"miou": meter.miou, "iou": [None if v != v else v for v in meter.iou],
                                               "checkpoint": str(args.checkpoint), "dataset": args.dataset,
                                               "weights_std": weights_std, "reweight": reweight}, indent=1))


def cmd_synth(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .data.synth import LAYOUTS, check_new, check_size, generate, images_written

    check_size(args.size)
    layouts = LAYOUTS if args.layout == "all" else (args.layout,)
    for layout in layouts:
        check_new(Path(args.out) / layout)
    total = sum(images_written(layout, args.count) for layout in layouts)
    with tqdm(total=total, unit="img", desc="synth", disable=args.quiet) as bar:
        for layout in layouts:
            bar.set_postfix_str(layout)
            generate(Path(args.out) / layout, layout, args.count, args.size, args.seed, progress=bar.update)
    print(f"wrote {total} images under {args.out}/{{{','.join(layouts)}}}")


def cmd_preview(args: argparse.Namespace) -> None:
    from .data import (DarkZurichPairs, EvalTransform, PairTransform, SegmentationDataset, TrainTransform,
                       build_dataset, cityscapes_samples, pairs_csv_path)
    from .data.preview import preview_grid
    from .data.synth import PAIRS_CSV

    root = Path(args.root)
    if args.dataset == "darkzurich-pairs":
        dataset = DarkZurichPairs(root, pairs_csv_path(root, args.pairs or PAIRS_CSV),
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
    parser = Parser(
        prog="dannet-train",
        description="Train DANNet: datasets, Cityscapes pre-training, one-stage day->night adaptation, evaluation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="describe a checkpoint (ours or a released DANNet .pth)",
                       description="Print what a checkpoint holds: format, architecture, networks, iteration.")
    p.add_argument("checkpoint", help="path to a .pth file")
    add_debug_flag(p)
    p.set_defaults(func=cmd_info)

    from .config import PRESETS

    for job, help_text, description in (
        ("pretrain", "source-only training on Cityscapes (the initialisation of DANNet)",
         "Train the segmentation net on labelled Cityscapes with class-weighted cross entropy and SGD + poly "
         "learning rate: the network DANNet's adaptation starts from. Uses model, data.source, pretrain, optim "
         "and run of the config."),
        ("adapt", "one-stage DANNet adaptation day -> night",
         "DANNet (Wu et al., CVPR 2021): relighting net + segmentation net trained adversarially on labelled "
         "Cityscapes and unlabelled Dark Zurich day/night pairs (light, segmentation, static and adversarial "
         "losses), two discriminators trained alternately. Start from a pre-trained segmentation net with --init.")):
        p = sub.add_parser(job, help=help_text, description=description,
                           epilog=f"presets: {', '.join(PRESETS)} (reference = the released code, the default; "
                                  "paper = the paper's text). Multi-GPU: torchrun --nproc-per-node N "
                                  f"-m train.cli {job} ... Exit codes: 0 done, 130/143 interrupted by "
                                  "SIGINT/SIGTERM (checkpoint saved), 1 stopped (e.g. NaN loss), 2 bad flag, config "
                                  "or checkpoint, 3 bad dataset file, 4 output not writable.")
        p.add_argument("--config", default=None,
                       help="preset name or YAML file (default: reference, or OUT/config.yaml with --resume)")
        p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, config.yaml")
        p.add_argument("--init", action="append", default=[], metavar="CKPT",
                       help="initial weights: our checkpoint or a released .pth (repeatable, e.g. segmentation "
                            "+ relighting files); imagenet:PATH fills the backbone from an ImageNet file "
                            "(torchvision ResNet, DeepLab-v2 'Scale.' ResNet, EfficientNet-Lite0), plain "
                            "imagenet takes the EfficientNet-Lite0 weights of the 'imagenet' extra")
        p.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint in --out")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, dotted keys, YAML values (e.g. --set optim.iterations=1000)")
        add_debug_flag(p)
        p.set_defaults(func=cmd_pretrain if job == "pretrain" else cmd_adapt)

    p = sub.add_parser(
        "precision", help="measure how far bf16/fp16 autocast training drifts from fp32",
        description="Run the first --steps DANNet adaptation steps in fp32 and with autocast (same seed, weights, "
                    "batches and dropout masks) and print, per step, the relative difference of every loss term "
                    "and of the gradients each optimiser applied. Uses the config's data and device.")
    p.add_argument("--config", default="reference", help="preset name or YAML file (default: reference)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--init", action="append", default=[], metavar="CKPT",
                   help="initial weights, as for adapt (repeatable); measure from a trained network")
    p.add_argument("--steps", type=integer(1), default=10, help="steps to compare, >= 1 (default 10)")
    p.add_argument("--amp", action="append", choices=["bf16", "fp16"],
                   help="autocast type to compare (repeatable; default both)")
    p.add_argument("--json", help="also write the rows as JSON here")
    add_debug_flag(p)
    p.set_defaults(func=cmd_precision)

    p = sub.add_parser("eval", help="mIoU and per-class IoU of a checkpoint on a night set",
                       description="Evaluate a checkpoint (ours, or released DANNet files) on a labelled dataset "
                                   "with DANNet's test-time inference: relight, segment, re-weight by the class "
                                   "weights, bilinear upsampling to the label resolution, argmax.")
    p.add_argument("--checkpoint", required=True, help="our checkpoint or a released segmentation .pth")
    add_network_flags(p)
    p.add_argument("--dataset", required=True, choices=LABELLED_DATASETS)
    p.add_argument("--root", required=True, help="dataset root folder")
    add_reweighting_flags(p)
    p.add_argument("--scale", type=number(0, 4, low_open=True), default=0.5,
                   help="network input = image size x scale, in (0, 4] (default 0.5)")
    p.add_argument("--max-images", type=integer(1), default=None, help="evaluate the first N images only")
    add_device_flag(p)
    p.add_argument("--json", help="also write the results as JSON here")
    add_debug_flag(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "synth", help="generate procedural day/night street scenes in the real datasets' layouts",
        description="Generate procedural street scenes (all 19 Cityscapes classes) written in the layouts of "
                    "Cityscapes (overcast day, labelIds), Dark Zurich (sunny day / night pairs + pairs CSV, night "
                    "val with labelTrainIds and invIds, test), Nighttime Driving (night, coarse labels) and ACDC "
                    "night. Night images have low light, colour cast, lamps, headlights, glare and noise; a pair is "
                    "coarsely misaligned and its traffic differs. --count is the number of training images; val "
                    "and test sets get max(2, count/4). Deterministic per --seed.")
    p.add_argument("--out", required=True, help="output folder, one sub-folder per layout, each new or empty (a "
                                                "layout's folder appears only once its set is complete)")
    p.add_argument("--layout", default="all", choices=["cityscapes", "darkzurich", "nightdriving", "acdc", "all"])
    p.add_argument("--count", type=integer(1), default=40, help="training images per layout, >= 1 (default 40)")
    p.add_argument("--size", type=size_hw, default=(256, 512), metavar="HxW",
                   help="image size, height first, at least 32x32 (default 256x512)")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_flag(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "preview", help="write a PNG grid of samples as a loader produces them",
        description="Load a few samples through a dataset loader and write them as a PNG grid: image and "
                    "colourised label (invalid pixels grey), or night | day for training pairs.",
        epilog="datasets: " + "; ".join(f"{k}: {v}" for k, v in DATASETS.items()) +
               "; darkzurich-pairs: training night/day pairs; cityscapes-train: Cityscapes train with augmentation")
    p.add_argument("--dataset", required=True, choices=[*DATASETS, "darkzurich-pairs", "cityscapes-train"])
    p.add_argument("--root", required=True, help="dataset root folder (as distributed, or a synth layout folder)")
    p.add_argument("--out", default="preview.png", help="output PNG (default preview.png)")
    p.add_argument("--count", type=integer(1, 64), default=4, help="samples to show, in [1, 64] (default 4)")
    p.add_argument("--pairs", help="pairs CSV for darkzurich-pairs: relative to --root (as data.target.pairs in "
                                   "training) or absolute (default zurich_dn_pair_train.csv)")
    p.add_argument("--crop", type=integer(8), default=512,
                   help="training crop size for the augmented previews, >= 8 (default 512)")
    p.add_argument("--resize", type=integer(8), default=None, help="resize pair crops to this size (reference: 512)")
    add_debug_flag(p)
    p.set_defaults(func=cmd_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    program = argv is None
    argv = command_line(argv)
    args = build_parser().parse_args(argv)
    return run_command(f"dannet-train {args.command}", lambda: args.func(args), debug_requested(argv), program)


if __name__ == "__main__":
    sys.exit(main())

"""``dannet-bench sweep``: mIoU over the test-time class-weight std (paper Fig. 7), to pick it for a dataset.

The logits of each image are computed once (PyTorch, the checkpoint), then re-weighted with every
std (0 = no re-weighting) the way the checkpoint's run validated (``eval.reweight``: logits or the paper's
probabilities; ``--reweight`` to choose), upsampled and scored with ``train.metrics``. Prints a table, writes
JSON and a plot; use the best std with ``dannet-export onnx --weights-std``.
"""
from __future__ import annotations

import argparse
import json
import math

import torch
from tqdm import tqdm

from runtime.arguments import add_device_flag, add_network_flags, integer, number
from runtime.atomic import atomic_write
from runtime.classes import MAX_WEIGHTS_STD, REWEIGHTS

from .cli import check_outputs, command_parser, provenance


#: the stds a sweep tries unless --stds says (DANNet's 0.16 among them)
DEFAULT_STDS = "0,0.02,0.05,0.08,0.12,0.16,0.2,0.25,0.3"


def stds_list(text: str) -> list[float]:
    """``--stds``: comma-separated stds in [0, MAX_WEIGHTS_STD]."""
    try:
        stds = [float(v) for v in text.split(",")]
    except ValueError:
        stds = [math.nan]
    if not all(math.isfinite(s) and 0 <= s <= MAX_WEIGHTS_STD for s in stds):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, {MAX_WEIGHTS_STD}], got {text!r}")
    return stds


def main(argv: list[str] | None = None) -> None:
    from train.checkpoint import load_checkpoint
    from train.data import DATASETS, EvalTransform, build_dataset
    from train.engine import select_device
    from train.evaluate import networks_of, recorded_reweighting, reweight_upsample_argmax
    from train.factory import class_weights_of, weights_std_limit
    from train.metrics import ConfusionMeter

    parser = command_parser("sweep", __doc__)
    parser.add_argument("--checkpoint", required=True)
    add_network_flags(parser)
    parser.add_argument("--dataset", required=True, choices=[d for d in DATASETS if d != "darkzurich-test"])
    parser.add_argument("--root", required=True)
    parser.add_argument("--scale", type=number(0, 4, low_open=True), default=0.5,
                        help="network input = image size x scale, in (0, 4] (default 0.5)")
    parser.add_argument("--stds", type=stds_list, default=None,
                        help=f"comma-separated stds in [0, {MAX_WEIGHTS_STD}]; 0 = no re-weighting (default "
                             f"{DEFAULT_STDS}, those below the std at which the run's class proportions give a "
                             "class a weight <= 0)")
    parser.add_argument("--reweight", choices=REWEIGHTS, default=None,
                        help="multiply logits (reference code) or probabilities (paper) (default: eval.reweight of "
                             "the checkpoint's run, logits for released files)")
    parser.add_argument("--max-images", type=integer(1), help="evaluate the first N images only")
    add_device_flag(parser)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a chart (PNG) here")
    args = parser.parse_args(argv)
    check_outputs(args)
    device = select_device(args.device, setting="--device")
    ckpt = load_checkpoint(args.checkpoint)
    _, reweight = recorded_reweighting(ckpt, None, args.reweight)
    stds = args.stds
    if stds is None:
        limit, most_frequent = weights_std_limit(ckpt.config)
        stds = [s for s in stds_list(DEFAULT_STDS) if s < limit]
        if len(stds) < len(stds_list(DEFAULT_STDS)):
            left_out = ", ".join(f"{s:g}" for s in stds_list(DEFAULT_STDS) if s >= limit)
            print(f"--stds: {left_out} left out: from std {limit:.3f} on the class proportions of this run give "
                  f"{most_frequent} a weight <= 0")
    segmenter, light, arch, backbone = networks_of(ckpt, args.light, args.arch, args.backbone)
    # from the class proportions the checkpoint's run trained with; std 0: all weights 1
    weights = {s: torch.from_numpy(class_weights_of(ckpt.config, s, "--stds")).to(device) for s in stds}
    segmenter.to(device)
    if light is not None:
        light.to(device)
    dataset = build_dataset(args.dataset, args.root, transform=EvalTransform(scale=args.scale))
    meters = {s: ConfusionMeter() for s in stds}
    n = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
    with torch.no_grad():
        for i in tqdm(range(n), desc="sweep", unit="img"):
            item = dataset[i]
            x = item["image"][None].to(device)
            logits = segmenter(light(x) if light is not None else x)
            label = item["label"].numpy()
            for s in stds:
                pred = reweight_upsample_argmax(logits, weights[s], label.shape, reweight)[0].cpu().numpy()
                meters[s].update(pred, label)
    results = {s: meters[s].miou for s in stds}
    best = max(results, key=results.get)
    print(f"{args.checkpoint} ({arch}, {backbone}) on {args.dataset}, {n} images, reweight {reweight}")
    print(f"{'std':>6} {'mIoU %':>8}")
    for s, v in results.items():
        print(f"{s:>6.3f} {100 * v:>8.2f}{'  <- best' if s == best else ''}")
    print(f"best std {best} ({100 * results[best]:.2f}%), {100 * (results[best] - results.get(0.0, results[best])):+.2f} "
          "points over no re-weighting" if 0.0 in results else f"best std {best}")
    result = {"checkpoint": args.checkpoint, "dataset": args.dataset, "images": n, "reweight": reweight,
              "miou": {str(s): v for s, v in results.items()}, "best_std": best}
    if args.json:
        atomic_write(args.json, json.dumps({**provenance(args), **result}, indent=1))
    if args.plot:
        from .plotting import pyplot, save

        plt = pyplot("sweep")
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot(list(results), [100 * v for v in results.values()], marker="o")
        ax.axvline(best, color="tab:green", linestyle="--", label=f"best std {best}")
        ax.set_xlabel("test-time class-weight std")
        ax.set_ylabel("mIoU %")
        ax.set_title(f"{args.dataset}: mIoU vs re-weighting")
        ax.legend()
        save(fig, args.plot)


if __name__ == "__main__":
    main()

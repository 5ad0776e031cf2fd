"""``dannet-bench sweep``: mIoU over the test-time class-weight std (paper Fig. 7), to pick it for a dataset.

The logits of each image are computed once (PyTorch, the checkpoint), then re-weighted with every
std (0 = no re-weighting), upsampled and scored with ``train.metrics``. Prints a table, writes JSON
and a plot; use the best std with ``dannet-export onnx --weights-std``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm


def main(argv: list[str] | None = None) -> None:
    from runtime.classes import class_weights
    from train.data import DATASETS, EvalTransform, build_dataset
    from train.evaluate import load_networks, reweight_upsample_argmax
    from train.metrics import ConfusionMeter

    parser = argparse.ArgumentParser(prog="dannet-bench sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--light", help="relighting weights when the checkpoint has none")
    parser.add_argument("--dataset", required=True, choices=[d for d in DATASETS if d != "darkzurich-test"])
    parser.add_argument("--root", required=True)
    parser.add_argument("--scale", type=float, default=0.5, help="network input = image size x scale")
    parser.add_argument("--stds", default="0,0.02,0.05,0.08,0.12,0.16,0.2,0.25,0.3",
                        help="comma-separated stds; 0 = no re-weighting")
    parser.add_argument("--reweight", default="logits", choices=["logits", "probs"])
    parser.add_argument("--max-images", type=int)
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    try:
        stds = [float(v) for v in args.stds.split(",")]
    except ValueError:
        raise SystemExit(f"dannet-bench sweep: --stds {args.stds!r}: expected comma-separated numbers") from None
    if any(s < 0 for s in stds):
        raise SystemExit("dannet-bench sweep: --stds must not be negative")

    segmenter, light, arch, backbone = load_networks(args.checkpoint, args.light)
    dataset = build_dataset(args.dataset, args.root, transform=EvalTransform(scale=args.scale))
    weights = {s: torch.from_numpy(class_weights(s)) for s in stds}  # std 0: all weights 1
    meters = {s: ConfusionMeter() for s in stds}
    n = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
    with torch.no_grad():
        for i in tqdm(range(n), desc="sweep", unit="img"):
            item = dataset[i]
            x = item["image"][None]
            logits = segmenter(light(x) if light is not None else x)
            label = item["label"].numpy()
            for s in stds:
                pred = reweight_upsample_argmax(logits, weights[s], label.shape, args.reweight)[0].numpy()
                meters[s].update(pred, label)
    results = {s: meters[s].miou for s in stds}
    best = max(results, key=results.get)
    print(f"{args.checkpoint} ({arch}, {backbone}) on {args.dataset}, {n} images, reweight {args.reweight}")
    print(f"{'std':>6} {'mIoU %':>8}")
    for s, v in results.items():
        print(f"{s:>6.3f} {100 * v:>8.2f}{'  <- best' if s == best else ''}")
    print(f"best std {best} ({100 * results[best]:.2f}%), {100 * (results[best] - results.get(0.0, results[best])):+.2f} "
          "points over no re-weighting" if 0.0 in results else f"best std {best}")
    result = {"checkpoint": args.checkpoint, "dataset": args.dataset, "images": n, "reweight": args.reweight,
              "miou": {str(s): v for s, v in results.items()}, "best_std": best}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
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

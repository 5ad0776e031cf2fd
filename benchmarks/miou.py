"""``dannet-bench miou``: mIoU of an exported model through the runtime, on a night set, at full label resolution.

Each image goes through ``runtime.segmenter.Segmenter`` as a camera frame would (resized to the
network input, labels out at the graph's output size; labels of another size are resized to the
ground truth's, nearest neighbour). The confusion matrix and per-class IoU come from
``train.metrics`` (the project's one mIoU). With ``--compare-model``, a second model/backend runs on
the same images: the mIoU delta and the share of identical pixels (e.g. TensorRT FP16 vs ONNX
Runtime FP32); the output says whether the two were exported from the same checkpoint (if not, identical
pixels compare two networks, not two backends). A damaged image or a label of another size than its
image stops the run at that file, named (exit 3).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from runtime.arguments import integer
from runtime.atomic import atomic_save_image, atomic_write, check_folder_writable

from .cli import check_outputs, command_parser


def predict(seg, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    labels = seg.process(frame)
    if labels.shape != size:
        labels = np.asarray(Image.fromarray(np.ascontiguousarray(labels)).resize(size[::-1], Image.NEAREST))
    return labels


def main(argv: list[str] | None = None) -> None:
    from runtime.cli import add_model_arguments
    from runtime.overlay import mask
    from runtime.segmenter import Segmenter
    from train.data import DATASETS, dataset_samples
    from train.data.datasets import load_image, load_label
    from train.metrics import ConfusionMeter

    parser = command_parser("miou", __doc__)
    add_model_arguments(parser, help="the model to evaluate")
    parser.add_argument("--dataset", required=True, choices=[d for d in DATASETS if d != "darkzurich-test"])
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--split", help="split where the dataset has several (default: val)")
    add_model_arguments(parser, "compare-", required=False,
                        help="a second model on the same images: delta and identical pixels")
    parser.add_argument("--save-predictions", help="write labelTrainIds and colour PNGs here")
    parser.add_argument("--check-cityscapesscripts", action="store_true",
                        help="also score the predictions with the official Cityscapes evaluation and compare")
    parser.add_argument("--max-images", type=integer(1), help="evaluate the first N images only")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    check_outputs(args, ("json",))
    if args.save_predictions:
        check_folder_writable(args.save_predictions, "--save-predictions")

    samples = dataset_samples(args.dataset, args.root, args.split)[: args.max_images]
    models = [("model", Segmenter(args.model, args.backend))]
    if args.compare_model:
        models.append(("compare", Segmenter(args.compare_model, args.compare_backend)))
    meters = {name: ConfusionMeter() for name, _ in models}
    same = total = 0
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    out = Path(args.save_predictions) if args.save_predictions else None
    for sample in tqdm(samples, desc="miou", unit="img"):
        image = load_image(sample.image)
        frame, label = np.asarray(image), load_label(sample, image.size)
        preds = {name: predict(seg, frame, label.shape) for name, seg in models}
        for name, pred in preds.items():
            meters[name].update(pred, label)
        if args.check_cityscapesscripts:
            kept.append((preds["model"], label))
        if len(preds) == 2:
            same += int((preds["model"] == preds["compare"]).sum())
            total += label.size
        if out is not None:
            stem = out / sample.name
            atomic_save_image(f"{stem}_labelTrainIds.png", preds["model"])
            atomic_save_image(f"{stem}_color.png", mask(preds["model"], models[0][1].info.palette))
    print(f"{args.dataset}: {len(samples)} images, {args.model} ({models[0][1].backend.name})")
    print(meters["model"].table())
    result = {"dataset": args.dataset, "images": len(samples), "model": args.model,
              "backend": models[0][1].backend.name, "miou": meters["model"].miou,
              "iou": [None if np.isnan(v) else float(v) for v in meters["model"].iou]}
    if args.check_cityscapesscripts:
        from .cityscapes_eval import cityscapes_miou

        official = cityscapes_miou([p for p, _ in kept], [g for _, g in kept])
        result["cityscapesscripts_miou"] = official
        print(f"cityscapesscripts on the same predictions: mIoU {100 * official:.2f} "
              f"({'agrees' if abs(official - meters['model'].miou) < 1e-6 else 'DIFFERS'})")
    if len(models) == 2:
        delta = meters["compare"].miou - meters["model"].miou
        origins = [seg.info.checkpoint_sha256 for _, seg in models]
        same_checkpoint = None if None in origins else origins[0] == origins[1]
        result.update(compare_model=args.compare_model, compare_backend=models[1][1].backend.name,
                      compare_miou=meters["compare"].miou, delta_miou=delta, identical_pixels=same / total,
                      same_checkpoint=same_checkpoint)
        print(f"{args.compare_model} ({models[1][1].backend.name}): mIoU {100 * meters['compare'].miou:.2f} "
              f"({100 * delta:+.2f} points), identical pixels {100 * same / total:.3f}%")
        if not same_checkpoint:
            print("note: the two models were " + ("exported from different checkpoints" if same_checkpoint is False
                                                  else "not both recorded with the checkpoint they came from") +
                  ": identical pixels compares two networks, not two backends of one")
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

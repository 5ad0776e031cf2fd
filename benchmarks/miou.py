"""``dannet-bench miou``: mIoU of exported models through the runtime, on a night set, at full label resolution.

Each image goes through ``runtime.segmenter.Segmenter`` as a camera frame would (resized to the
network input, labels out at the graph's output size; labels of another size are resized to the
ground truth's, nearest neighbour). The confusion matrix and per-class IoU come from
``train.metrics`` (the project's one mIoU). Several ``--model`` arguments (e.g. FP32, FP16 and INT8
exports of one checkpoint) run side by side on the same images: one mIoU column each, with the
delta to the first model and the share of pixels labelled as the first model labels them. With
``--compare-model``, a second model/backend runs on the same images: the mIoU delta and the share of
identical pixels (e.g. TensorRT FP16 vs ONNX Runtime FP32); the output says whether the two were
exported from the same checkpoint (if not, identical pixels compare two networks, not two backends).
A damaged image or a label of another size than its image stops the run at that file, named (exit 3).
Its scoring (``export.scoring.evaluate``) is also the accuracy gate of ``dannet-export int8``.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runtime.arguments import integer
from runtime.atomic import atomic_save_image, atomic_write, check_folder_writable

from .cityscapes_eval import CityscapesScripts
from .cli import check_outputs, command_parser, provenance

if TYPE_CHECKING:  # imported when used: --help needs neither (export's package imports torch and onnx)
    from export.scoring import Evaluation
    from runtime.segmenter import Segmenter


def precision_of(segmenter: Segmenter) -> str:
    """What the model computes in, as its export recorded it (graph or program metadata, engine sidecar)."""
    return segmenter.info.precision or "?"


def main(argv: list[str] | None = None) -> None:
    from export.scoring import evaluate
    from runtime.backends import BACKENDS
    from runtime.cli import add_model_arguments
    from runtime.overlay import mask
    from runtime.segmenter import Segmenter
    from train.data import DATASETS, dataset_samples

    parser = command_parser("miou", __doc__)
    # --model repeats: FP32 / FP16 / INT8 exports side by side (each model's backend from its file type)
    parser.add_argument("--model", action="append", required=True,
                        help="a model to evaluate: .engine (TensorRT), .onnx with the portable tail (ONNX Runtime) "
                             "or .pt2 (PyTorch); repeat it to evaluate several side by side on the same images")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="auto: from each model file's type")
    parser.add_argument("--dataset", required=True, choices=[d for d in DATASETS if d != "darkzurich-test"])
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--split", help="split where the dataset has several (default: val)")
    add_model_arguments(parser, "compare-", required=False,
                        help="a second model on the same images: delta and identical pixels")
    parser.add_argument("--save-predictions", help="write the first model's labelTrainIds and colour PNGs here")
    parser.add_argument("--check-cityscapesscripts", action="store_true",
                        help="also score the first model's predictions with the official Cityscapes evaluation")
    parser.add_argument("--max-images", type=integer(1), help="evaluate the first N images only")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    check_outputs(args, ("json",))
    if args.save_predictions:
        check_folder_writable(args.save_predictions, "--save-predictions")

    samples = dataset_samples(args.dataset, args.root, args.split)[: args.max_images]
    models = [Segmenter(m, args.backend) for m in args.model]
    if args.compare_model:
        models.append(Segmenter(args.compare_model, args.compare_backend))
    official = CityscapesScripts() if args.check_cityscapesscripts else None
    out = Path(args.save_predictions) if args.save_predictions else None

    def each(sample, preds: list[np.ndarray], label: np.ndarray) -> None:
        if official is not None:
            official.add(preds[0], label)
        if out is not None:
            stem = out / sample.name
            atomic_save_image(f"{stem}_labelTrainIds.png", preds[0])
            atomic_save_image(f"{stem}_color.png", mask(preds[0], models[0].info.palette))

    with contextlib.ExitStack() as cleanup:
        if official is not None:
            cleanup.enter_context(official)  # its temporary folder goes whatever happens
        evaluation = evaluate(models, samples, each=each)
        official_miou = official.miou() if official is not None else None
    meters = evaluation.meters
    first = meters[0]
    print(f"{args.dataset}: {len(samples)} images, {args.model[0]} ({models[0].backend.name})")
    print(first.table())
    result = {"dataset": args.dataset, "images": len(samples), "model": args.model[0],
              "backend": models[0].backend.name, "miou": first.miou,
              "iou": [None if np.isnan(v) else float(v) for v in first.iou]}
    if len(args.model) > 1:
        result["models"] = side_by_side(args.model, models, evaluation)
    if official_miou is not None:
        result["cityscapesscripts_miou"] = official_miou
        print(f"cityscapesscripts on the same predictions: mIoU {100 * official_miou:.2f} "
              f"({'agrees' if abs(official_miou - first.miou) < 1e-6 else 'DIFFERS'})")
    if args.compare_model:
        compare, same = meters[-1], evaluation.same_as_first[-1]
        delta = compare.miou - first.miou
        checkpoints = [m.info.checkpoint_sha256 for m in (models[0], models[-1])]
        lights = [m.info.light_sha256 for m in (models[0], models[-1])]  # None: an engine that did not record it
        same_checkpoint = None if None in checkpoints else \
            checkpoints[0] == checkpoints[1] and (None in lights or lights[0] == lights[1])
        result.update(compare_model=args.compare_model, compare_backend=models[-1].backend.name,
                      compare_miou=compare.miou, delta_miou=delta, identical_pixels=same,
                      same_checkpoint=same_checkpoint)
        print(f"{args.compare_model} ({models[-1].backend.name}): mIoU {100 * compare.miou:.2f} "
              f"({100 * delta:+.2f} points), identical pixels {100 * same:.3f}%")
        if not same_checkpoint:
            origin = "exported from different checkpoints (or relighting files)" if same_checkpoint is False else \
                "not both recorded with the checkpoint they came from"
            print(f"note: the two models were {origin}: identical pixels compares two networks, not two backends "
                  "of one")
    if args.json:
        atomic_write(args.json, json.dumps({**provenance(args), **result}, indent=1))


def side_by_side(paths: list[str], models: list, evaluation: Evaluation) -> list[dict]:
    """One row per ``--model`` (printed as a table): precision, backend, mIoU, delta to the first model, and the
    share of pixels labelled as the first model labels them."""
    rows = []
    base = evaluation.meters[0].miou
    print(f"\n{'model':<40} {'precision':>9} {'backend':>12} {'mIoU %':>7} {'delta':>7} {'same px %':>9}")
    for path, seg, meter, same in zip(paths, models, evaluation.meters, evaluation.same_as_first):
        row = {"model": path, "precision": precision_of(seg), "backend": seg.backend.name, "miou": meter.miou,
               "delta_miou": meter.miou - base, "identical_pixels": same,
               "iou": [None if np.isnan(v) else float(v) for v in meter.iou]}
        rows.append(row)
        print(f"{Path(path).name[-40:]:<40} {row['precision']:>9} {row['backend']:>12} {100 * meter.miou:>7.2f} "
              f"{100 * row['delta_miou']:>+7.2f} {100 * same:>9.3f}")
    return rows


if __name__ == "__main__":
    main()

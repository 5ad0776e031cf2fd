"""``dannet-bench submission``: the Dark Zurich test-set submission zip from a checkpoint.

For each of the 151 test images: ``labelTrainIds/`` (uint8 trainIds), ``labelTrainIds_invalid/``
(the same, with 255 where the prediction's confidence is below ``--invalid-threshold``: the
invalid-region prediction that the uncertainty-aware UIoU metric scores), ``confidence/`` (uint16,
65535 x the max softmax probability), all at the image's full resolution (1080x1920), named like the
test image. Runs from the checkpoint with PyTorch because confidence needs the class scores, which
the deployment graphs (labels out) do not have. Scores are DANNet's test-time ones, as ``dannet-train eval``
scores the checkpoint: re-weighted as its run validated (``eval.weights_std``, ``eval.reweight``; std 0.16 and
logits for released files), upsampled with align_corners=True, softmax (with ``probs``: the paper's re-weighted
probabilities). The zip is written atomically: an existing one
is replaced only by a complete new one.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from runtime.arguments import add_device_flag, add_network_flags, add_reweighting_flags, number
from runtime.atomic import atomic_file

from .cli import check_outputs, command_parser


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    from runtime.classes import IGNORE_INDEX
    from train.checkpoint import load_checkpoint
    from train.data import EvalTransform, SegmentationDataset, darkzurich_samples
    from train.engine import select_device
    from train.evaluate import networks_of, recorded_reweighting, reweighted_scores, weights_std_setting
    from train.factory import class_weights_of

    parser = command_parser("submission", __doc__)
    parser.add_argument("--checkpoint", required=True)
    add_network_flags(parser)
    parser.add_argument("--root", required=True, help="Dark Zurich root (rgb_anon/test/night/...)")
    parser.add_argument("--out", required=True, help="submission .zip")
    add_reweighting_flags(parser)
    parser.add_argument("--scale", type=number(0, 4, low_open=True), default=0.5,
                        help="network input = image size x scale, in (0, 4] (default 0.5)")
    parser.add_argument("--invalid-threshold", type=number(0, 1), default=0.5,
                        help="confidence in [0, 1] below which labelTrainIds_invalid marks a pixel invalid (255) "
                             "(default 0.5)")
    add_device_flag(parser)
    args = parser.parse_args(argv)
    check_outputs(args, ("out",))

    device = select_device(args.device, setting="--device")
    ckpt = load_checkpoint(args.checkpoint)
    weights_std, reweight = recorded_reweighting(ckpt, args.weights_std, args.reweight)
    weights = torch.from_numpy(class_weights_of(ckpt.config, weights_std, weights_std_setting(args.weights_std)))
    segmenter, light, _, _ = networks_of(ckpt, args.light, args.arch, args.backbone)
    segmenter.to(device)
    if light is not None:
        light.to(device)
    weights = weights.to(device)
    samples = darkzurich_samples(Path(args.root), "test")
    dataset = SegmentationDataset(samples, EvalTransform(scale=args.scale))
    with atomic_file(args.out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive, torch.no_grad():
        for i, sample in enumerate(tqdm(samples, desc="submission", unit="img")):
            with Image.open(sample.image) as image:
                width, height = image.size
            x = dataset[i]["image"][None].to(device)
            logits = segmenter(light(x) if light is not None else x)
            probs = torch.softmax(reweighted_scores(logits, weights, (height, width), reweight), 1)
            confidence, labels = probs[0].max(dim=0)
            labels = labels.byte().cpu().numpy()
            confidence = confidence.cpu().numpy()
            invalid = np.where(confidence < args.invalid_threshold, IGNORE_INDEX, labels).astype(np.uint8)
            name = sample.image.name
            archive.writestr(f"labelTrainIds/{name}", _png(labels))
            archive.writestr(f"labelTrainIds_invalid/{name}", _png(invalid))
            archive.writestr(f"confidence/{name}", _png(np.round(confidence * 65535).astype(np.uint16)))
    print(f"wrote {args.out}: {len(samples)} test images x (labelTrainIds, labelTrainIds_invalid, confidence)")


if __name__ == "__main__":
    main()

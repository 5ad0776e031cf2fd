"""``dannet-bench reliability``: does the model's confidence predict its errors? A reliability diagram.

Runs a model exported with ``--confidence`` through ``runtime.segmenter.Segmenter`` on a labelled night
set and bins every labelled pixel by its confidence level (0-255). Per bin: the pixels, their mean
confidence and their error rate. A confidence worth having is (a) calibrated: the error rate of a bin is
about 1 - its confidence (the expected calibration error, ECE, is the pixel-weighted mean gap), and (b)
discriminative: wrong pixels have lower confidence than right ones (AUROC of "confidence ranks a right
pixel above a wrong one", 0.5 = no information; and the error rate of the least confident pixels against
the rest). The plot is the diagram a person reads: error rate against confidence, with the diagonal of
perfect calibration and the share of pixels per bin.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from runtime.arguments import integer
from runtime.atomic import atomic_write
from runtime.errors import DannetError

from .cli import check_outputs, command_parser, provenance

LEVELS = 256


@dataclass(frozen=True)
class Reliability:
    """Statistics of right and wrong pixels counted per confidence level (``right[l]``, ``wrong[l]``)."""

    right: np.ndarray
    wrong: np.ndarray

    @property
    def pixels(self) -> int:
        return int(self.right.sum() + self.wrong.sum())

    @property
    def error_rate(self) -> float:
        return float(self.wrong.sum()) / self.pixels

    def bins(self, count: int) -> list[dict[str, float]]:
        """``count`` equal-width confidence bins over [0, 1]: pixels, mean confidence, error rate (empty bins
        are left out). Level ``l`` stands for the confidence ``l / 255`` and falls in bin ``floor(count l / 255)``
        (the last bin also holds 1)."""
        levels = np.arange(LEVELS)
        which = np.minimum(levels * count // (LEVELS - 1), count - 1)
        rows = []
        for b in range(count):
            inside = which == b
            right, wrong = self.right[inside].sum(), self.wrong[inside].sum()
            n = right + wrong
            if n == 0:
                continue
            confidence = float(((self.right + self.wrong)[inside] * levels[inside]).sum()) / (255 * n)
            rows.append({"low": b / count, "high": (b + 1) / count, "pixels": int(n), "confidence": confidence,
                         "error_rate": float(wrong / n)})
        return rows

    def expected_calibration_error(self, count: int) -> float:
        """Pixel-weighted mean |accuracy - confidence| over ``count`` bins."""
        return sum(r["pixels"] * abs((1 - r["error_rate"]) - r["confidence"]) for r in self.bins(count)) / self.pixels

    def auroc(self) -> float:
        """P(a right pixel's level > a wrong pixel's level) + 0.5 P(equal): the Mann-Whitney statistic,
        exact from the two histograms."""
        wrong_below = np.concatenate([[0], np.cumsum(self.wrong)[:-1]])  # wrong pixels at lower levels
        pairs = float(self.right.sum()) * float(self.wrong.sum())
        if pairs == 0:
            return float("nan")
        return float((self.right * (wrong_below + 0.5 * self.wrong)).sum()) / pairs

    def least_confident(self, share: float) -> dict[str, float]:
        """The error rate of the least confident ``share`` of pixels (whole levels, at least ``share``) and of
        the rest."""
        total = self.right + self.wrong
        cut = int(np.searchsorted(np.cumsum(total), share * self.pixels)) + 1
        low_wrong, low_n = self.wrong[:cut].sum(), total[:cut].sum()
        high_wrong, high_n = self.wrong[cut:].sum(), total[cut:].sum()
        return {"share": float(low_n / self.pixels), "below_level": cut,
                "error_rate": float(low_wrong / low_n) if low_n else float("nan"),
                "error_rate_rest": float(high_wrong / high_n) if high_n else float("nan")}


def count(levels: np.ndarray, predicted: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right and wrong labelled pixels (ground truth != 255) per confidence level."""
    valid = label != 255
    right = (predicted == label) & valid
    wrong = (predicted != label) & valid
    return (np.bincount(levels[right].ravel(), minlength=LEVELS)[:LEVELS],
            np.bincount(levels[wrong].ravel(), minlength=LEVELS)[:LEVELS])


def plot(result: Reliability, bins: int, title: str, path: str) -> None:
    from .plotting import pyplot, save

    plt = pyplot("reliability")
    rows = result.bins(bins)
    fig, (ax, share) = plt.subplots(2, 1, figsize=(6, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centres = [(r["low"] + r["high"]) / 2 for r in rows]
    width = 1 / bins
    ax.bar(centres, [r["error_rate"] for r in rows], width=width * 0.9, color="#c0504d", label="error rate")
    ax.plot([0, 1], [1, 0], "k--", lw=1, label="perfect calibration (1 - confidence)")
    ax.plot([r["confidence"] for r in rows], [r["error_rate"] for r in rows], "ko", ms=3)
    ax.set_ylabel("error rate of the pixels in the bin")
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}\nECE {100 * result.expected_calibration_error(bins):.1f}%, AUROC {result.auroc():.3f}, "
                 f"overall error {100 * result.error_rate:.1f}%", fontsize=9)
    ax.legend(fontsize=8)
    share.bar(centres, [r["pixels"] / result.pixels for r in rows], width=width * 0.9, color="#4f81bd")
    share.set_xlabel("confidence (softmax of the re-weighted scores at the winning class)")
    share.set_ylabel("share of pixels")
    share.set_xlim(0, 1)
    save(fig, path)


def main(argv: list[str] | None = None) -> None:
    from PIL import Image

    from runtime.cli import add_model_arguments
    from runtime.segmenter import Segmenter
    from train.data import DATASETS, dataset_samples
    from train.data.datasets import load_image, load_label

    parser = command_parser("reliability", __doc__)
    add_model_arguments(parser, help="a model exported with --confidence")
    parser.add_argument("--dataset", required=True, choices=[d for d in DATASETS if d != "darkzurich-test"])
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--split", help="split where the dataset has several (default: val)")
    parser.add_argument("--max-images", type=integer(1), help="the first N images only")
    parser.add_argument("--bins", type=integer(2, 64), default=10, help="confidence bins in the diagram (default 10)")
    parser.add_argument("--json", help="write the table here")
    parser.add_argument("--plot", help="write the reliability diagram here (PNG)")
    args = parser.parse_args(argv)
    check_outputs(args)

    seg = Segmenter(args.model, args.backend)
    if not seg.info.confidence:
        raise DannetError(f"--model {args.model}: has no confidence output; export it with --confidence")
    samples = dataset_samples(args.dataset, args.root, args.split)[: args.max_images]
    right, wrong = np.zeros(LEVELS, np.int64), np.zeros(LEVELS, np.int64)
    for sample in tqdm(samples, desc="reliability", unit="img"):
        image = load_image(sample.image)
        frame, label = np.asarray(image), load_label(sample, image.size)
        predicted, levels = seg.process(frame)
        if predicted.shape != label.shape:  # nearest neighbour, the same pixel for both maps
            size = label.shape[::-1]
            predicted = np.asarray(Image.fromarray(predicted).resize(size, Image.NEAREST))
            levels = np.asarray(Image.fromarray(levels).resize(size, Image.NEAREST))
        r, w = count(levels, predicted, label)
        right += r
        wrong += w
    result = Reliability(right, wrong)
    if result.pixels == 0:
        raise DannetError(f"--root {args.root}: no labelled pixels in {len(samples)} images")
    low = result.least_confident(0.1)
    table = {"dataset": args.dataset, "images": len(samples), "model": args.model, "backend": seg.backend.name,
             "pixels": result.pixels, "error_rate": result.error_rate,
             "ece": result.expected_calibration_error(args.bins), "auroc": result.auroc(),
             "least_confident_10pct": low, "bins": result.bins(args.bins)}
    print(f"{args.dataset}: {len(samples)} images, {result.pixels} labelled pixels, error rate "
          f"{100 * result.error_rate:.1f}%")
    print(f"{'confidence':>12} {'pixels':>8} {'mean conf':>9} {'error':>7}")
    for row in table["bins"]:
        print(f"{row['low']:5.2f}-{row['high']:4.2f} {100 * row['pixels'] / result.pixels:7.1f}% "
              f"{row['confidence']:9.3f} {100 * row['error_rate']:6.1f}%")
    print(f"ECE {100 * table['ece']:.1f}%  AUROC {table['auroc']:.3f}  least confident {100 * low['share']:.0f}% of "
          f"pixels: error {100 * low['error_rate']:.1f}% vs {100 * low['error_rate_rest']:.1f}% for the rest")
    if args.json:
        atomic_write(args.json, json.dumps({**provenance(args), **table}, indent=1))
    if args.plot:
        plot(result, args.bins, f"{args.model} on {args.dataset} ({len(samples)} images)", args.plot)


if __name__ == "__main__":
    main()

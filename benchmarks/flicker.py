"""``dannet-bench flicker``: how much the night masks flicker, with and without each temporal stabiliser.

The generator's night drive (``train.data.synth.night_drive``) is a clip with ground truth per frame: the
camera zooms slowly into each scene while lamps, glare and sensor noise change, then the drive cuts to the
next scene. Flicker is the share of pixels whose predicted label changes between consecutive frames among
the pixels whose ground truth did not change (and is labelled, not 255) between them: a change there is
the model's, not the scene's. Pairs across a scene cut are not counted. mIoU over the clip says what the
stabiliser costs in accuracy. The model runs once per frame; every stabiliser then sees the same
predictions, so the rows differ only by the stabiliser. Its cost per frame is timed on those predictions at
the clip's size and at each ``--cost-size`` (the labels scaled up, nearest neighbour).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from runtime.arguments import integer, number, size_hw
from runtime.atomic import atomic_write
from runtime.temporal import TemporalFilter, TemporalOptions
from train.metrics import ConfusionMeter

from .cli import check_outputs, command_parser, provenance

IGNORE = 255


def flicker_counts(before: np.ndarray, now: np.ndarray, truth_before: np.ndarray,
                   truth_now: np.ndarray) -> tuple[int, int]:
    """Between two consecutive frames: (pixels whose predicted label changed, pixels counted), the pixels
    counted being those whose ground truth is labelled and the same in both frames."""
    stable = (truth_now == truth_before) & (truth_now != IGNORE)
    return int(np.count_nonzero((now != before) & stable)), int(np.count_nonzero(stable))


@dataclass
class FlickerMeter:
    """Flicker over a clip fed frame by frame; ``cut=True`` marks a frame that starts a new scene."""

    changed: int = 0
    counted: int = 0
    per_pair: list[float] = field(default_factory=list)  # each counted pair's flicker, in clip order
    previous: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, predicted: np.ndarray, truth: np.ndarray, cut: bool = False) -> None:
        if self.previous is not None and not cut:
            before, truth_before = self.previous
            changed, counted = flicker_counts(before, predicted, truth_before, truth)
            self.changed += changed
            self.counted += counted
            self.per_pair.append(changed / counted if counted else float("nan"))
        self.previous = (predicted.copy(), truth)

    @property
    def flicker(self) -> float:
        return self.changed / self.counted if self.counted else float("nan")


def variants(frames: int, confidence: float | None, has_confidence: bool, **cut: float) -> dict[str, TemporalOptions]:
    """The stabilisers to compare: none, hysteresis (by persistence; and by confidence where the model has it), ema.
    ``cut``: TemporalOptions' scene-cut thresholds."""
    rows = {"none": TemporalOptions(), f"hysteresis k={frames}": TemporalOptions("hysteresis", frames, **cut)}
    if has_confidence and confidence is not None:
        rows[f"hysteresis k={frames} p>={confidence:g}"] = TemporalOptions("hysteresis", frames, confidence, **cut)
    rows[f"ema 1/{frames}"] = TemporalOptions("ema", frames, **cut)
    return rows


def scaled(array: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    if array is None or array.shape == size:
        return array
    return np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize(size[::-1], Image.NEAREST))


def evaluate(options: TemporalOptions, predictions: list[tuple[np.ndarray, np.ndarray | None]],
             clip: list[tuple[np.ndarray, np.ndarray]], frames_per_scene: int) -> dict:
    """One stabiliser over the clip's predictions: flicker, mIoU, resets and its mean time per frame."""
    stable, meter, confusion, seconds = TemporalFilter(options), FlickerMeter(), ConfusionMeter(), 0.0
    for index, ((labels, confidence), (frame, truth)) in enumerate(zip(predictions, clip)):
        start = time.perf_counter()
        shown = stable.update(labels, confidence, frame=frame)
        seconds += time.perf_counter() - start
        shown = scaled(shown, truth.shape)
        meter.update(shown, truth, cut=index % frames_per_scene == 0)
        confusion.update(shown, truth)
    return {"flicker": meter.flicker, "miou": confusion.miou, "resets": stable.resets,
            "ms_per_frame": 1e3 * seconds / len(predictions), "per_pair": meter.per_pair}


def cost_ms(options: TemporalOptions, predictions: list[tuple[np.ndarray, np.ndarray | None]],
            clip: list[tuple[np.ndarray, np.ndarray]], size: tuple[int, int], frames: int = 12) -> float:
    """Mean ms per frame of the stabiliser on the first ``frames`` predictions and camera frames scaled to
    ``size`` (the first frame, which only starts the state, not timed)."""
    scaled_up = [(scaled(labels, size), scaled(confidence, size),
                  np.asarray(Image.fromarray(frame).resize(size[::-1], Image.BILINEAR)))
                 for (labels, confidence), (frame, _) in zip(predictions[:frames], clip)]
    stable = TemporalFilter(options)
    stable.update(*scaled_up[0][:2], frame=scaled_up[0][2])
    start = time.perf_counter()
    for labels, confidence, frame in scaled_up[1:]:
        stable.update(labels, confidence, frame=frame)
    return 1e3 * (time.perf_counter() - start) / (len(scaled_up) - 1)


def plot(rows: dict[str, dict], title: str, path: str) -> None:
    from .plotting import pyplot, save

    plt = pyplot("flicker")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, row in rows.items():
        ax.plot(100 * np.asarray(row["per_pair"]), lw=1, label=f"{name}: {100 * row['flicker']:.2f}%, "
                                                               f"mIoU {100 * row['miou']:.1f}")
    ax.set_xlabel("consecutive frame pair (scene cuts left out)")
    ax.set_ylabel("flicker % (labels changed where\nthe ground truth did not)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    save(fig, path)


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    from runtime.cli import add_model_arguments
    from runtime.segmenter import Segmenter
    from train.data.synth import check_size, night_drive

    parser = command_parser("flicker", __doc__)
    add_model_arguments(parser)
    parser.add_argument("--scenes", type=integer(1), default=4, help="scenes in the drive (default 4)")
    parser.add_argument("--frames-per-scene", type=integer(2), default=24, metavar="N",
                        help="frames per scene (default 24)")
    parser.add_argument("--size", type=size_hw, default=(128, 256), metavar="HxW", help="clip size (default 128x256)")
    parser.add_argument("--seed", type=integer(0), default=0, help="the drive's random seed (default 0)")
    parser.add_argument("--temporal-frames", type=integer(1, 255), default=3, metavar="K",
                        help="hysteresis: frames a new label must persist; ema: weight 1/K (default 3)")
    parser.add_argument("--temporal-confidence", type=number(0, 1), default=0.9, metavar="P",
                        help="also hysteresis adopting a label at confidence >= P, models with confidence (default 0.9)")
    parser.add_argument("--temporal-cut", type=number(0, 1, low_open=True), default=0.8, metavar="SHARE",
                        help="a scene cut: more than this share of pixels predicted other than shown (default 0.8)")
    parser.add_argument("--temporal-cut-difference", type=number(0, 255, low_open=True), default=28.0, metavar="LEVELS",
                        help="a scene cut: a mean absolute frame difference above LEVELS (default 28)")
    parser.add_argument("--cost-size", type=size_hw, action="append", metavar="HxW",
                        help="also time each stabiliser at this label size (repeatable; default 128x256 and 1080x1920)")
    parser.add_argument("--json", help="write the table here")
    parser.add_argument("--plot", help="write flicker per frame pair here (PNG)")
    args = parser.parse_args(argv)
    check_outputs(args)
    check_size(args.size)
    cost_sizes = args.cost_size or [(128, 256), (1080, 1920)]

    seg = Segmenter(args.model, args.backend)
    predictions = []
    clip = list(night_drive(args.scenes, args.frames_per_scene, args.size, args.seed))
    for frame, _ in tqdm(clip, desc="flicker", unit="frame"):
        result = seg.backend.infer(seg.prepare(frame)[None])
        confidence = result.confidence[0] if result.confidence is not None else None
        predictions.append((result.labels[0], confidence))
    stabilisers = variants(args.temporal_frames, args.temporal_confidence, seg.info.confidence,
                           cut_share=args.temporal_cut, cut_difference=args.temporal_cut_difference)
    rows = {name: evaluate(options, predictions, clip, args.frames_per_scene) for name, options in stabilisers.items()}
    for name, options in stabilisers.items():
        rows[name]["cost_ms"] = {f"{h}x{w}": cost_ms(options, predictions, clip, (h, w)) for h, w in cost_sizes}
    base = rows["none"]
    print(f"{args.model} ({seg.backend.name}): night drive {args.scenes} scenes x {args.frames_per_scene} frames "
          f"({args.scenes - 1} cuts) at {args.size[0]}x{args.size[1]}, seed {args.seed}; labels "
          f"{seg.info.output_size[0]}x{seg.info.output_size[1]}")
    costs = "".join(f" {'ms ' + size:>14}" for size in rows["none"]["cost_ms"])
    print(f"{'stabiliser':<26} {'flicker %':>9} {'x none':>7} {'mIoU %':>7} {'resets':>6}{costs}")
    for name, row in rows.items():
        ratio = row["flicker"] / base["flicker"] if base["flicker"] else float("nan")
        print(f"{name:<26} {100 * row['flicker']:9.3f} {ratio:7.2f} {100 * row['miou']:7.2f} {row['resets']:6d}"
              + "".join(f" {ms:14.3f}" for ms in row["cost_ms"].values()))
    if args.json:
        table = {"model": args.model, "backend": seg.backend.name, "scenes": args.scenes,
                 "frames_per_scene": args.frames_per_scene, "size": list(args.size), "seed": args.seed,
                 "stabilisers": {name: {"options": vars(stabilisers[name]), **row} for name, row in rows.items()}}
        atomic_write(args.json, json.dumps({**provenance(args), **table}, indent=1))
    if args.plot:
        plot(rows, f"{args.model}: night drive, {args.scenes} x {args.frames_per_scene} frames", args.plot)


if __name__ == "__main__":
    main()
